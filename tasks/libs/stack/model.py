"""The stack file: load, validate up front, resolve paths. Pure apart from reading files.

A stack names its services, how each image is made (built or prebuilt), which
manifests deploy it and what it depends on. Every problem is reported as a
StackError naming the file, the field and the fix, before anything runs.
"""

import graphlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import deploysources, imagerefs
from ..adapters.engine import ENGINES as ENGINE_CLASSES
from ..build import caches as buildcaches
from ..errors import StackError
from . import baseimages, buildmounts, buildspec, coveragespec, profiles, runspec
from .buildspec import Build
from .stackfile import Checker, positive_seconds, read_document, show
from .stacksections import TestSpec, parse_registry, parse_test

DEFAULT_STACK_FILE = "e2e.yaml"
DEFAULT_READY_TIMEOUT = 180
ENGINES = tuple(ENGINE_CLASSES)  # adapters/engine/: one module per engine

TOP_KEYS = {
    "name",
    "project",
    "engine",
    "source",
    "namespace",
    "cluster",
    "services",
    "timeouts",
    "test",
    "images",
    "registry",
    "base_images",
    profiles.PROFILE_KEY,
}
TIMEOUT_KEYS = {"build", "save", "load", "cluster", "apply"}
CLUSTER_KEYS = {"name", "config", "image"}
SOURCE_KEYS = {"path", "revision"}
REVISION_RE = re.compile(r"^[0-9a-fA-F]{7,40}$")  # a commit id, full or abbreviated
# kind warns above this: node names append "-control-plane" or "-external-load-balancer"
# (sigs.k8s.io/kind pkg/cluster/internal/create/create.go clusterNameMax).
CLUSTER_NAME_MAX = 50
SERVICE_KEYS = {"image", "build", "manifests", "depends_on", "ready", "load", "run", "coverage"} | set(
    deploysources.BACKENDS
)
IMAGES_KEYS = {"name"}
READY_KEYS = {"timeout"}


@dataclass(frozen=True)
class Service:
    name: str
    build: Build | None
    image: str  # prebuilt reference; "" for built services
    manifests: tuple
    depends_on: tuple
    ready_timeout: int
    load: bool  # prebuilt only: pull on the host and load into the cluster
    # Objects a tool renders besides the manifests (a deploysources backend's spec: helm, kustomize).
    deploy_source: deploysources.helm.Helm | deploysources.kustomize.Kustomize | None = None
    run: runspec.RunSpec | None = None  # a command or Job run once deployed and ready (phases/run.py)
    coverage: coveragespec.CoverageSpec = coveragespec.CoverageSpec()  # what coverage mode adds to its pods

    @property
    def built(self) -> bool:
        return self.build is not None


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
    source_revision: str = ""  # the source's commit the stack was verified against; "" when not declared
    image_name: str = imagerefs.DEFAULT_NAME_TEMPLATE  # `imagerefs.name`: how built images are named
    base_images: tuple = ()  # (repository, replacement) for every build's FROMs (baseimages.py)
    profiles: tuple = ()  # the names of the stack's profiles laid over it (profiles.py)

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
            raise StackError(
                self.path,
                "services",
                f"no service named {', '.join(unknown)}",
                f"choose from: {', '.join(self.services)}",
            )
        return names


