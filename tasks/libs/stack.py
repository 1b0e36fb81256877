"""The stack file: load, validate up front, resolve paths. Pure apart from reading files.

A stack names its services, how each image is made (built or prebuilt), which
manifests deploy it and what it depends on. Every problem is reported as a
StackError naming the file, the field and the fix, before anything runs.
"""

import graphlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import images
from .errors import StackError

DEFAULT_STACK_FILE = "e2e.yaml"
MAX_STACK_BYTES = 1024 * 1024
DEFAULT_READY_TIMEOUT = 180
ENGINES = ("podman", "docker")
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
               "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}

TOP_KEYS = {"name", "project", "engine", "source", "namespace", "cluster", "services", "timeouts", "test",
            "registry"}
REGISTRY_KEYS = {"host", "tls_verify"}
TEST_KEYS = {"command", "workdir", "env", "timeout"}
DEFAULT_TEST_TIMEOUT = 3600
TIMEOUT_KEYS = {"build", "save", "load", "cluster", "apply"}
CLUSTER_KEYS = {"name", "config", "image"}
# kind warns above this: node names append "-control-plane" or "-external-load-balancer"
# (sigs.k8s.io/kind pkg/cluster/internal/create/create.go clusterNameMax).
CLUSTER_NAME_MAX = 50
SERVICE_KEYS = {"image", "build", "manifests", "depends_on", "ready", "load"}
BUILD_KEYS = {"containerfile", "context", "args", "coverage_args", "target", "memory"}
READY_KEYS = {"timeout"}


@dataclass(frozen=True)
class Build:
    containerfile: Path
    context: Path
    args: dict = field(default_factory=dict)
    coverage_args: dict = field(default_factory=dict)
    target: str = ""
    memory: int = 0  # bytes the build needs; 0 = not declared

    def build_args(self, coverage: bool = False) -> dict:
        return {**self.args, **(self.coverage_args if coverage else {})}


@dataclass(frozen=True)
class Service:
    name: str
    build: Build | None
    image: str  # prebuilt reference; "" for built services
    manifests: tuple
    depends_on: tuple
    ready_timeout: int
    load: bool  # prebuilt only: pull on the host and load into the cluster

    @property
    def built(self) -> bool:
        return self.build is not None


@dataclass(frozen=True)
class TestSpec:
    command: tuple  # argument list
    workdir: Path
    env: dict
    timeout: int


