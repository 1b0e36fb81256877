"""An image's inputs: the files whose change makes a new image (`build.inputs` in the stack).

- `context` (the default): every file of the build context the engine would send.
- `go`: the Containerfile, go.mod, go.sum (and go.work), the files of every package in the import
  closure of the main packages the build compiles (`//go:embed` files included), and any other file
  the Containerfile copies by name. The packages come from the Containerfile's `go build` commands
  (gobuilds.py), or from `inputs: {go: [./cmd/x]}`; the closure from `go list -deps` on the host,
  with the build's tags, GOOS, GOARCH and CGO_ENABLED.
- a list of globs (`[cmd/api/**, pkg/**, go.mod]`): the context's files they match.

So a Dockerfile that copies the whole checkout (`COPY . .`) still gets a new image only when code
it compiles changed. Without Go on the host, or when `go list` fails or the Containerfile's builds
cannot be read for certain, the rule falls back to the whole context, and says why.
"""

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .. import runs
from ..errors import CommandFailed
from ..stack import hostfacts, stackfile
from . import containerfile, gobuilds
from . import digest as cache

RULES = ("context", "go")
GO_LIST_SECONDS = 120
# The fields of `go list -json` that name the files a package compiles or embeds (`go help list`).
PACKAGE_FILES = (
    "GoFiles",
    "CgoFiles",
    "CFiles",
    "CXXFiles",
    "MFiles",
    "HFiles",
    "FFiles",
    "SFiles",
    "SwigFiles",
    "SwigCXXFiles",
    "SysoFiles",
    "EmbedFiles",
)
GO_LIST_FIELDS = ("ImportPath", "Dir", "Standard", "DepOnly", "Module", "Error", "DepsErrors") + PACKAGE_FILES
MODULE_FILES = ("go.work", "go.work.sum")
WHOLE_CONTEXT = {".", "*", ""}
EXAMPLE = (
    "write `inputs: context`, `inputs: go`, `inputs: {go: [./cmd/api]}` or `inputs: [cmd/api/**, go.mod]`"
)


@dataclass(frozen=True)
class Inputs:
    """What the stack asks for: rule `context`, `go` (packages: given, else from the Containerfile)
    or `globs`."""

    rule: str = "context"
    packages: tuple = ()
    globs: tuple = ()

    def describe(self) -> str:
        if self.rule == "globs":
            return "globs " + ", ".join(self.globs)
        return "go " + ", ".join(self.packages) if self.packages else self.rule


@dataclass(frozen=True)
class InputSet:
    rule: str  # the rule that made `files`: context, go or globs
    files: tuple  # relative to the context, sorted
    note: str = ""  # why the rule asked for was not used


def parse(c: stackfile.Checker, raw, where: str) -> Inputs:
    if raw is None or raw == "context":
        return Inputs()
    if raw == "go":
        return Inputs("go")
    if isinstance(raw, dict) and set(raw) == {"go"}:
        packages = raw["go"]
        if not isinstance(packages, list) or not packages:
            c.fail(f"{where}.go", "must be a non-empty list of main packages", EXAMPLE)
        return Inputs("go", tuple(c.string(p, f"{where}.go[{i}]") for i, p in enumerate(packages)))
    if isinstance(raw, list) and raw:
        globs = []
        for i, glob in enumerate(raw):
            text = c.string(glob, f"{where}[{i}]")
            parts = Path(text).parts
            if text.startswith("/") or ".." in parts:
                c.fail(
                    f"{where}[{i}]",
                    f"{text!r} is outside the build context",
                    "write a glob relative to the build context, e.g. cmd/api/**",
                )
            globs.append(text)
        return Inputs("globs", globs=tuple(globs))
    c.fail(where, f"{stackfile.show(raw)} is not an input rule", EXAMPLE)


def resolve(
    inputs: Inputs,
    containerfile: Path,
    context: Path,
    args: dict,
    runner,
    left_out=(),
    memory: Path | None = None,
) -> InputSet:
    """The files of one build's inputs, by its rule. memory: a folder where a Go input set is kept
    with what it was found from, so a run where none of that changed skips `go list`."""
    sent = cache.context_files(context, left_out)
    if inputs.rule == "globs":
        rules = [(cache.pattern_regex(os.path.normpath(g)), False) for g in inputs.globs]
        return InputSet("globs", tuple(f for f in sent if cache.is_ignored(f, rules)))
    if inputs.rule == "go":
        slot = _memory_slot(memory, inputs, containerfile, context) if memory else None
        key = _go_key(inputs, containerfile, context, args, sent) if slot else ""
        known = runs.read_json(slot, {}) if slot else {}
        if key and known.get("key") == key:
            return InputSet("go", tuple(known["files"]))
        try:
            files = go_inputs(inputs, containerfile, context, args, runner, set(sent))
        except gobuilds.Unclear as exc:
            # Not kept: what failed (no Go, a module not downloaded yet) may be fixed by the next run.
            return InputSet("context", tuple(sent), f"inputs: go fell back to the whole context: {exc}")
        found = InputSet("go", tuple(sorted(set(files) & set(sent))))
        if slot:
            runs.write_json(slot, {"key": key, "files": list(found.files)})
        return found
    return InputSet("context", tuple(sent))


def _memory_slot(memory: Path, inputs: Inputs, containerfile: Path, context: Path) -> Path:
    """One file per build (context, Containerfile, packages): a new state replaces the old one."""
    which = json.dumps([str(Path(context).resolve()), str(Path(containerfile).resolve()), inputs.packages])
    return Path(memory) / f"{hashlib.sha256(which.encode()).hexdigest()[:32]}.json"