def load_stack(
    path,
    *,
    env,
    check_files: bool = True,
    problems: list | None = None,
    profile_names: tuple = (),
    profile_origin: str = "E2E_PROFILE",
) -> Stack:
    """Load and validate a stack file. check_files=False skips existence checks (task listing).
    profile_names: the stack's profiles to lay over it, in order (profile_origin says who chose them).

    problems: a list to collect every StackError in (stack.check) instead of raising the first; the
    Stack returned then holds the services that could be read. A broken header still raises.
    """
    path = Path(os.path.abspath(path))
    document = read_document(path)
    c = Checker(path, env, check_files, problems)
    c.mapping(document, "", TOP_KEYS)
    document = profiles.apply(c, document, tuple(profile_names), profile_origin, TOP_KEYS)
    for required in ("name", "services"):
        if required not in document:
            c.fail(required, "is required", f"add `{required}:` at the top level")
    name = c.name(document["name"], "name")
    project = document.get("project", name)
    c.string(project, "project")
    try:
        imagerefs.parse(f"{imagerefs.LOCAL_REGISTRY}/{project}/x")
    except imagerefs.BadReference:
        c.fail(
            "project",
            f"{show(project)} cannot be part of an image name",
            "use lowercase letters, digits and separators ('.', '_', '-', '/')",
        )
    image_name = _image_name(c, document.get("images"), project)
    engine = document.get("engine", "podman")
    if engine not in ENGINES:
        c.fail("engine", f"{show(engine)} is not supported", f"use one of: {', '.join(ENGINES)}")
    source_text, revision = _source(c, document.get("source", "."))
    source_text = env.get("E2E_SOURCE") or source_text
    source_field = "source (from E2E_SOURCE)" if env.get("E2E_SOURCE") else "source"
    source = c.path_value(source_text, source_field, path.parent, None)
    try:
        source_missing = check_files and not source.is_dir()
    except OSError as exc:
        c.fail(source_field, f"cannot be checked: {exc.strerror}", "give a shorter, valid path")
    if source_missing:
        c.fail(
            source_field,
            f"folder {source} does not exist",
            "check the sources out there, or point E2E_SOURCE at them",
        )
    namespace = c.name(document.get("namespace", name), "namespace")

    cluster = c.mapping(document.get("cluster", {}) or {}, "cluster", CLUSTER_KEYS)
    cluster_name = c.name(cluster.get("name", f"{name}-e2e"), "cluster.name")
    if len(cluster_name) > CLUSTER_NAME_MAX:
        c.fail(
            "cluster.name",
            f"{show(cluster_name)} is {len(cluster_name)} characters; kind's node "
            f"names add up to 23 more, and kind allows at most {CLUSTER_NAME_MAX}",
            f"set cluster.name to at most {CLUSTER_NAME_MAX} characters",
        )
    node_image = _node_image(c, env, cluster)
    cluster_config = None
    if cluster.get("config") is not None:
        cluster_config = c.existing(
            c.path_value(cluster["config"], "cluster.config", path.parent, source), "cluster.config"
        )

    timeouts = c.mapping(document.get("timeouts", {}) or {}, "timeouts", TIMEOUT_KEYS)
    for key, value in timeouts.items():
        if not positive_seconds(value):
            c.report(f"timeouts.{key}", f"must be a positive number of seconds, got {show(value)}")

    test, registry, tls_verify = None, "", True
    with c.section():
        test = parse_test(c, document["test"], source) if document.get("test") is not None else None
    with c.section():
        registry, tls_verify = parse_registry(c, document.get("registry"))
    base_images = ()
    with c.section():
        base_images = baseimages.parse(c, document.get("base_images"), "base_images")

    raw_services = document["services"]
    if not isinstance(raw_services, dict) or not raw_services:
        c.fail(
            "services",
            "must be a mapping of service name to service, with at least one",
            "add e.g. `services: {api: {build: {containerfile: Containerfile}}}`",
        )
    services = {}
    for service_name, raw in raw_services.items():
        where = f"services.{service_name}"
        with c.section():  # collecting, each service is read on its own
            if not isinstance(service_name, str):
                c.fail(where, "a service name must be a string")
            c.name(service_name, where)
            services[service_name] = _service(c, service_name, raw, where, project, source, image_name)

    for service in services.values():
        for dep in service.depends_on:
            if dep not in raw_services:
                c.report(
                    f"services.{service.name}.depends_on",
                    f"unknown service {show(dep)}",
                    f"depend on one of: {', '.join(n for n in raw_services if n != service.name)}",
                )
            if dep == service.name:
                c.report(f"services.{service.name}.depends_on", "a service cannot depend on itself")
    try:
        graphlib.TopologicalSorter({n: s.depends_on for n, s in services.items()}).prepare()
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        c.report(
            f"services.{cycle[0]}.depends_on",
            "dependency cycle: " + " -> ".join(cycle),
            "remove one of these depends_on entries",
        )
    with c.section():
        buildcaches.require_mounting_engine(c, engine, services)
        buildmounts.require_mounting_engine(c, engine, services)
    return Stack(
        path,
        name,
        project,
        engine,
        source,
        namespace,
        cluster_name,
        cluster_config,
        services,
        dict(timeouts),
        test,
        registry,
        tls_verify,
        node_image,
        source_revision=revision,
        image_name=image_name,
        base_images=base_images,
        profiles=tuple(profile_names),
    )