@dataclass(frozen=True)
class Stack:
    path: Path
    name: str
    project: str
    engine: str
    source: Path
    namespace: str
    cluster_name: str
    cluster_config: Path | None
    services: dict  # name -> Service, in file order
    timeouts: dict = field(default_factory=dict)  # step kind -> seconds, overriding the defaults
    test: TestSpec | None = None
    registry: str = ""  # registry mode: images are pushed to <registry>/<project>/<service>:<tag>
    registry_tls_verify: bool = True
    node_image: str = ""  # kind's --image for new clusters; "" lets kind choose its default

    @property
    def folder(self) -> Path:
        return self.path.parent

    def order(self) -> list:
        """Service names, every service after the ones it depends on (file order breaks ties)."""
        sorter = graphlib.TopologicalSorter({n: s.depends_on for n, s in self.services.items()})
        sorter.prepare()
        result = []
        position = {name: i for i, name in enumerate(self.services)}
        while sorter.is_active():
            ready = sorted(sorter.get_ready(), key=position.get)
            result.extend(ready)
            sorter.done(*ready)
        return result

    def closure(self, names) -> list:
        """The named services and everything they depend on, in dependency order."""
        wanted, todo = set(), list(names)
        while todo:
            name = todo.pop()
            if name not in wanted:
                wanted.add(name)
                todo.extend(self.services[name].depends_on)
        return [n for n in self.order() if n in wanted]

    def select(self, only) -> list:
        """Validate a user's --only list against the stack."""
        names = [n.strip() for n in only.split(",") if n.strip()] if isinstance(only, str) else list(only)
        unknown = [n for n in names if n not in self.services]
        if unknown:
            raise StackError(self.path, "services", f"no service named {', '.join(unknown)}",
                             f"choose from: {', '.join(self.services)}")
        return names


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last."""


MAX_ALIASES = 200


def _compose_node(loader, parent, index):
    # Refuse alias trees ("billion laughs"): a stack file has no use for many aliases.
    if loader.check_event(yaml.events.AliasEvent):
        loader.alias_count = getattr(loader, "alias_count", 0) + 1
        if loader.alias_count > MAX_ALIASES:
            raise yaml.composer.ComposerError(None, None, f"more than {MAX_ALIASES} aliases (*name)",
                                              loader.peek_event().start_mark)
    return yaml.SafeLoader.compose_node(loader, parent, index)


_UniqueKeyLoader.compose_node = _compose_node


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float, bool, type(None))):
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain value, not a list or mapping", key_node.start_mark)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_document(path: Path) -> dict:
    """Read a stack file into a mapping, or raise StackError saying why it is unreadable."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise StackError(path, "", "stack file not found",
                         "create it, or name another with E2E_STACK=FILE or invoke config e2e.stack")
    except OSError as exc:
        raise StackError(path, "", f"cannot read: {exc.strerror}")
    if not path.is_file():
        raise StackError(path, "", "is not a file", "name a YAML stack file")
    if size > MAX_STACK_BYTES:
        raise StackError(path, "", f"is {size} bytes; a stack file is at most {MAX_STACK_BYTES}",
                         "a stack file describes services; keep manifests in their own files")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StackError(path, "", f"is not UTF-8 (byte {exc.start})", "save the file as UTF-8")
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise StackError(path, "", f"invalid YAML: {where}{problem}",
                         "fix the YAML syntax (each key once; indent with spaces)")
    except RecursionError:
        raise StackError(path, "", "invalid YAML: nested too deeply")
    if document is None:
        raise StackError(path, "", "is empty", "describe at least `name:` and `services:`")
    if not isinstance(document, dict):
        raise StackError(path, "", f"top level is a {_type_name(document)}, not a mapping",
                         "start the file with keys such as `name:` and `services:`")
    return document


def _show(value, limit=80) -> str:
    """A value as an error message may quote it: repr, cut short (a YAML alias tree can be huge)."""
    text = repr(value) if not isinstance(value, (dict, list)) else f"<{_type_name(value)}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(value) -> str:
    return {dict: "mapping", list: "list", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def expand_env(text: str, env) -> str:
    """Expand ${VAR} and ${VAR:-default} from env; an unset ${VAR} without default is ''."""
    return _ENV_RE.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), text)


