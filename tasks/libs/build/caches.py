"""Compiler caches that image builds share: a stack's `build.caches`, their host folders, sizes,
limits and clearing.

A compiler's own cache (Go's GOCACHE, ccache, pip's and npm's) is content-addressed: an entry is
found by a hash of its inputs, so sharing it between builds changes how long a build takes, never
what it produces. That is why caches are no part of an image's inputs digest (cache.py). Podman
mounts a host folder into every RUN step of a build (`podman build --volume HOST:PATH`) with the
Containerfile unchanged, so after a one-line change the `COPY . .` layer is new but the compiler
finds everything it compiled before.

Each cache is one host folder per stack and cache name, `<state home>/caches/<stack>/<name>`,
shared by every service of the stack that names it. A build holds a shared lock on the cache
(a `<name>.lock` file beside the folder) until its process ends; clearing or trimming takes the
lock exclusively, so a cache is never emptied under a build that uses it (cachelocks.py).
"""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..adapters.engine import engine_class
from ..errors import KindlingError, StackError
from ..stack.stackfile import Checker, parse_size, show, type_name
from . import cachelocks

# Preset -> (cache name, path inside the build), each where the tool looks when nothing is set,
# so the Containerfile needs no change:
PRESETS = {
    # GOCACHE defaults to $HOME/.cache/go-build; the module cache to $GOPATH/pkg/mod, and the
    # official golang images set GOPATH=/go.
    "go": (("go-build", "/root/.cache/go-build"), ("go-mod", "/go/pkg/mod")),
    "pip": (("pip", "/root/.cache/pip"),),  # pip's cache dir: $XDG_CACHE_HOME/pip, i.e. ~/.cache/pip
    "npm": (("npm", "/root/.npm"),),  # npm's `cache` setting defaults to ~/.npm
    # ccache 3 uses ~/.ccache; ccache 4 uses ~/.ccache too whenever that folder exists (else
    # ~/.cache/ccache), and the mount makes it exist. /ccache would need CCACHE_DIR set.
    "ccache": (("ccache", "/root/.ccache"),),
}
# Caches whose every file is a self-contained entry the tool recomputes when it is missing: the
# oldest files can be dropped one by one. Go's module cache is not one of them (an extracted
# module with a file missing breaks builds), nor is a cache kindling knows nothing about.
TRIMMABLE = {"go-build", "pip", "npm", "ccache"}
DEFAULT_LIMIT = 10 * 1024**3
LIMIT_VARIABLE = "KINDLING_CACHE_LIMIT"
TRIM_TO = 0.8  # a trimmed cache is left at this share of its limit, so the next build does not trim again
SYSTEM_PATHS = ("/proc", "/sys", "/dev")


@dataclass(frozen=True)
class Cache:
    name: str  # the host folder's name: <state home>/caches/<stack>/<name>
    path: str  # where every RUN step of the build sees it

    @property
    def trimmable(self) -> bool:
        return self.name in TRIMMABLE


# ---- the stack file -----------------------------------------------------------------------------