def _go_key(inputs: Inputs, containerfile: Path, context: Path, args: dict, sent: list) -> str:
    """What a Go input set is found from: the Containerfile, the build's args, the host, the Go
    toolchain, and every file the context sends, by path, size, modification time and inode (a
    stat each: no file is read). A change to any of them finds the set again."""
    go = shutil.which("go") or ""
    toolchain = os.stat(go) if go else None
    data = {
        "packages": inputs.packages,
        "containerfile": hashlib.sha256(Path(containerfile).read_bytes()).hexdigest(),
        "args": sorted((k, str(v)) for k, v in args.items()),
        "host": sorted(hostfacts.variables().items()),
        "go": [go, toolchain.st_mtime_ns, toolchain.st_size] if toolchain else None,
        "files": [_stat(Path(context) / name, name) for name in sent],
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _stat(path: Path, name: str) -> list:
    try:
        found = os.lstat(path)
    except OSError:
        return [name]
    return [name, found.st_size, found.st_mtime_ns, found.st_ino]


def go_inputs(inputs: Inputs, containerfile: Path, context: Path, args: dict, runner, sent: set) -> list:
    text = Path(containerfile).read_text(encoding="utf-8", errors="replace")
    if inputs.packages:
        builds = [gobuilds.GoBuild(inputs.packages)]
    else:
        facts = hostfacts.variables()
        host = {
            name: facts[hostfacts.GOARCH_VARIABLE if name.endswith("ARCH") else hostfacts.OS_VARIABLE]
            for name in ("TARGETARCH", "TARGETOS", "BUILDARCH", "BUILDOS")
        }
        builds = gobuilds.go_builds(text, args, host)
        if not builds:
            raise gobuilds.Unclear(
                "the Containerfile runs no `go build` kindling can read; name the main packages: "
                "`inputs: {go: [./cmd/api]}`"
            )
    files = set(copied_by_name(text, args, sent))
    files.update(name for name in MODULE_FILES if name in sent)
    try:
        files.add(Path(containerfile).resolve().relative_to(Path(context).resolve()).as_posix())
    except ValueError:
        pass  # a Containerfile outside the context is digested on its own (cache.build_digest)
    groups = {}
    for build in builds:
        groups.setdefault((build.tags, build.env), []).extend(build.packages)
    for (tags, env), packages in groups.items():
        files.update(go_list_files(runner, Path(context), list(dict.fromkeys(packages)), tags, dict(env)))
    return sorted(files)


def go_list_files(runner, context: Path, packages: list, tags: tuple, env: dict) -> set:
    """The files, relative to the context, of every package in the import closure of packages that
    lies inside the context, plus the go.mod and go.sum of their modules. Packages outside (the
    standard library, the module cache) are pinned by go.sum, which is an input."""
    argv = ["go", "list", "-deps", "-json=" + ",".join(GO_LIST_FIELDS)]
    if tags:
        argv += ["-tags", ",".join(tags)]
    # No toolchain download and no flags from the user's GOFLAGS: what the build's own go sees.
    go_env = {"GOTOOLCHAIN": "local", "GOFLAGS": "", **env}
    try:
        result = runner.run(argv + packages, env=go_env, cwd=context, mutating=False, timeout=GO_LIST_SECONDS)
    except CommandFailed as exc:
        reason = "go is not on PATH" if exc.returncode == 127 else _first_line(exc.tail)
        raise gobuilds.Unclear(f"`go list` failed: {reason}")
    root = context.resolve()
    files = set()
    for package in _json_stream(result.stdout):
        problem = package.get("Error") or (package.get("DepsErrors") or [None])[0]
        if problem:
            raise gobuilds.Unclear(
                f"`go list` reports {package.get('ImportPath')}: {problem.get('Err', problem)}"
            )
        if package.get("Standard"):
            continue
        folder = Path(package.get("Dir", ""))
        inside = _relative(folder, root)
        if inside is None:
            if not package.get("DepOnly"):
                raise gobuilds.Unclear(f"{package.get('ImportPath')} is not in the build context")
            continue
        for key in PACKAGE_FILES:
            for name in package.get(key) or ():
                files.add(_join(inside, name))
        module = package.get("Module") or {}
        go_mod = _relative(Path(module.get("GoMod") or "/"), root)
        if go_mod is not None:
            files.add(go_mod)
            files.add(_join(os.path.dirname(go_mod), "go.sum"))
    return files


def copied_by_name(text: str, args: dict, sent: set) -> list:
    """The context files a COPY or ADD takes by name (`COPY config/ /etc/app/`), which a Go import
    closure does not hold; whole-context sources (`COPY . .`) are left out (containerfile.copies
    leaves out `--from` stages and URLs)."""
    found = []
    for copy in containerfile.copies(text, args):
        for source in copy.sources:
            source = os.path.normpath(source).lstrip("/")
            if source in WHOLE_CONTEXT:
                continue
            rules = [(cache.pattern_regex(source), False)]
            found += [f for f in sent if cache.is_ignored(f, rules)]
    return found


def _json_stream(text: str):
    """`go list -json` prints one JSON object per package, one after another."""
    decoder, i = json.JSONDecoder(), 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return
        value, i = decoder.raw_decode(text, i)
        yield value


def _relative(path: Path, root: Path):
    try:
        relative = path.resolve().relative_to(root)
    except ValueError:
        return None
    return relative.as_posix()


def _join(folder: str, name: str) -> str:
    return name if folder in ("", ".") else f"{folder}/{name}"


def _first_line(text: str) -> str:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return re.sub(r"\s+", " ", lines[-1]) if lines else "no output"
