"""The `go build` commands of a Containerfile: which main packages an image compiles, with which build
tags, GOOS, GOARCH and CGO_ENABLED. Pure: it reads text and returns values.

An image's Go inputs (inputsets.py) are the import closure of these packages, so they must be read
exactly; whatever this cannot tell for certain (a package named by a variable no build arg sets,
`go build -C`, a `go build` inside a script the Containerfile runs) raises Unclear, and the build
falls back to its whole context: it never guesses.

Taken from the RUN instructions, shell form or exec form (containerfile.walk gives each its stage's
ARG and ENV values): `VAR=value ... go build|install [flags] [packages]`, in any `&&`, `;` or
`if ... fi` chain. Every branch counts (Kubernaut's Dockerfiles build the same package with
`-cover` or without, chosen by a build arg), so the inputs are those of every build it may run.
"""

import json
import re
import shlex
from dataclasses import dataclass

from . import containerfile

# `go build` flags that take a value as the next word (`go help build`); the rest are booleans.
VALUE_FLAGS = {
    "-o",
    "-p",
    "-tags",
    "-ldflags",
    "-gcflags",
    "-asmflags",
    "-gccgoflags",
    "-mod",
    "-modfile",
    "-pkgdir",
    "-buildmode",
    "-compiler",
    "-installsuffix",
    "-overlay",
    "-pgo",
    "-toolexec",
    "-covermode",
    "-coverpkg",
    "-C",
}
SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", ";;"}
SHELL_WORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "for", "!", "{", "}"}
# What the Go toolchain reads from its environment and that changes which files a package compiles.
SELECTING = ("GOOS", "GOARCH", "CGO_ENABLED")
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)


class Unclear(Exception):
    """What the Containerfile compiles cannot be told for certain; the message says why."""


@dataclass(frozen=True)
class GoBuild:
    packages: tuple  # as written, relative to where `COPY . .` put the context
    tags: tuple = ()
    env: tuple = ()  # (name, value) of SELECTING, sorted; a name absent takes the host's default


def expand(word: str, values: dict) -> str:
    """containerfile.expand, raising Unclear where a variable has no value."""
    expanded = containerfile.expand(word, values)
    if expanded is None:
        raise Unclear(f"`{word}` uses a variable that no ARG default, ENV or build arg sets")
    return expanded


def go_builds(text: str, args: dict, host: dict) -> list:
    """Every `go build` or `go install` of the Containerfile text. args: the build's args; host: the
    platform args (TARGETOS, TARGETARCH, BUILDOS, BUILDARCH), the host's, as kindling builds for its
    own node. A RUN sees its stage's ARG and ENV values as environment variables."""
    builds = []
    for instruction, values in containerfile.walk(text, {**host, **args}):
        if instruction.keyword == "RUN":
            builds += _run_builds(_run_words(instruction.arguments), values)
    return builds


def _run_words(rest: str) -> list:
    while rest.startswith("--"):  # RUN --mount=... --network=...
        _, _, rest = rest.partition(" ")
        rest = rest.lstrip()
    if rest.startswith("["):
        try:
            argv = json.loads(rest)
        except json.JSONDecodeError:
            argv = None
        if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
            # Exec form: `["go", "build", ...]` is one command; `["sh", "-c", script]` a script.
            if len(argv) >= 3 and argv[1] == "-c" and argv[0].rsplit("/", 1)[-1] in ("sh", "bash"):
                rest = argv[2]
            else:
                return argv
    lexer = shlex.shlex(rest, posix=True, punctuation_chars=";&|()")
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError as exc:  # an unclosed quote
        raise Unclear(f"a RUN instruction cannot be read: {exc}")


def _run_builds(words: list, variables: dict) -> list:
    builds, exported, command = [], {}, []
    for word in words + [";"]:
        if word in SEPARATORS:
            if command[:1] == ["export"]:
                exported.update(_assignments(command[1:], {**variables, **exported}))
            elif command:
                build = _command_build(command, {**variables, **exported})
                if build is not None:
                    builds.append(build)
            command = []
        elif command or word not in SHELL_WORDS:
            command.append(word)
    return builds


def _assignments(words: list, scope: dict) -> dict:
    """The values of leading NAME=value words that decide what go compiles; others are not read."""
    found = {}
    for word in words:
        match = ASSIGNMENT.match(word)
        if not match:
            break
        name, value = match.groups()
        if name in SELECTING or name == "GOFLAGS":
            found[name] = expand(value, {**scope, **found})
    return found


def _command_build(command: list, scope: dict):
    env = _assignments(command, scope)
    while command and ASSIGNMENT.match(command[0]):
        command = command[1:]
    if len(command) < 2 or command[0].rsplit("/", 1)[-1] != "go" or command[1] not in ("build", "install"):
        return None
    scope = {**scope, **env}
    tags, packages = [], []
    words = shlex.split(scope.get("GOFLAGS", "")) + command[2:]
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            packages += [expand(w, scope) for w in words[i + 1 :]]
            break
        if word.startswith("-"):
            name, has_value, value = word.partition("=")
            name = "-" + name.lstrip("-")
            if name in VALUE_FLAGS and not has_value:
                i += 1
                value = words[i] if i < len(words) else ""
            if name == "-C":
                raise Unclear("`go build -C` changes folder first; name the packages in build.inputs")
            if name == "-tags":
                tags += [t for t in re.split(r"[,\s]+", expand(value, scope)) if t]
        else:
            packages.append(expand(word, scope))
            if re.search(r"[$`(]", packages[-1]):
                raise Unclear(f"`{' '.join(command)}` names its packages by a command's output")
        i += 1
    selecting = tuple(sorted((name, scope[name]) for name in SELECTING if scope.get(name)))
    return GoBuild(tuple(packages or ["."]), tuple(sorted(set(tags))), selecting)
