"""Content digest of a build's inputs, so an image whose inputs did not change is reused.

The digest covers the Containerfile, the build args, the target and the build's input set
(inputsets.py): by default every file of the context that the engine would send (minus
`.containerignore`/`.dockerignore` entries). It is stored on the image as a label; a later run
that computes the same digest finds the image by that label instead of building.
"""

import hashlib
import os
import re
from pathlib import Path

IGNORE_FILES = (".containerignore", ".dockerignore")
# Never part of an image's inputs: VCS metadata changes with every commit, and
# kindling's own state folder (runs, logs) changes with every run.
ALWAYS_SKIPPED = {".git", ".kindling"}
DIGEST_VERSION = "1"


def pattern_regex(pattern: str):
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        i += 1
    return re.compile(f"^{out}$")


def read_ignore_rules(context: Path) -> list:
    """(regex, negated) pairs from the context's ignore file, in order (last match wins)."""
    for name in IGNORE_FILES:
        path = context / name
        if path.is_file():
            rules = []
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                negated = line.startswith("!")
                line = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
                if line in ("", "."):
                    continue
                rules.append((pattern_regex(line), negated))
            return rules
    return []


def is_ignored(relative: str, rules: list) -> bool:
    """Docker's semantics: a pattern matching a folder excludes what is inside it."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for regex, negated in rules:
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def context_files(context: Path, left_out=()) -> list:
    """Relative paths of the files the engine would send, sorted; `left_out`: folders (anywhere)
    never sent, such as kindling's state folder (ignorefile.leaving_out)."""
    rules = read_ignore_rules(context)
    skipped = {Path(f).resolve() for f in left_out}
    found = []
    for root, folders, files in os.walk(context):
        relative_root = os.path.relpath(root, context)
        relative_root = "" if relative_root == "." else relative_root + "/"
        folders[:] = sorted(
            f for f in folders if f not in ALWAYS_SKIPPED and Path(root, f).resolve() not in skipped
        )
        for name in files:
            relative = relative_root + name
            if not is_ignored(relative, rules):
                found.append(relative)
        # Symlinked folders are sent as links, not followed.
        for name in list(folders):
            if os.path.islink(os.path.join(root, name)):
                folders.remove(name)
                relative = relative_root + name
                if not is_ignored(relative, rules):
                    found.append(relative)
    return sorted(found)


def _file_digest(path: Path) -> str:
    if path.is_symlink():
        return "link:" + os.readlink(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    executable = "x" if os.access(path, os.X_OK) else "-"
    return executable + digest.hexdigest()


def build_digest(
    containerfile: Path, context: Path, args: dict, target: str = "", left_out=(), inputs=None
) -> str:
    """inputs: an inputsets.InputSet, the files that count (default: all the context sends)."""
    digest = hashlib.sha256()

    def add(*parts):
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)

    add("kindling-build-inputs", DIGEST_VERSION)
    add("containerfile", Path(containerfile).read_bytes())
    for key in sorted(args):
        add("arg", key, str(args[key]))
    add("target", target or "")
    files = context_files(Path(context), left_out) if inputs is None else inputs.files
    for relative in files:
        add("file", relative, _file_digest(Path(context) / relative))
    return digest.hexdigest()
