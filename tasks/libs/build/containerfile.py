"""What a Containerfile copies from its build context: the sources of its COPY and ADD lines. Pure.

Read as BuildKit's and buildah's parsers read it: parser directives (`# escape=`) at the top,
comments, lines continued with the escape character, heredocs skipped, instructions in any case,
the JSON form (`COPY ["a", "b"]`), flags (`--chown=...`). Sources taken from a stage or an image
(`--from=`), URLs and heredocs are not the context's; `$VAR` and `${VAR}` are expanded from the
stage's ARG and ENV values (build args first); a source that still names an unset variable is
left out, as its value is not known before the build.
"""

import json
import re
from dataclasses import dataclass

_DIRECTIVE_RE = re.compile(r"^#\s*([A-Za-z][A-Za-z0-9]*)\s*=\s*(.*?)\s*$")
_INSTRUCTION_RE = re.compile(r"^\s*([A-Za-z]+)(?:\s+(.*))?$", re.S)
_HEREDOC_RE = re.compile(r"<<(-?)([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")
_VARIABLE_RE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
_URL_RE = re.compile(r"^(https?|git)://|^git@")


@dataclass(frozen=True)
class Instruction:
    line: int  # line of its first physical line
    keyword: str  # upper case: FROM, COPY, ...
    arguments: str  # the rest, continuation lines joined


@dataclass(frozen=True)
class Copy:
    """A COPY or ADD whose sources come from the build context."""

    line: int
    keyword: str  # COPY or ADD
    sources: tuple  # as written, variables expanded; relative to the context
    text: str  # the instruction, shown on one line

    def __str__(self) -> str:
        return self.text


def instructions(text: str) -> list:
    """The instructions of a Containerfile, in order."""
    lines = text.removeprefix("\ufeff").splitlines()
    escape, i = "\\", 0
    while i < len(lines):  # parser directives: only before anything else
        match = _DIRECTIVE_RE.match(lines[i])
        if not match:
            break
        if match[1].lower() == "escape" and match[2] in ("\\", "`"):
            escape = match[2]
        i += 1
    found = []
    while i < len(lines):
        first, parts = None, []
        while i < len(lines):
            raw = lines[i]
            i += 1
            stripped = raw.strip()
            if stripped.startswith("#") or not stripped:
                continue  # comments and empty lines, also inside a continued instruction
            first = i if first is None else first
            body = raw.rstrip()
            if body.endswith(escape):
                parts.append(body[: -len(escape)])
                continue
            parts.append(raw)
            break
        joined = " ".join(part.strip() for part in parts).strip()
        match = _INSTRUCTION_RE.match(joined)
        if not match:
            continue
        found.append(Instruction(first, match[1].upper(), (match[2] or "").strip()))
        for heredoc in _HEREDOC_RE.finditer(joined):  # skip each heredoc's body
            strip_tabs, word = heredoc[1] == "-", heredoc[3]
            while i < len(lines) and (lines[i].lstrip("\t") if strip_tabs else lines[i]) != word:
                i += 1
            i += 1
    return found


def expand(text: str, values: dict):
    """`$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:+alternative}` from values; None when a variable
    without a default is unset."""
    unset = []

    def one(match):
        name = match[1] or match[4]
        value = values.get(name)
        if match[2] == "-":
            return value if value else match[3]
        if match[2] == "+":
            return match[3] if value else ""
        if value is None:
            unset.append(name)
            return ""
        return value

    result = _VARIABLE_RE.sub(one, text)
    return None if unset else result


def _arguments(text: str) -> tuple:
    """A COPY/ADD's (flags, words): flags first, then the JSON form or whitespace-separated words."""
    flags = []
    while text.startswith("--"):
        flag, _, text = text.partition(" ")
        flags.append(flag)
        text = text.lstrip()
    if text.startswith("["):
        try:
            words = json.loads(text)
        except ValueError:
            words = None
        if isinstance(words, list) and all(isinstance(w, str) for w in words):
            return flags, words
    return flags, text.split()


def env_pairs(text: str) -> dict:
    """`ENV K=V K2="v 2"`, or the old `ENV K value` form."""
    words = re.findall(r"""(?:[^\s"']+|"(?:\\.|[^"])*"|'[^']*')+""", text)
    if words and "=" not in words[0]:
        return {words[0]: text[len(words[0]) :].strip()}
    pairs = {}
    for word in words:
        key, _, value = word.partition("=")
        pairs[key] = re.sub(r"""^(["'])(.*)\1$""", r"\2", value, flags=re.S)
    return pairs


def walk(text: str, build_args=None):
    """Each instruction with the ARG and ENV values its stage has at that point (a live dict: the
    environment a RUN sees). Build args win over ARG defaults; an ARG before the first FROM is
    global and reaches a stage only through a re-declaration, as in BuildKit and buildah."""
    build_args = dict(build_args or {})
    global_args, values, in_stage = {}, {}, False
    for instruction in instructions(text):
        keyword, arguments = instruction.keyword, instruction.arguments
        if keyword == "FROM":
            in_stage, values = True, {}
        elif keyword == "ARG":
            for declaration in arguments.split():
                name, has_default, default = declaration.partition("=")
                if name in build_args:
                    value = build_args[name]
                elif has_default:
                    value = expand(default.strip("\"'"), values if in_stage else global_args)
                else:
                    value = global_args.get(name) if in_stage else None
                if value is not None:
                    (values if in_stage else global_args)[name] = value
        elif keyword == "ENV" and in_stage:
            for key, value in env_pairs(arguments).items():
                expanded = expand(value, values)
                if expanded is not None:
                    values[key] = expanded
        yield instruction, values


def copies(text: str, build_args=None) -> list:
    """Every COPY and ADD that takes sources from the build context."""
    found = []
    for instruction, values in walk(text, build_args):
        keyword, arguments = instruction.keyword, instruction.arguments
        if keyword in ("COPY", "ADD"):
            flags, words = _arguments(arguments)
            if any(flag.startswith("--from") for flag in flags) or len(words) < 2:
                continue
            sources = []
            for source in words[:-1]:
                if source.startswith("<<") or _URL_RE.match(source):
                    continue
                expanded = expand(source, values)
                if expanded:
                    sources.append(expanded)
            if sources:
                found.append(Copy(instruction.line, keyword, tuple(sources), f"{keyword} {arguments}"))
    return found