def positive_seconds(value) -> bool:
    """A usable timeout: a finite number above zero (YAML also reads .nan and .inf as numbers)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0


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


class _Checker:
    """Walks one stack document, raising StackError at the first problem."""

    def __init__(self, path: Path, env, check_files: bool):
        self.path, self.env, self.check_files = path, env, check_files

    def fail(self, field_name, problem, fix=""):
        raise StackError(self.path, field_name, problem, fix)

    def mapping(self, value, field_name, allowed):
        if not isinstance(value, dict):
            self.fail(field_name, f"must be a mapping, got {_type_name(value)}")
        for key in value:
            if key not in allowed:
                close = [k for k in sorted(allowed) if k[:3] == str(key)[:3]]
                hint = f"did you mean {_show(close[0])}? " if close else ""
                self.fail(f"{field_name}.{key}" if field_name else str(key), "unknown key",
                          f"{hint}allowed keys: {', '.join(sorted(allowed))}")
        return value

    def string(self, value, field_name, pattern=None, fix=""):
        if not isinstance(value, str) or not value.strip():
            self.fail(field_name, f"must be a non-empty string, got {_type_name(value)}", fix)
        if pattern and not pattern.match(value):
            self.fail(field_name, f"{_show(value)} is not a valid name", fix)
        return value

    def name(self, value, field_name):
        return self.string(value, field_name, NAME_RE,
                           "use lowercase letters, digits and '-', starting and ending with a "
                           "letter or digit, at most 63 characters")

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
            self.fail(field_name, "path is too long (at most 255 bytes a name, 4095 in all)",
                      "give a shorter path")
        return resolved

    def existing(self, resolved: Path, field_name, kind="file"):
        if not self.check_files:
            return resolved
        try:
            ok = resolved.is_dir() if kind == "folder" else resolved.is_file()
        except OSError as exc:
            self.fail(field_name, f"cannot be checked: {exc.strerror}", "give a shorter, valid path")
        if not ok:
            self.fail(field_name, f"{kind} {resolved} does not exist",
                      f"correct the path (relative paths start at {self._base_hint(field_name)})")
        return resolved

    def _base_hint(self, field_name):
        return "`source`" if ".build." in f".{field_name}" else "the stack file's folder"

    def args(self, value, field_name):
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(field_name, f"must be a mapping of NAME: value, got {_type_name(value)}")
        result = {}
        for key, arg in value.items():
            if not isinstance(key, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                self.fail(f"{field_name}.{key}", "build arg names are letters, digits and '_'")
            if isinstance(arg, (dict, list)) or arg is None:
                self.fail(f"{field_name}.{key}", f"must be a string or number, got {_type_name(arg)}")
            text = str(arg).lower() if isinstance(arg, bool) else str(arg)
            result[key] = expand_env(text, self.env)
        return result


def load_stack(path, env=None, check_files: bool = True) -> Stack:
    """Load and validate a stack file. check_files=False skips existence checks (task listing)."""
    env = os.environ if env is None else env
    path = Path(os.path.abspath(path))
    document = read_document(path)
    c = _Checker(path, env, check_files)
    c.mapping(document, "", TOP_KEYS)
    for required in ("name", "services"):
        if required not in document:
            c.fail(required, "is required", f"add `{required}:` at the top level")
    name = c.name(document["name"], "name")
    project = document.get("project", name)
    c.string(project, "project")
    try:
        images.parse(f"{images.LOCAL_REGISTRY}/{project}/x")
    except images.BadReference:
        c.fail("project", f"{_show(project)} cannot be part of an image name",
               "use lowercase letters, digits and separators ('.', '_', '-', '/')")
    engine = document.get("engine", "podman")
    if engine not in ENGINES:
        c.fail("engine", f"{_show(engine)} is not supported", f"use one of: {', '.join(ENGINES)}")
    source_text = env.get("E2E_SOURCE") or document.get("source", ".")
    source_field = "source (from E2E_SOURCE)" if env.get("E2E_SOURCE") else "source"
    source = c.path_value(source_text, source_field, path.parent, None)
    try:
        source_missing = check_files and not source.is_dir()
    except OSError as exc:
        c.fail(source_field, f"cannot be checked: {exc.strerror}", "give a shorter, valid path")
    if source_missing:
        c.fail(source_field, f"folder {source} does not exist",
               "check the sources out there, or point E2E_SOURCE at them")
    namespace = c.name(document.get("namespace", name), "namespace")

    cluster = c.mapping(document.get("cluster", {}) or {}, "cluster", CLUSTER_KEYS)
    cluster_name = c.name(cluster.get("name", f"{name}-e2e"), "cluster.name")
    if len(cluster_name) > CLUSTER_NAME_MAX:
        c.fail("cluster.name", f"{_show(cluster_name)} is {len(cluster_name)} characters; kind's node "
               f"names add up to 23 more, and kind allows at most {CLUSTER_NAME_MAX}",
               f"set cluster.name to at most {CLUSTER_NAME_MAX} characters")
    node_image = _node_image(c, env, cluster)
    cluster_config = None
    if cluster.get("config") is not None:
        cluster_config = c.existing(
            c.path_value(cluster["config"], "cluster.config", path.parent, source), "cluster.config")

    timeouts = c.mapping(document.get("timeouts", {}) or {}, "timeouts", TIMEOUT_KEYS)
    for key, value in timeouts.items():
        if not positive_seconds(value):
            c.fail(f"timeouts.{key}", f"must be a positive number of seconds, got {_show(value)}")

    test = _test(c, document["test"], source) if document.get("test") is not None else None
    registry, tls_verify = _registry(c, document.get("registry"))

    raw_services = document["services"]
    if not isinstance(raw_services, dict) or not raw_services:
        c.fail("services", "must be a mapping of service name to service, with at least one",
               "add e.g. `services: {api: {build: {containerfile: Containerfile}}}`")
    services = {}
    for service_name, raw in raw_services.items():
        where = f"services.{service_name}"
        if not isinstance(service_name, str):
            c.fail(where, "a service name must be a string")
        c.name(service_name, where)
        services[service_name] = _service(c, service_name, raw, where, project, source)

    for service in services.values():
        for dep in service.depends_on:
            if dep not in services:
                c.fail(f"services.{service.name}.depends_on", f"unknown service {_show(dep)}",
                       f"depend on one of: {', '.join(n for n in services if n != service.name)}")
            if dep == service.name:
                c.fail(f"services.{service.name}.depends_on", "a service cannot depend on itself")
    try:
        graphlib.TopologicalSorter({n: s.depends_on for n, s in services.items()}).prepare()
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        c.fail(f"services.{cycle[0]}.depends_on", "dependency cycle: " + " -> ".join(cycle),
               "remove one of these depends_on entries")
    return Stack(path, name, project, engine, source, namespace, cluster_name, cluster_config, services,
                 dict(timeouts), test, registry, tls_verify, node_image)


def _node_image(c: _Checker, env, cluster) -> str:
    """The kind node image: KINDLING_NODE_IMAGE, else cluster.image, else kind's default."""
    from_env = env.get("KINDLING_NODE_IMAGE")
    field_name = "cluster.image (from KINDLING_NODE_IMAGE)" if from_env else "cluster.image"
    value = from_env or cluster.get("image")
    if value is None:
        return ""
    image = c.string(value, field_name)
    try:
        images.parse(image)
    except images.BadReference as exc:
        c.fail(field_name, str(exc), "write a node image reference like kindest/node:v1.36.1")
    return image