def parse(c: Checker, raw, where: str) -> tuple:
    """`caches:` as a mapping {name: /path}, or a list of preset names and {name: /path} mappings."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    example = "write e.g. `caches: [go]` or `caches: {go-build: /root/.cache/go-build}`"
    if isinstance(raw, dict):
        entries = [(f"{where}.{name}", name, path) for name, path in raw.items()]
    elif isinstance(raw, list):
        entries = []
        for i, item in enumerate(raw):
            field_name = f"{where}[{i}]"
            if isinstance(item, str):
                if item not in PRESETS:
                    c.fail(
                        field_name,
                        f"unknown preset {show(item)}",
                        f"use one of: {', '.join(sorted(PRESETS))}, or name a cache and its path: "
                        "{my-cache: /path/in/the/build}",
                    )
                entries += [(field_name, name, path) for name, path in PRESETS[item]]
            elif isinstance(item, dict) and item:
                entries += [(f"{field_name}.{name}", name, path) for name, path in item.items()]
            else:
                c.fail(
                    field_name,
                    f"must be a preset name or a {{name: /path}} mapping, got {type_name(item)}",
                    example,
                )
    else:
        c.fail(where, f"must be a list of presets or a mapping of name: path, got {type_name(raw)}", example)
    caches = []
    for field_name, name, path in entries:
        if not isinstance(name, str):
            c.fail(field_name, f"cache name {show(name)} must be a string")
        c.name(name, field_name)
        path = _build_path(c, path, field_name)
        for other in caches:
            if other.name == name:
                c.fail(field_name, f"cache {show(name)} is named twice", "give each cache its own name")
            if other.path == path:
                c.fail(
                    field_name,
                    f"{path} is also where cache {show(other.name)} is mounted",
                    "mount each cache at a path of its own",
                )
            if _inside(path, other.path) or _inside(other.path, path):
                c.fail(
                    field_name,
                    f"{path} and cache {show(other.name)}'s {other.path} are inside one another",
                    "mount caches at paths that do not contain each other",
                )
        caches.append(Cache(name, path))
    return tuple(caches)


def container_path(c: Checker, value, field_name, fix: str, absolute_why: str) -> str:
    """A path inside the build container that podman's --volume can take: absolute, normalised,
    without ':' or ','."""
    if not isinstance(value, str) or not value.strip():
        c.fail(field_name, f"must be a path inside the build, got {type_name(value)}", fix)
    if not value.startswith("/"):
        c.fail(field_name, f"{show(value)} is a relative path; {absolute_why}", fix)
    if ":" in value or "," in value:
        c.fail(
            field_name,
            f"{show(value)} holds ':' or ',', which podman's --volume syntax reserves",
            "choose a path without them",
        )
    return os.path.normpath(value)


def _build_path(c: Checker, value, field_name) -> str:
    fix = "write the absolute path where the build's tool keeps its cache, e.g. /root/.cache/go-build"
    path = container_path(c, value, field_name, fix, "a cache is mounted at an absolute path")
    if path == "/" or any(_inside(path, system) or path == system for system in SYSTEM_PATHS):
        c.fail(field_name, f"{path} is the root or a system folder of the build container", fix)
    return path


def _inside(path: str, folder: str) -> bool:
    return PurePosixPath(folder) in PurePosixPath(path).parents


def require_mounting_engine(c: Checker, engine: str, services: dict) -> None:
    """Caches are podman's: `docker build` has no --volume, and BuildKit's cache mounts need a
    `RUN --mount=type=cache` line in the Containerfile, which kindling does not write."""
    if engine_class(engine).mounts_in_build:
        return
    for service in services.values():
        if service.build is not None and service.build.caches:
            c.fail(
                f"services.{service.name}.build.caches",
                f"needs engine: podman; `{engine} build` cannot mount a folder into every RUN step",
                "use engine: podman, or remove `caches` (with docker, write "
                "`RUN --mount=type=cache,target=PATH` in the Containerfile instead)",
            )


# ---- host folders ---------------------------------------------------------------------------------


def root(home: Path) -> Path:
    return Path(home) / "caches"


def folder(home: Path, stack_name: str, cache_name: str) -> Path:
    return root(home) / stack_name / cache_name


def size_limit(env) -> int:
    """Bytes each cache may hold: KINDLING_CACHE_LIMIT (e.g. 20GiB), else 10 GiB."""
    text = env.get(LIMIT_VARIABLE)
    if not text:
        return DEFAULT_LIMIT
    try:
        limit = parse_size(text)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise KindlingError(f"{LIMIT_VARIABLE}={text!r} is not a size\n  fix: write e.g. 10GiB or 500MiB")
    return limit


@dataclass
class Usage:
    bytes: int = 0  # on disk, as du counts
    files: int = 0
    newest: float = 0.0  # mtime of the most recently written file; 0 when empty


def usage(path: Path) -> Usage:
    """What a cache folder holds; symbolic links are not followed, hard links count once."""
    result, seen = Usage(), set()
    for base, _, files in os.walk(path):
        for name in files:
            try:
                stat = os.lstat(os.path.join(base, name))
            except OSError:  # removed meanwhile by a build's own cleanup
                continue
            if (stat.st_dev, stat.st_ino) in seen:
                continue
            seen.add((stat.st_dev, stat.st_ino))
            result.bytes += stat.st_blocks * 512
            result.files += 1
            result.newest = max(result.newest, stat.st_mtime)
    return result


def trim(path: Path, limit: int) -> int:
    """Remove the least recently written files until the folder holds at most TRIM_TO of limit
    (only when it holds more than limit). Returns the bytes removed. Go refreshes an entry's mtime
    when it uses it (cmd/go/internal/cache/cache.go, used()), ccache on every hit: oldest first is
    least recently used first."""
    entries, total = [], 0
    for base, _, files in os.walk(path):
        for name in files:
            full = os.path.join(base, name)
            try:
                stat = os.lstat(full)
            except OSError:
                continue
            entries.append((stat.st_mtime, stat.st_blocks * 512, full))
            total += stat.st_blocks * 512
    if total <= limit:
        return 0
    removed, goal = 0, limit * TRIM_TO
    for _, size, full in sorted(entries):
        if total - removed <= goal:
            break
        try:
            os.unlink(full)
        except OSError:  # e.g. owned by a build user's sub-UID under rootless podman
            continue
        removed += size
    return removed


def human_size(size: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _trim_alone(cache_folder: Path, limit: int) -> str:
    """What a build that has the cache to itself does first: trim a trimmable one over its limit."""
    if not cache_folder.is_dir() or cache_folder.name not in TRIMMABLE:
        return ""
    removed = trim(cache_folder, limit)
    return f"trimmed its least recently written entries ({human_size(removed)})" if removed else ""


# ---- what a build mounts ----------------------------------------------------------------------------


def mounts(stack, service: str, build, home: Path, *, env, say=None, dry_run=False) -> list:
    """(host folder, path in the build) for each of the build's caches, for Engine.build(mounts=).

    Each folder is created when missing and held until this process ends. A cache over its limit
    is reported through say(text); a trimmable one no other process holds is trimmed first."""
    if not build.caches:
        return []
    limit = size_limit(env)
    found = []
    for cache in build.caches:
        host = folder(home, stack.name, cache.name)
        where = f"services.{service}.build.caches"
        if ":" in str(host) or "," in str(host):
            raise StackError(
                stack.path,
                where,
                f"the cache folder {host} holds ':' or ',', which podman's --volume syntax reserves",
                "set KINDLING_HOME to a path without them",
            )
        if not dry_run:
            note = cachelocks.hold_shared(host, lambda folder=host: _trim_alone(folder, limit))
            current = usage(host).bytes
            if current > limit or note:
                advice = note or (
                    "the next build that has it to itself trims it"
                    if cache.trimmable
                    else f"`invoke cache.clear --name {cache.name}` empties it"
                )
                if say:
                    say(
                        f"[image] {service}: cache {cache.name} holds {human_size(current)}, limit "
                        f"{human_size(limit)} ({LIMIT_VARIABLE}); {advice}"
                    )
        found.append((str(host), cache.path))
    return found


# ---- status and clearing ------------------------------------------------------------------------------


@dataclass
class CacheState:
    stack: str
    name: str
    folder: Path
    usage: Usage
    in_use: bool
    exists: bool


def states(home: Path, declared: dict | None = None) -> list:
    """Every cache folder under the state home, plus declared ones not created yet.

    declared: {(stack name, cache name): ...} of the current stack, so its caches show before
    their first build."""
    found = {}
    base = root(home)
    if base.is_dir():
        for stack_folder in sorted(p for p in base.iterdir() if p.is_dir()):
            for cache_folder in sorted(p for p in stack_folder.iterdir() if p.is_dir()):
                found[(stack_folder.name, cache_folder.name)] = cache_folder
    for key in declared or {}:
        found.setdefault(key, folder(home, *key))
    return [
        CacheState(stack, name, path, usage(path), cachelocks.in_use(path), path.is_dir())
        for (stack, name), path in sorted(found.items())
    ]


def clear(cache_folder: Path, dry_run: bool = False) -> int:
    """Empty and remove one cache folder; returns the bytes freed. Refuses while a build holds it."""
    if not cache_folder.is_dir():
        return 0
    freed = usage(cache_folder).bytes
    if dry_run:
        return freed
    with cachelocks.exclusive(cache_folder):
        try:
            shutil.rmtree(cache_folder)
        except PermissionError as exc:
            raise KindlingError(
                f"cannot remove {exc.filename}: {exc.strerror}. Under rootless podman the files a "
                "non-root build user wrote belong to one of your sub-UIDs"
                f"\n  fix: podman unshare rm -rf {cache_folder}"
            ) from None
    return freed
