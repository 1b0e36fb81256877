"""`.dockerignore` files: which one a build reads, and which context paths it leaves out. Pure.

The rules are Docker's documented ones, as moby/patternmatcher implements them
(ignorefile/ignorefile.go ReadAll, patternmatcher.go New, compile and MatchesOrParentMatches):

- a line starting with `#` is a comment; other lines are trimmed, empty ones skipped;
- `!` starts an exception; each pattern is cleaned like a path (`a//b/../c` is `a/c`), and a
  leading `/` is dropped: the context's root is both `/` and `.`;
- `*` matches any run of characters but `/`, `?` one character but `/`, `[...]` a class,
  `\\` escapes the next character; `**` matches any number of folders, none included;
- a pattern that matches a folder leaves out everything under it;
- the last pattern that matches a path decides, so `!keep.txt` after `*.txt` keeps it.
"""

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from ..adapters.engine import engine_class

_REGEX_SPECIAL = set(".+()|{}$")  # regex metacharacters with no meaning in a path pattern (shouldEscape)
_WILDCARDS = "*?[]\\"


class BadPattern(ValueError):
    """A pattern the engine refuses (the whole build fails on it)."""


@dataclass(frozen=True)
class Rule:
    pattern: str  # cleaned, without the leading "!"
    exception: bool  # a `!` line: puts back what an earlier pattern left out
    line: int  # 1-based line number in the ignore file

    def __str__(self) -> str:
        return ("!" if self.exception else "") + self.pattern


def parse(text: str) -> list:
    """The rules of an ignore file's text, in order (ignorefile.ReadAll)."""
    rules = []
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        if raw.startswith("#"):
            continue
        pattern = raw.strip()
        if not pattern:
            continue
        exception = pattern.startswith("!")
        if exception:
            pattern = pattern[1:].strip()
            if not pattern:
                raise BadPattern(f'line {number}: illegal exception pattern "!"')
        pattern = posixpath.normpath(pattern)
        if len(pattern) > 1 and pattern.startswith("/"):
            pattern = pattern.lstrip("/") or "."
        rules.append(Rule(pattern, exception, number))
    return rules


def _regex(pattern: str) -> re.Pattern:
    """The pattern as a regular expression over slash-separated paths (patternmatcher's compile)."""
    out, i = "^", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1  # `**/` is `**`
            # `**` at the end matches everything below; elsewhere any number of folders, none too.
            out += ".*" if i >= len(pattern) else "(.*/)?"
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "\\":
            i += 1
            out += re.escape(pattern[i]) if i < len(pattern) else re.escape("\\")
        elif char in _REGEX_SPECIAL:
            out += "\\" + char
        else:
            out += char  # `[`, `]`, `^` and the rest pass through, as in Go
        i += 1
    try:
        return re.compile(out + "$")
    except re.error as exc:
        raise BadPattern(f"syntax error in pattern {pattern!r}: {exc}") from None


class Matcher:
    """Which context paths a list of rules leaves out."""

    def __init__(self, rules):
        self.rules = list(rules)
        self._compiled = []
        for rule in self.rules:
            try:
                self._compiled.append((rule, _matcher(rule.pattern)))
            except BadPattern as exc:
                raise BadPattern(f"line {rule.line}: {exc}") from None

    def excluded_by(self, path: str):
        """The rule that leaves `path` (relative to the context, slash-separated) out, or None when
        the build gets it. The context's root itself is never left out."""
        path = posixpath.normpath(path).lstrip("/")
        if path in ("", "."):
            return None
        parents = path.split("/")[:-1]
        prefixes = ["/".join(parents[: i + 1]) for i in range(len(parents))]
        deciding = None
        for rule, matches in self._compiled:
            # Only a match that changes the outcome counts: an exception when left out, a pattern when kept.
            if rule.exception != (deciding is not None):
                continue
            if matches(path) or any(matches(prefix) for prefix in prefixes):
                deciding = None if rule.exception else rule
        return deciding


def _matcher(pattern: str):
    """A predicate for one cleaned pattern, with patternmatcher's shortcuts: `**/x` also matches a
    path ending in `x` after any character, `x/**` is a plain prefix."""
    if pattern.startswith("**") and not any(c in pattern[2:] for c in _WILDCARDS):
        suffix = pattern[2:]
        if suffix.startswith("/"):
            return lambda path: path.endswith(suffix) or path == suffix[1:]
        if suffix:
            return lambda path: path.endswith(suffix)
    if pattern.endswith("**") and not any(c in pattern[:-2] for c in _WILDCARDS):
        prefix = pattern[:-2]
        return lambda path: path.startswith(prefix)
    regex = _regex(pattern)
    return lambda path: regex.match(path) is not None


def ignore_file(engine: str, context: Path, containerfile: Path):
    """The ignore file a build reads, or None: the first of the engine's candidates that exists
    (Engine.ignore_files: podman's per buildah's ContainerIgnoreFile, docker's per BuildKit)."""
    candidates = engine_class(engine).ignore_files(Path(containerfile), Path(context))
    return next((path for path in candidates if path.is_file()), None)


def read(path: Path) -> Matcher:
    """The Matcher of an ignore file; BadPattern names the line the engine would refuse."""
    return Matcher(parse(Path(path).read_text(encoding="utf-8", errors="replace")))


def leaving_out(context: Path, containerfile: Path, folder: Path) -> str | None:
    """For podman's `--ignorefile`: the rules the build reads already (ignore_file), then one that
    leaves `folder` out, last so that no exception puts any of it back. None when the folder is not
    inside the context."""
    try:
        relative = Path(folder).resolve().relative_to(Path(context).resolve())
    except ValueError:
        return None
    if relative == Path("."):
        return None
    source = ignore_file("podman", context, containerfile)
    text = source.read_text(encoding="utf-8", errors="replace") if source else ""
    if text and not text.endswith("\n"):
        text += "\n"
    escaped = re.sub(r"([*?\[\]\\])", r"\\\1", relative.as_posix())
    # No leading "/": podman 4.3's --ignorefile keeps it, and then matches nothing. Docker's patterns
    # are anchored at the context's root either way.
    return f"{text}# kindling's state folder (runs, logs, kubeconfigs, caches): never built\n{escaped}\n"
