"""Base-image substitution: a stack's `base_images` (every build) and `build.base_images` (one build)
map image repositories to other references, so a Containerfile whose FROM names an image this machine
cannot pull (a registry behind a mirror, an air-gapped CI, a digest-pinned Red Hat UBI) builds from
another one, with the user's Containerfile untouched.

Every FROM of every stage is read as the build resolves it (`FROM ${BUILDER_IMAGE} AS builder` with
the ARG's default or the build arg; `FROM repo:tag@sha256:...`); one whose repository is mapped is
rewritten to the replacement in a generated Containerfile (`Substituted.text`), which the build uses
instead. A FROM that names an earlier stage is left alone. A mapping matches a repository whatever
its tag and digest (`ubi10/ubi-minimal` matches `ubi10/ubi-minimal:latest@sha256:...`), compared as
a node would name it (`golang` is `docker.io/library/golang`). Pure.
"""

import shlex
from dataclasses import dataclass
from pathlib import Path

from .. import imagerefs
from ..build import containerfile
from ..errors import KindlingError, StackError
from .stackfile import Checker, show, type_name

EXAMPLE = 'write e.g. `base_images: {"registry.example/ubi10/ubi-minimal": "localhost/mirror/ubi:10"}`'
SETTING_EXAMPLE = (
    "write REPOSITORY=IMAGE[,REPOSITORY=IMAGE], "
    "e.g. registry.example/ubi10/ubi-minimal=localhost/mirror/ubi:10"
)


@dataclass(frozen=True)
class Substitution:
    line: int  # of the FROM, in the user's Containerfile
    original: str  # the image the FROM resolves to
    replacement: str


@dataclass(frozen=True)
class Substituted:
    text: str  # the Containerfile to build
    substitutions: tuple  # Substitution, in order
    unused: tuple  # mapped repositories no FROM named


def parse(c: Checker, raw, where: str) -> tuple:
    """((repository, replacement), ...) from a mapping of repository -> image reference."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        c.fail(where, f"must be a mapping of image repository to image, got {type_name(raw)}", EXAMPLE)
    found = []
    for key, value in raw.items():
        field = f"{where}.{key}"
        try:
            repository = imagerefs.parse(key if isinstance(key, str) else "")
        except imagerefs.BadReference as exc:
            c.fail(field, str(exc), EXAMPLE)
        if repository.tag or repository.digest:
            c.fail(
                field,
                f"{show(key)} names a tag or digest",
                f"map the repository alone: {repository.repository}",
            )
        text = c.string(value, field, fix=EXAMPLE)
        try:
            imagerefs.parse(text)
        except imagerefs.BadReference as exc:
            c.fail(field, str(exc), "write an image reference like localhost/mirror/go-toolset:1.26")
        found.append((key, text))
    return tuple(found)


def from_setting(value, origin: str) -> tuple:
    """The base-images setting (--base-images, KINDLING_BASE_IMAGES, Invoke's e2e.base_images):
    `REPOSITORY=IMAGE,...`, or a mapping in an Invoke config file; each entry checked as a stack's
    `base_images` entry is, the error naming where the value came from."""
    if value in (None, ""):
        return ()
    if isinstance(value, dict):
        pairs = value
    else:
        pairs = {}
        for part in filter(None, (p.strip() for p in str(value).split(","))):
            key, sep, image = part.partition("=")
            if not sep or not key.strip() or not image.strip():
                raise KindlingError(f"{origin}: {part!r} is not REPOSITORY=IMAGE\n  fix: {SETTING_EXAMPLE}")
            pairs[key.strip()] = image.strip()
    try:
        return parse(Checker(Path(origin), {}, check_files=False), pairs, "base images")
    except StackError as exc:
        raise KindlingError(f"{origin}: {exc.field}: {exc.problem}\n  fix: {exc.fix}") from None


def merged(*layers: tuple) -> tuple:
    """A build's mapping from layers, each later one's entries winning: the stack's, the build's own,
    the setting's."""
    result = ()
    for layer in layers:
        mine = {_repository(key) for key, _ in layer}
        result = tuple((k, v) for k, v in result if _repository(k) not in mine) + tuple(layer)
    return result


def substitute(text: str, build_args: dict, mapping: tuple) -> Substituted:
    """The Containerfile text with each mapped FROM rewritten."""
    wanted = {_repository(key): (key, value) for key, value in mapping}
    global_args, stages, seen_from = {}, set(), False
    lines = text.splitlines(keepends=True)
    substitutions, used = [], set()
    for instruction in containerfile.instructions(text):
        if instruction.keyword == "ARG" and not seen_from:
            for declaration in instruction.arguments.split():
                name, has_default, default = declaration.partition("=")
                if name in build_args:
                    global_args[name] = str(build_args[name])
                elif has_default:
                    value = containerfile.expand(default.strip("\"'"), global_args)
                    if value is not None:
                        global_args[name] = value
        if instruction.keyword != "FROM":
            continue
        seen_from = True
        flags, image, stage = _from_parts(instruction.arguments)
        resolved = containerfile.expand(image, global_args) if image else None
        earlier_stage = resolved is not None and resolved.lower() in stages
        if stage:
            stages.add(stage.lower())
        if not resolved or earlier_stage:
            continue
        try:
            repository = _repository(resolved)
        except imagerefs.BadReference:
            continue  # the build itself will say what is wrong with it
        if repository not in wanted:
            continue
        replacement = wanted[repository][1]
        used.add(repository)
        substitutions.append(Substitution(instruction.line, resolved, replacement))
        _replace_instruction(
            lines,
            instruction.line,
            " ".join(["FROM", *flags, replacement, *(["AS", stage] if stage else [])]),
        )
    unused = tuple(key for key, _ in mapping if _repository(key) not in used)
    return Substituted("".join(lines), tuple(substitutions), unused)


def _repository(reference: str) -> str:
    return imagerefs.parse(imagerefs.normalize(reference)).repository


def _from_parts(arguments: str) -> tuple:
    """(flags, image, stage name) of `FROM [--platform=...] image [AS name]`."""
    words = shlex.split(arguments, posix=False)
    flags = [w for w in words if w.startswith("--")]
    rest = [w for w in words if not w.startswith("--")]
    image = rest[0] if rest else ""
    stage = rest[2] if len(rest) >= 3 and rest[1].lower() == "as" else ""
    return flags, image, stage


def _replace_instruction(lines: list, first: int, new: str) -> None:
    """Put new in place of the instruction that starts at line `first` (1-based), continuation
    lines included; the line count stays, so later line numbers still hold."""
    i = first - 1
    original = lines[i]
    lines[i] = new + ("\n" if original.endswith("\n") else "")
    while original.rstrip().endswith("\\") and i + 1 < len(lines):
        i += 1
        original = lines[i]
        lines[i] = "\n" if original.endswith("\n") else ""
