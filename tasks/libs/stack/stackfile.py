"""Reading a stack file safely, and the field checks every section of it shares.

Pure apart from reading files. Every problem becomes a StackError naming the file, the
field and the fix.
"""

import math
import os
import re
from contextlib import contextmanager
from pathlib import Path

import yaml

from ..errors import StackError

MAX_STACK_BYTES = 1024 * 1024
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
}


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last."""


MAX_ALIASES = 200


def _compose_node(loader, parent, index):
    # Refuse alias trees ("billion laughs"): a stack file has no use for many aliases.
    if loader.check_event(yaml.events.AliasEvent):
        loader.alias_count = getattr(loader, "alias_count", 0) + 1
        if loader.alias_count > MAX_ALIASES:
            raise yaml.composer.ComposerError(
                None, None, f"more than {MAX_ALIASES} aliases (*name)", loader.peek_event().start_mark
            )
    return yaml.SafeLoader.compose_node(loader, parent, index)


_UniqueKeyLoader.compose_node = _compose_node


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float, bool, type(None))):
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain value, not a list or mapping", key_node.start_mark
            )
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_document(path: Path) -> dict:
    """Read a stack file into a mapping, or raise StackError saying why it is unreadable."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        fix = "create it, or name another with E2E_STACK=FILE or invoke config e2e.stack"
        raise StackError(path, "", "stack file not found", fix) from None
    except OSError as exc:
        raise StackError(path, "", f"cannot read: {exc.strerror}") from None
    if not path.is_file():
        raise StackError(path, "", "is not a file", "name a YAML stack file")
    if size > MAX_STACK_BYTES:
        raise StackError(
            path,
            "",
            f"is {size} bytes; a stack file is at most {MAX_STACK_BYTES}",
            "a stack file describes services; keep manifests in their own files",
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StackError(path, "", f"is not UTF-8 (byte {exc.start})", "save the file as UTF-8") from None
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise StackError(
            path,
            "",
            f"invalid YAML: {where}{problem}",
            "fix the YAML syntax (each key once; indent with spaces)",
        ) from None
    except RecursionError:
        raise StackError(path, "", "invalid YAML: nested too deeply") from None
    if document is None:
        raise StackError(path, "", "is empty", "describe at least `name:` and `services:`")
    if not isinstance(document, dict):
        raise StackError(
            path,
            "",
            f"top level is a {type_name(document)}, not a mapping",
            "start the file with keys such as `name:` and `services:`",
        )
    return document


def show(value, limit=80) -> str:
    """A value as an error message may quote it: repr, cut short (a YAML alias tree can be huge)."""
    text = repr(value) if not isinstance(value, (dict, list)) else f"<{type_name(value)}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def type_name(value) -> str:
    return {
        dict: "mapping",
        list: "list",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def expand_env(text: str, env) -> str:
    """Expand ${VAR} and ${VAR:-default} from env; an unset ${VAR} without default is ''."""
    return _ENV_RE.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), text)


def unset_variables(text: str, env) -> list:
    """The ${VAR}s of text that expand_env would turn into '': unset (or empty), with no default."""
    return [m.group(1) for m in _ENV_RE.finditer(text) if m.group(2) is None and not env.get(m.group(1))]


def positive_seconds(value) -> bool:
    """A usable timeout: a finite number above zero (YAML also reads .nan and .inf as numbers)."""
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    return number and math.isfinite(value) and value > 0


def parse_size(text) -> int:
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError
    if isinstance(text, (int, float)):
        if not math.isfinite(text) or not 0 <= text <= 2**62:
            raise ValueError
        return int(text)
    match = _SIZE_RE.match(text)
    if not match:
        raise ValueError
    unit = (match.group(2) or "").lower().rstrip("b")
    size = float(match.group(1)) * _SIZE_UNITS[unit]
    if not math.isfinite(size) or size > 2**62:
        raise ValueError
    return int(size)


