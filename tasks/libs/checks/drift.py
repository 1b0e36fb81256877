"""Source drift: what changed in the files a stack uses since the revision it was verified against.

A stack may declare that revision (`source: {path: ..., revision: SHA}`). `invoke stack.check`
reports the checkout's own revision (`git rev-parse HEAD`) and, when the two differ, the files
the stack uses that changed in between (`git diff A B -- PATH...`): Containerfiles, the
context paths their COPY/ADD lines take, manifests, charts, values files, kustomizations and the
kind config, as far as they live in the source. Git runs through procs.Runner (argument lists,
a timeout each, read-only); `uses`, `group` and `report_lines` are pure.
"""

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from .. import deploysources
from ..errors import CommandFailed
from ..procs.runner import Runner, tail
from .buildcontext import context_source

GIT_TIMEOUT = 60  # seconds; local queries of one repository
LISTED = 5  # changed files listed per use; above that they are counted
STATUS = {"A": "added", "D": "deleted", "M": "modified", "T": "type changed", "U": "unmerged"}
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Use:
    """A path of the source that the stack uses, and where the stack says so."""

    field: str  # e.g. services.api.build.containerfile, or services.api.build (COPY . ., line 35)
    path: str  # relative to the source; "." for all of it


@dataclass
class Drift:
    source: Path
    declared: str  # source.revision, "" when the stack declares none
    current: str = ""  # the checkout's HEAD; "" when unknown (see problem)
    declared_full: str = ""  # source.revision as a full commit id, when the checkout has it
    problem: str = ""  # why nothing could be compared
    fix: str = ""
    changes: dict = field(default_factory=dict)  # path relative to the source -> git status letter


# ---- pure -----------------------------------------------------------------------------------------


def _relative(path: Path, source: Path):
    """path relative to source ("." for the source itself), or None when it is elsewhere."""
    try:
        relative = Path(os.path.abspath(path)).relative_to(Path(os.path.abspath(source)))
    except ValueError:
        return None
    return relative.as_posix() or "."


def pathspec(path: str) -> str:
    """A literal path for git: a glob's folders before its first wildcard."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        if any(c in _GLOB_CHARS for c in part):
            return "/".join(parts[:i]) or "."
    return path


def uses(stack, copies: dict) -> list:
    """Every path under the stack's source that the stack uses. copies: service -> its
    containerfile.Copy list (the COPY/ADD lines whose sources come from the context)."""
    source, found = stack.source, []

    def add(field_name, path):
        relative = _relative(path, source)
        if relative is not None:
            found.append(Use(field_name, pathspec(relative)))

    if stack.cluster_config is not None:
        add("cluster.config", stack.cluster_config)
    for name, service in stack.services.items():
        where = f"services.{name}"
        if service.build is not None:
            add(f"{where}.build.containerfile", service.build.containerfile)
            for copy in copies.get(name, ()):
                for item in copy.sources:
                    add(
                        f"{where}.build ({copy.keyword} {item}, line {copy.line})",
                        Path(service.build.context) / context_source(item),
                    )
        for i, manifest in enumerate(service.manifests):
            add(f"{where}.manifests[{i}]", manifest)
        for field_name, path, _ in deploysources.files(service, where):
            add(field_name, path)
    return found


def covers(use_path: str, changed: str) -> bool:
    return use_path == "." or changed == use_path or changed.startswith(use_path.rstrip("/") + "/")


def group(changes: dict, used) -> list:
    """(use, [(path, status letter)...]) for each use with changed files under it, in the stack's order."""
    grouped = []
    for use in used:
        files = sorted((path, status) for path, status in changes.items() if covers(use.path, path))
        if files:
            grouped.append((use, files))
    return grouped


def parse_name_status(output: str) -> dict:
    """`git diff --name-status -z` output: path -> status letter."""
    words = output.split("\0")
    changes = {}
    for i in range(0, len(words) - 1, 2):
        if words[i]:
            changes[words[i + 1]] = words[i][0]
    return changes


def _short(revision: str) -> str:
    return revision[:12]