def _image_name(c: Checker, raw, project) -> str:
    """`images: {name: TEMPLATE}`: how built images are named, from {registry}, {project}, {service}
    (e.g. "{registry}/{service}" for CI artifacts named localhost/<service>:<tag>)."""
    if raw is None:
        return imagerefs.DEFAULT_NAME_TEMPLATE
    c.mapping(raw, "images", IMAGES_KEYS)
    template = raw.get("name", imagerefs.DEFAULT_NAME_TEMPLATE)
    problem, fix = imagerefs.name_template_problem(template, project)
    if problem:
        c.fail("images.name", problem, fix)
    return template


def _source(c: Checker, raw) -> tuple:
    """`source: PATH`, or `source: {path: PATH, revision: COMMIT}`: the commit of the source the stack
    was verified against (stack.check lists what changed since). (path text, revision or "")."""
    if not isinstance(raw, dict):
        return raw, ""
    c.mapping(raw, "source", SOURCE_KEYS)
    revision = raw.get("revision", "")
    if revision != "" and (not isinstance(revision, str) or not REVISION_RE.match(revision)):
        c.fail(
            "source.revision",
            f"{show(revision)} is not a commit id",
            "write the full commit id the stack was verified against (git rev-parse HEAD in the checkout)",
        )
    return raw.get("path", "."), revision.lower()


def _node_image(c: Checker, env, cluster) -> str:
    """The kind node image: KINDLING_NODE_IMAGE, else cluster.image, else kind's default."""
    from_env = env.get("KINDLING_NODE_IMAGE")
    field_name = "cluster.image (from KINDLING_NODE_IMAGE)" if from_env else "cluster.image"
    value = from_env or cluster.get("image")
    if value is None:
        return ""
    image = c.string(value, field_name)
    try:
        imagerefs.parse(image)
    except imagerefs.BadReference as exc:
        c.fail(field_name, str(exc), "write a node image reference like kindest/node:v1.36.1")
    return image


def _service(
    c: Checker, name, raw, where, project, source, image_name=imagerefs.DEFAULT_NAME_TEMPLATE
) -> Service:
    if raw is None:
        raw = {}
    c.mapping(raw, where, SERVICE_KEYS)
    has_build, has_image = raw.get("build") is not None, raw.get("image") is not None
    has_run = raw.get("run") is not None
    if has_build and has_image or not (has_build or has_image or has_run):
        c.fail(
            where,
            "needs exactly one of `build` (kindling builds it) or `image` (prebuilt)"
            + (" (or neither, with `run`)" if not has_build else ""),
            "add `build: {containerfile: ..., context: ...}` or `image: registry/name:tag`",
        )
    build, image = None, ""
    if has_build:
        build = buildspec.parse(c, raw["build"], f"{where}.build", source)
        try:
            imagerefs.parse(imagerefs.repository(project, name, template=image_name))
        except imagerefs.BadReference:
            c.fail(where, f"{show(name)} cannot be used in an image name", "rename the service")
    elif has_image:
        image = c.string(raw["image"], f"{where}.image")
        try:
            imagerefs.parse(image)
        except imagerefs.BadReference as exc:
            c.fail(f"{where}.image", str(exc), "write a reference like registry/name:tag")
    manifests = c.files(raw.get("manifests", []), f"{where}.manifests", source)
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
        c.fail(f"{where}.ready.timeout", f"must be a positive number of seconds, got {show(timeout)}")
    load = raw.get("load", False)
    if not isinstance(load, bool):
        c.fail(f"{where}.load", "must be true or false")
    if load and not has_image:
        c.fail(
            f"{where}.load",
            "only applies to prebuilt `image` services (built ones are always loaded)",
            "remove `load`",
        )
    deploy_source = deploysources.parse(c, raw, where, name, source)
    run = runspec.parse(c, raw["run"], f"{where}.run", source) if has_run else None
    coverage = coveragespec.parse(
        c, raw.get("coverage"), f"{where}.coverage", bool(build and build.coverage_args)
    )
    return Service(
        name, build, image, manifests, tuple(depends), int(timeout), load, deploy_source, run, coverage
    )


def stack_path(config_value, env, root=None) -> Path:
    """Which stack file to use: E2E_STACK (relative to the current folder), then invoke
    config e2e.stack, then e2e.yaml (both relative to the project root)."""
    if env.get("E2E_STACK"):
        return Path(os.path.abspath(env["E2E_STACK"]))
    chosen = Path(config_value or DEFAULT_STACK_FILE)
    return chosen if chosen.is_absolute() else Path(root or Path.cwd()) / chosen