def _service(c: _Checker, name, raw, where, project, source) -> Service:
    if raw is None:
        raw = {}
    c.mapping(raw, where, SERVICE_KEYS)
    has_build, has_image = raw.get("build") is not None, raw.get("image") is not None
    if has_build == has_image:
        c.fail(where, "needs exactly one of `build` (kindling builds it) or `image` (prebuilt)",
               "add `build: {containerfile: ..., context: ...}` or `image: registry/name:tag`")
    build, image = None, ""
    if has_build:
        build = _build(c, raw["build"], f"{where}.build", source)
        try:
            images.parse(images.repository(project, name))
        except images.BadReference:
            c.fail(where, f"{_show(name)} cannot be used in an image name", "rename the service")
    else:
        image = c.string(raw["image"], f"{where}.image")
        try:
            images.parse(image)
        except images.BadReference as exc:
            c.fail(f"{where}.image", str(exc), "write a reference like registry/name:tag")
    manifests_raw = raw.get("manifests", [])
    if isinstance(manifests_raw, str):
        manifests_raw = [manifests_raw]
    if not isinstance(manifests_raw, list):
        c.fail(f"{where}.manifests", f"must be a list of files, got {_type_name(manifests_raw)}")
    manifests = tuple(
        c.existing(c.path_value(m, f"{where}.manifests[{i}]", c.path.parent, source),
                   f"{where}.manifests[{i}]")
        for i, m in enumerate(manifests_raw))
    depends = raw.get("depends_on", [])
    if isinstance(depends, str):
        depends = [depends]
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        c.fail(f"{where}.depends_on", "must be a list of service names")
    if len(set(depends)) != len(depends):
        c.fail(f"{where}.depends_on", "lists a service twice")
    ready = c.mapping(raw.get("ready", {}) or {}, f"{where}.ready", READY_KEYS)
    timeout = ready.get("timeout", DEFAULT_READY_TIMEOUT)
    if not positive_seconds(timeout):
        c.fail(f"{where}.ready.timeout", f"must be a positive number of seconds, got {_show(timeout)}")
    load = raw.get("load", False)
    if not isinstance(load, bool):
        c.fail(f"{where}.load", "must be true or false")
    if load and has_build:
        c.fail(f"{where}.load", "only applies to prebuilt `image` services (built ones are always loaded)")
    return Service(name, build, image, manifests, tuple(depends), int(timeout), load)