def report_lines(drift: Drift, used) -> list:
    """What stack.check prints about the source's revision: (kind, text) with kind "note" or "warning"."""
    source = drift.source
    if drift.problem:
        return [("warning", f"{drift.problem}\n  fix: {drift.fix}" if drift.fix else drift.problem)]
    if not drift.declared:
        return [("note", f"source {source} is at {drift.current} (the stack declares no source.revision)")]
    if drift.current == drift.declared_full:
        return [("note", f"source {source} is at {drift.current}, the stack's source.revision")]
    head = f"source {source} is at {drift.current}, not at the stack's source.revision {drift.declared_full}"
    grouped = group(drift.changes, used)
    if not grouped:
        return [("note", f"{head}; none of the {len(used)} paths the stack uses changed in between")]
    command = (
        f"git -C {source} diff --name-status {_short(drift.declared_full)} {_short(drift.current)} -- PATH"
    )
    lines = [f"{head}; what the stack uses changed in between ({command} shows each):"]
    for use, files in grouped:
        if len(files) == 1 and files[0][0] == use.path:
            lines.append(f"  {use.field}: {use.path} {STATUS.get(files[0][1], files[0][1])}")
            continue
        if len(files) > LISTED:
            lines.append(f"  {use.field}: {len(files)} files changed under {use.path}")
            continue
        listed = ", ".join(f"{path} ({STATUS.get(status, status)})" for path, status in files)
        lines.append(f"  {use.field}: {len(files)} file(s) changed under {use.path}: {listed}")
    return [("warning", "\n".join(lines))]


# ---- git ------------------------------------------------------------------------------------------


def _git(runner: Runner, source: Path, *args):
    """(exit code, stdout, stderr) of a read-only git command in the source folder."""
    result = runner.run(["git", "-C", str(source), *args], check=False, mutating=False, timeout=GIT_TIMEOUT)
    return result.exit_code, result.stdout, result.stderr


def inspect(runner: Runner, source: Path, declared: str, used) -> Drift:
    """The checkout's revision against the declared one, and what changed in between under the used paths."""
    drift = Drift(Path(source), declared)
    try:
        code, out, err = _git(runner, source, "rev-parse", "--verify", "HEAD")
        if code != 0:
            drift.problem = (
                f"source {source} is not a git checkout ({tail(err, 1) or f'git exit {code}'}): "
                "its revision is not known"
            )
            if declared:
                drift.problem += f", so it cannot be compared with source.revision {declared}"
                drift.fix = "point E2E_SOURCE (or source.path) at a git clone of the project"
            return drift
        drift.current = out.strip()
        if not declared:
            return drift
        code, out, _ = _git(runner, source, "rev-parse", "--verify", "--quiet", f"{declared}^{{commit}}")
        if code != 0:
            _, shallow, _ = _git(runner, source, "rev-parse", "--is-shallow-repository")
            why = "the checkout is a shallow clone" if shallow.strip() == "true" else "it was not fetched"
            drift.problem = (
                f"source.revision {declared} is not in the checkout {source} ({why}), so what "
                f"changed since cannot be listed; the checkout is at {drift.current}"
            )
            drift.fix = (
                f"git -C {source} fetch --unshallow"
                if shallow.strip() == "true"
                else f"git -C {source} fetch origin {declared}"
            ) + " (or correct source.revision)"
            return drift
        drift.declared_full = out.strip()
        if drift.declared_full != drift.current and used:
            paths = sorted({use.path for use in used})
            code, out, err = _git(
                runner,
                source,
                "--literal-pathspecs",
                "diff",
                "--no-renames",
                "--name-status",
                "-z",
                "--relative",
                drift.declared_full,
                drift.current,
                "--",
                *paths,
            )
            if code != 0:
                drift.problem = f"git diff in {source} failed: {tail(err, 1) or f'exit {code}'}"
                return drift
            drift.changes = parse_name_status(out)
    except CommandFailed as exc:
        reason = "git is not installed" if exc.returncode == 127 else str(exc).splitlines()[0]
        drift.problem = f"the revision of source {source} is not known: {reason}"
        drift.fix = "install git" if exc.returncode == 127 else ""
    return drift


def gitlink(runner: Runner):
    """A function (top folder, path) -> whether the checked-out commit records a submodule commit
    at that path (`git ls-tree HEAD -- PATH` shows mode 160000); None when git cannot tell."""

    def recorded(top: Path, path: str):
        try:
            code, out, _ = _git(runner, top, "--literal-pathspecs", "ls-tree", "HEAD", "--", path)
        except CommandFailed:
            return None
        if code != 0:
            return None
        return any(
            line.startswith("160000 ") and line.split("\t", 1)[-1] == posixpath.normpath(path)
            for line in out.splitlines()
        )

    return recorded
