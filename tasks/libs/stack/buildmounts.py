"""Host folders a build reads: a stack's `build.mounts`, e.g. the host's Go module cache mounted
read-only at /go/pkg/mod, so `go build` finds the modules without downloading them.

`source` is one path or a list tried in order, the first that exists mounted: Kubernaut's harness
mounts $GOMODCACHE, else $GOPATH/pkg/mod, else ~/go/pkg/mod (e2e_images.go goModCacheVolumeArgs).
A candidate naming an unset variable is passed over. `optional: true` builds without the mount when
none exists, as that harness does; otherwise that is an error.

Podman mounts each into every RUN step of the build, `podman build --volume SOURCE:TARGET:ro`
(podman-build(1), --volume: "[rw|ro]"; the Containerfile is unchanged). Like build caches, mounts
are no part of an image's inputs digest (cache.py): a read-only module cache changes how fast a
build is, not what it produces, when go.sum pins the modules (go verifies each one against it).
"""

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..adapters.engine import engine_class
from ..build import caches as buildcaches
from .stackfile import Checker, expand_env, show, type_name, unset_variables

MOUNT_KEYS = {"source", "target", "readonly", "optional"}
SYSTEM_PATHS = ("/proc", "/sys", "/dev")
READONLY_FIX = "write `readonly: true` (the default)"


@dataclass(frozen=True)
class Mount:
    source: Path | None  # on the host, absolute; None: optional, and no candidate exists
    target: str  # where every RUN step of the build sees it
    readonly: bool = True
    tried: tuple = ()  # the candidates passed over, each "path (why)", for the note of a missing one

    def volume(self) -> tuple:
        """(host, path, options) for Engine.build(mounts=...)."""
        return (str(self.source), self.target, "ro" if self.readonly else "rw")


def parse(c: Checker, raw, where: str, source: Path, caches=()) -> tuple:
    """`mounts: [{source: PATH or [PATH, ...], target: /path/in/build, readonly: true, optional:
    false}]`. source resolves like the build's other paths (relative to `source`; ${STACK_DIR},
    ${SOURCE_DIR} and ${VAR} expand)."""
    if raw is None:
        return ()
    example = "write e.g. `mounts: [{source: '${GOMODCACHE}', target: /go/pkg/mod, readonly: true}]`"
    if not isinstance(raw, list):
        c.fail(where, f"must be a list of {{source, target}} mappings, got {type_name(raw)}", example)
    mounts = []
    for i, item in enumerate(raw):
        field_name = f"{where}[{i}]"
        if not isinstance(item, dict):
            c.fail(field_name, f"must be a mapping with source and target, got {type_name(item)}", example)
        c.mapping(item, field_name, MOUNT_KEYS)
        for key in ("source", "target"):
            if item.get(key) is None:
                c.fail(f"{field_name}.{key}", "is required", example)
        optional = c.flag(item.get("optional", False), f"{field_name}.optional", "write `optional: true`")
        found, tried = _sources(c, item["source"], f"{field_name}.source", source, optional)
        mount = Mount(
            found,
            _target(c, item["target"], f"{field_name}.target"),
            c.flag(
                item.get("readonly", True), f"{field_name}.readonly", "write `readonly: true` (the default)"
            ),
            tried,
        )
        for other in mounts:
            if _overlap(mount.target, other.target):
                c.fail(
                    f"{field_name}.target",
                    f"{mount.target} and {other.target} are the same or inside one another",
                    "mount each folder at a path of its own",
                )
        for cache in caches:
            if _overlap(mount.target, cache.path):
                c.fail(
                    f"{field_name}.target",
                    f"{mount.target} and build cache {show(cache.name)}'s "
                    f"{cache.path} are the same or inside one another",
                    "mount it at another path",
                )
        mounts.append(mount)
    return tuple(mounts)


