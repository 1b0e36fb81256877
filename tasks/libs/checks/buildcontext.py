"""What a build takes from its context, checked before building (`invoke stack.check`).

Each COPY/ADD source (tasks/libs/build/containerfile.py) must be in the context, must not be left out by
the ignore file the engine reads (tasks/libs/build/ignorefile.py), and must not be a git submodule
that is not checked out: podman copies an empty submodule folder without complaint, and the
build fails later, or the image lacks the code. Pure apart from reading files; whether git
records a submodule's commit is asked through the `gitlink` function passed in.
"""

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from ..build import ignorefile
from .validate import Problem

_SECTION_RE = re.compile(r'^\s*\[\s*submodule\s+"(.*)"\s*\]\s*$')
_KEY_RE = re.compile(r"^\s*(path|url)\s*=\s*(.*?)\s*$")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Submodule:
    path: str  # relative to the repository's top folder
    url: str


def parse_gitmodules(text: str) -> list:
    """The submodules a .gitmodules file declares (git-config syntax: sections, `key = value`)."""
    found, path, url = [], None, ""
    for line in text.splitlines() + ['[submodule ""]']:
        if _SECTION_RE.match(line):
            if path:
                found.append(Submodule(posixpath.normpath(path.strip('"')), url.strip('"')))
            path, url = None, ""
            continue
        match = _KEY_RE.match(line)
        if match and match[1] == "path":
            path = match[2]
        elif match:
            url = match[2]
    return found


def repository_top(folder: Path):
    """The nearest folder at or above `folder` that holds `.git` (a folder, or a file in a work
    tree or submodule), or None."""
    folder = Path(os.path.abspath(folder))
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def context_source(source: str) -> str:
    """A COPY source as a path inside the context. Both engines resolve sources inside it: a
    leading `/` or `../` cannot leave it (checked with podman 4.3: `COPY ../a.txt /` copies the
    context's a.txt)."""
    cleaned = posixpath.normpath("/" + source).lstrip("/")
    return cleaned or "."


def _empty(folder: Path) -> bool:
    return not folder.is_dir() or not any(folder.iterdir())


def _files_under(folder: Path, relative: str):
    """Context-relative paths of the files under a folder of the context."""
    for root, folders, files in os.walk(folder):
        folders.sort()
        base = os.path.relpath(root, folder)
        for name in sorted(files):
            path = name if base == "." else f"{base}/{name}"
            yield path if relative == "." else f"{relative}/{path}"


def excluded_by(matcher, context: Path, relative: str):
    """The rule that leaves a source out entirely (it, or every file under it), or None."""
    rule = matcher.excluded_by(relative)
    target = context / relative
    if not target.is_dir() or target.is_symlink():
        return rule
    first = None
    for path in _files_under(target, relative):
        by = matcher.excluded_by(path)
        if by is None:
            return None  # the build gets at least this file
        first = first or by
    return rule or first


class ContextCheck:
    """The COPY/ADD sources of one build against its context."""

    def __init__(self, engine: str, containerfile: Path, context: Path, shown: str, gitlink=None):
        self.containerfile, self.context = Path(containerfile), Path(context)
        self.shown = shown  # the Containerfile as problems name it
        self.gitlink = gitlink  # (top, path) -> True/False/None: does git record a commit there?
        self.ignore_path = ignorefile.ignore_file(engine, self.context, self.containerfile)
        self.top = repository_top(self.context)
        self.submodules = []
        if self.top is not None and (self.top / ".gitmodules").is_file():
            self.submodules = parse_gitmodules((self.top / ".gitmodules").read_text(errors="replace"))

    def problems(self, copies) -> list:
        problems, matcher = [], None
        if self.ignore_path is not None:
            try:
                matcher = ignorefile.read(self.ignore_path)
            except ignorefile.BadPattern as exc:
                problems.append(
                    Problem(
                        str(self.ignore_path),
                        "",
                        f"{exc}; the build refuses the file",
                        "correct the pattern (Go filepath.Match syntax, plus **)",
                    )
                )
        for copy in copies:
            for source in copy.sources:
                problem = self.source_problem(copy, source, matcher)
                if problem is not None:
                    problems.append(problem)
        return problems

    def source_problem(self, copy, source: str, matcher):
        relative = context_source(source)
        where = f"line {copy.line}"
        shown = f"{copy.keyword} {source}"
        submodule = self._submodule_problem(copy, source, relative)
        if submodule is not None:
            return submodule
        if any(c in _GLOB_CHARS for c in relative):
            targets = sorted(p.relative_to(self.context).as_posix() for p in self.context.glob(relative))
        else:
            targets = [relative] if (self.context / relative).exists() or relative == "." else []
        if not targets:
            return Problem(
                self.shown,
                where,
                f"{shown}: {relative} is not in the build context {self.context}",
                "correct the source (COPY sources are relative to the build "
                "context), or set the service's build.context to the folder that holds it",
            )
        if matcher is None:
            return None
        rules = [excluded_by(matcher, self.context, target) for target in targets]
        if any(rule is None for rule in rules):
            return None
        rule = rules[0]
        return Problem(
            self.shown,
            where,
            f"{shown}: {relative} is left out of the build context by {self.ignore_path} line "
            f"{rule.line} ({rule}), so the build cannot copy it",
            f"narrow that pattern, or add an exception after it: !{relative}",
        )

    def _submodule_problem(self, copy, source: str, relative: str):
        """A source that is, is inside, or holds a submodule that is not checked out. The whole
        context (`COPY . .`) is not taken to need every submodule in it."""
        if self.top is None or not self.submodules:
            return None
        prefix = Path(os.path.relpath(os.path.abspath(self.context), self.top)).as_posix()
        in_repository = posixpath.normpath(posixpath.join(prefix, relative))
        for submodule in self.submodules:
            path = submodule.path
            inside = in_repository == path or in_repository.startswith(path + "/")
            holds = relative != "." and path.startswith(in_repository + "/")
            if not (inside or holds) or not _empty(self.top / path):
                continue
            recorded = self.gitlink(self.top, path) if self.gitlink else None
            shown = f"{copy.keyword} {source}"
            state = "is missing" if not (self.top / path).exists() else "is empty"
            if recorded is False:
                return Problem(
                    self.shown,
                    f"line {copy.line}",
                    f"{shown}: {path} is a git submodule (.gitmodules in {self.top}) and {state}; the "
                    "checked-out commit records no commit for it, so `git submodule update` cannot fetch it",
                    f"clone it there (git clone {submodule.url or '<its url>'} {self.top / path}), or check "
                    "out a commit of the project that records the submodule",
                )
            return Problem(
                self.shown,
                f"line {copy.line}",
                f"{shown}: {path} is a git submodule (.gitmodules in {self.top}) that is not "
                f"checked out: its folder {state}",
                f"git -C {self.top} submodule update --init {path}",
            )
        return None