class Checker:
    """Walks one stack document, raising StackError at the first problem; or, collecting (given a
    list of problems: `invoke stack.check`), recording every problem it can find."""

    def __init__(self, path: Path, env, check_files: bool, problems: list | None = None):
        self.path, self.env, self.check_files = path, env, check_files
        self.problems = problems

    def fail(self, field_name, problem, fix=""):
        """A problem past which this part of the document cannot be read (see section)."""
        raise StackError(self.path, field_name, problem, fix)

    def report(self, field_name, problem, fix=""):
        """A problem the walk can go past (an unknown key, a missing file): recorded when collecting."""
        error = StackError(self.path, field_name, problem, fix)
        if self.problems is None:
            raise error
        self.problems.append(error)

    @contextmanager
    def section(self):
        """One part of the document that is read on its own (a service, `test:`): collecting, its
        first problem is recorded and the walk goes on with the next part."""
        try:
            yield
        except StackError as error:
            if self.problems is None:
                raise
            self.problems.append(error)

    def mapping(self, value, field_name, allowed):
        if not isinstance(value, dict):
            self.fail(field_name, f"must be a mapping, got {type_name(value)}")
        for key in value:
            if key not in allowed:
                close = [k for k in sorted(allowed) if k[:3] == str(key)[:3]]
                hint = f"did you mean {show(close[0])}? " if close else ""
                self.report(
                    f"{field_name}.{key}" if field_name else str(key),
                    "unknown key",
                    f"{hint}allowed keys: {', '.join(sorted(allowed))}",
                )
        return value

    def flag(self, value, field_name, fix=""):
        """A true/false field."""
        if not isinstance(value, bool):
            self.fail(field_name, f"must be true or false, got {show(value)}", fix)
        return value

    def string(self, value, field_name, pattern=None, fix=""):
        if not isinstance(value, str) or not value.strip():
            self.fail(field_name, f"must be a non-empty string, got {type_name(value)}", fix)
        if pattern and not pattern.match(value):
            self.fail(field_name, f"{show(value)} is not a valid name", fix)
        return value

    def name(self, value, field_name):
        return self.string(
            value,
            field_name,
            NAME_RE,
            "use lowercase letters, digits and '-', starting and ending with a "
            "letter or digit, at most 63 characters",
        )

    def path_value(self, value, field_name, relative_to: Path, source: Path | None):
        text = self.string(value, field_name)
        if "${SOURCE_DIR}" in text and source is None:
            self.fail(field_name, "${SOURCE_DIR} cannot be used here")
        text = text.replace("${STACK_DIR}", str(self.path.parent))
        if source is not None:
            text = text.replace("${SOURCE_DIR}", str(source))
        resolved = Path(text)
        if not resolved.is_absolute():
            resolved = relative_to / resolved
        resolved = Path(os.path.normpath(resolved))
        if len(str(resolved).encode()) > 4095 or any(len(p.encode()) > 255 for p in resolved.parts):
            self.fail(
                field_name, "path is too long (at most 255 bytes a name, 4095 in all)", "give a shorter path"
            )
        return resolved

    def files(self, raw, field_name, source: Path | None, what="files") -> tuple:
        """A file or a list of files, each relative to the stack file's folder (${STACK_DIR} and
        ${SOURCE_DIR} expand) and required to exist."""
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            self.fail(field_name, f"must be a list of {what}, got {type_name(raw)}")
        return tuple(
            self.existing(
                self.path_value(item, f"{field_name}[{i}]", self.path.parent, source), f"{field_name}[{i}]"
            )
            for i, item in enumerate(raw)
        )

    def existing(self, resolved: Path, field_name, kind="file"):
        if not self.check_files:
            return resolved
        try:
            ok = resolved.is_dir() if kind == "folder" else resolved.is_file()
        except OSError as exc:
            self.fail(field_name, f"cannot be checked: {exc.strerror}", "give a shorter, valid path")
        if not ok:
            self.report(
                field_name,
                f"{kind} {resolved} does not exist",
                f"correct the path (relative paths start at {self._base_hint(field_name)})",
            )
        return resolved

    def _base_hint(self, field_name):
        return "`source`" if ".build." in f".{field_name}" else "the stack file's folder"

    def argument(self, arg, field_name, source: Path | None) -> str:
        """One argument of a command the stack names (a run step's, the suite's): ${STACK_DIR} and
        ${SOURCE_DIR} are the folders, then ${VAR} and ${VAR:-default} from the environment."""
        text = str(arg).replace("${STACK_DIR}", str(self.path.parent))
        if "${SOURCE_DIR}" in text:
            if source is None:
                self.fail(
                    field_name,
                    "${SOURCE_DIR} cannot be used here",
                    "write the path relative to the stack file's folder",
                )
            text = text.replace("${SOURCE_DIR}", str(source))
        return expand_env(text, self.env)

    def args(self, value, field_name, env=None):
        """NAME: value pairs (build args, environments); values expand ${VAR} from env (default: the
        stack's environment)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(field_name, f"must be a mapping of NAME: value, got {type_name(value)}")
        result = {}
        for key, arg in value.items():
            if not isinstance(key, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                self.fail(
                    f"{field_name}.{key}",
                    "names here are letters, digits and '_'",
                    "rename it, e.g. MY_SETTING",
                )
            if isinstance(arg, (dict, list)) or arg is None:
                self.fail(
                    f"{field_name}.{key}",
                    f"must be a string or number, got {type_name(arg)}",
                    "write the value as one string (e.g. JSON text for structured data)",
                )
            text = str(arg).lower() if isinstance(arg, bool) else str(arg)
            result[key] = expand_env(text, self.env if env is None else env)
        return result