def _registry(c: _Checker, raw):
    """`registry: host[:port]` or `{host: ..., tls_verify: false}`; IMAGE_REGISTRY overrides the host."""
    if isinstance(raw, str):
        raw = {"host": raw}
    raw = c.mapping(raw or {}, "registry", REGISTRY_KEYS)
    host = c.env.get("IMAGE_REGISTRY") or raw.get("host") or ""
    field_name = "registry (from IMAGE_REGISTRY)" if c.env.get("IMAGE_REGISTRY") else "registry.host"
    if host:
        try:
            parsed = images.parse(f"{host}/x/y")
        except images.BadReference:
            parsed = None
        if parsed is None or parsed.registry != host:
            c.fail(field_name, f"{_show(host)} is not a registry host", "write host[:port], e.g. localhost:5001")
        if host == images.LOCAL_REGISTRY:
            c.fail(field_name, "`localhost` without a port is podman's local image store, not a registry",
                   "give the registry's port, e.g. localhost:5001")
    tls_verify = raw.get("tls_verify", True)
    env_verify = c.env.get("IMAGE_REGISTRY_TLS_VERIFY")
    if env_verify:
        tls_verify = env_verify.strip().lower() not in ("0", "false", "no", "off")
    if not isinstance(tls_verify, bool):
        c.fail("registry.tls_verify", "must be true or false")
    return host, tls_verify


def _test(c: _Checker, raw, source) -> TestSpec:
    c.mapping(raw, "test", TEST_KEYS)
    command = raw.get("command")
    if isinstance(command, str):
        c.fail("test.command", "must be an argument list, not a shell string",
               "write e.g. [ginkgo, -v, ./test/e2e] (run a shell explicitly if you need one: [sh, -c, '...'])")
    if not isinstance(command, list) or not command or not all(isinstance(a, (str, int, float)) for a in command):
        c.fail("test.command", "must be a non-empty list of arguments", "write e.g. [go, test, ./test/e2e/...]")
    workdir = c.existing(c.path_value(raw.get("workdir", "."), "test.workdir", source, source), "test.workdir",
                         "folder")
    timeout = raw.get("timeout", DEFAULT_TEST_TIMEOUT)
    if not positive_seconds(timeout):
        c.fail("test.timeout", f"must be a positive number of seconds, got {_show(timeout)}")
    env = c.args(raw.get("env"), "test.env")
    return TestSpec(tuple(expand_env(str(a), c.env) for a in command), workdir, env, int(timeout))


def _build(c: _Checker, raw, where, source) -> Build:
    if isinstance(raw, str):
        raw = {"containerfile": raw}
    c.mapping(raw, where, BUILD_KEYS)
    # Values first, files last: the error names the first problem a reader would fix.
    target = raw.get("target", "") or ""
    if target:
        c.string(target, f"{where}.target")
    memory = 0
    if raw.get("memory") is not None:
        try:
            memory = parse_size(raw["memory"])
        except ValueError:
            c.fail(f"{where}.memory", f"{_show(raw['memory'])} is not a size", "write e.g. 512MiB or 3GiB")
    args = c.args(raw.get("args"), f"{where}.args")
    coverage_args = c.args(raw.get("coverage_args"), f"{where}.coverage_args")
    containerfile = c.path_value(raw.get("containerfile", "Containerfile"), f"{where}.containerfile", source, source)
    context = c.path_value(raw.get("context", "."), f"{where}.context", source, source)
    c.existing(containerfile, f"{where}.containerfile")
    c.existing(context, f"{where}.context", "folder")
    return Build(containerfile, context, args, coverage_args, target, memory)


def stack_path(config_value=None, env=None, root=None) -> Path:
    """Which stack file to use: E2E_STACK (relative to the current folder), then invoke
    config e2e.stack, then e2e.yaml (both relative to the project root)."""
    env = os.environ if env is None else env
    if env.get("E2E_STACK"):
        return Path(os.path.abspath(env["E2E_STACK"]))
    chosen = Path(config_value or DEFAULT_STACK_FILE)
    return chosen if chosen.is_absolute() else Path(root or Path.cwd()) / chosen