def _sources(c: Checker, value, field_name: str, source: Path, optional: bool) -> tuple:
    """(the first candidate that exists, or None when the mount is optional; the candidates passed
    over, each "path (why)")."""
    example = "write the host folder, e.g. '${GOMODCACHE}', or a list tried in order"
    candidates = value if isinstance(value, list) and value else [value]
    for i, candidate in enumerate(candidates):
        if not isinstance(candidate, str):
            where = f"{field_name}[{i}]" if isinstance(value, list) else field_name
            c.fail(where, f"must be a path on the host, got {type_name(candidate)}", example)
    if len(candidates) == 1 and not optional:
        return _source(c, candidates[0], field_name, source), ()
    tried = []
    for i, candidate in enumerate(candidates):
        where = f"{field_name}[{i}]" if isinstance(value, list) else field_name
        unset = [n for n in unset_variables(candidate, c.env) if n not in ("STACK_DIR", "SOURCE_DIR")]
        if unset:
            tried.append(f"{candidate} (${{{unset[0]}}} is not set)")
            continue
        path = _source(c, candidate, where, source, must_exist=False)
        if not c.check_files or path.exists():
            return path, tuple(tried)
        tried.append(f"{path} (does not exist)")
    if not optional:
        c.fail(
            field_name,
            f"none of the folders exists: {'; '.join(tried)}",
            "create one of them, correct the paths, or add `optional: true` to build without the mount",
        )
    return None, tuple(tried)


def _source(c: Checker, value: str, field_name: str, source: Path, must_exist=True) -> Path:
    # The folder variables first: expand_env would read them as (unset) environment variables.
    text = value.replace("${STACK_DIR}", str(c.path.parent)).replace("${SOURCE_DIR}", str(source))
    expanded = expand_env(text, c.env)
    if not expanded.strip():
        c.fail(
            field_name,
            f"{show(value)} is empty once the environment is expanded",
            "set the variable it names (e.g. export GOMODCACHE=$(go env GOMODCACHE)), or write the path",
        )
    path = c.path_value(expanded, field_name, source, source)
    if ":" in str(path) or "," in str(path):
        c.fail(
            field_name,
            f"{path} holds ':' or ',', which podman's --volume syntax reserves",
            "mount a folder whose path has neither",
        )
    if not must_exist:
        return path
    return c.existing(path, field_name, "folder" if not path.is_file() else "file")


def _target(c: Checker, value, field_name: str) -> str:
    fix = "write the absolute path where the build reads it, e.g. /go/pkg/mod"
    path = buildcaches.container_path(c, value, field_name, fix, "a mount's target is absolute")
    if path == "/" or any(path == system or _overlap(path, system) for system in SYSTEM_PATHS):
        c.fail(field_name, f"{path} is the root or a system folder of the build container", fix)
    return path


def _overlap(a: str, b: str) -> bool:
    a, b = PurePosixPath(a), PurePosixPath(b)
    return a == b or a in b.parents or b in a.parents


def require_mounting_engine(c: Checker, engine: str, services: dict) -> None:
    """`docker build` has no --volume; BuildKit's bind mounts need a `RUN --mount=type=bind` line in
    the Containerfile, which kindling does not write."""
    if engine_class(engine).mounts_in_build:
        return
    for service in services.values():
        if service.build is not None and getattr(service.build, "mounts", ()):
            c.fail(
                f"services.{service.name}.build.mounts",
                f"needs engine: podman; `{engine} build` cannot mount a host folder into every RUN step",
                "use engine: podman, or remove `mounts` (with docker, write "
                "`RUN --mount=type=bind,source=...,target=PATH` in the Containerfile instead)",
            )


def volumes(build) -> list:
    """(host, path, options) of the build's mounts, for Engine.build(mounts=...); an optional mount
    none of whose folders exists is left out."""
    return [mount.volume() for mount in getattr(build, "mounts", ()) if mount.source is not None]


def skipped(build) -> list:
    """What to tell of the build's optional mounts that are left out: "TARGET: none of ... exists"."""
    return [
        f"build mount {mount.target} left out (optional): {'; '.join(mount.tried)}"
        for mount in getattr(build, "mounts", ())
        if mount.source is None
    ]
