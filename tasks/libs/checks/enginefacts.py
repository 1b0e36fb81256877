"""What the preflight reads of `<engine> info`, kept between runs.

`podman info` takes about 0.25 s, more than the rest of a warm run's checks together, and the facts
the preflight reads from it (rootless or not, the cgroup version, the log driver, the image store;
docker's root folder and cgroup version) change only with the engine's binary, its configuration,
the user or a reboot. The key covers those: the binary's path, size and time, the boot, the user,
the environment variables that point the engine elsewhere, and the size and time of each
configuration file the engine reads. Anything else, or a day's age, asks again.
"""

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from .. import runs
from ..adapters.engine import engine_class

MAX_AGE = 24 * 3600  # seconds
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

# The parts of the answer the preflight reads (preflight.py, kindhost.py), as paths into it.
FACTS = {
    "podman": (
        ("host", "security", "rootless"),
        ("host", "cgroupVersion"),
        ("host", "logDriver"),
        ("store", "graphRoot"),
    ),
    "docker": (("DockerRootDir",), ("CgroupVersion",)),
}
ENV_KEYS = (
    "CONTAINERS_CONF",
    "CONTAINERS_CONF_OVERRIDE",
    "CONTAINERS_STORAGE_CONF",
    "CONTAINER_HOST",
    "CONTAINER_CONNECTION",
    "XDG_CONFIG_HOME",
    "XDG_RUNTIME_DIR",
    "HOME",
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
)


def _stamp(path: Path):
    """(size, mtime) of a file, or of each entry of a folder; None when it is absent."""
    try:
        if path.is_dir():
            return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir())
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns
    except OSError:
        return None


def key(engine: str, env) -> str | None:
    """The key of the facts on this host, or None when the engine is not on PATH."""
    binary = shutil.which(engine, path=env.get("PATH"))
    if binary is None:
        return None
    try:
        boot = BOOT_ID.read_text().strip()
    except OSError:
        boot = ""
    parts = [
        engine,
        binary,
        _stamp(Path(binary)),
        boot,
        os.getuid(),
        [env.get(k, "") for k in ENV_KEYS],
        [(str(p), _stamp(p)) for p in engine_class(engine).config_files(env)],  # where it reads its config
    ]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]


def pick(engine: str, info: dict) -> dict:
    """The facts of FACTS from an info answer, in the answer's own shape."""
    facts = {}
    for path in FACTS[engine]:
        value = info
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            continue
        into = facts
        for part in path[:-1]:
            into = into.setdefault(part, {})
        into[path[-1]] = value
    return facts


def read(folder: Path, engine: str, facts_key: str | None, now=None) -> dict | None:
    if facts_key is None:
        return None
    kept = runs.read_json(folder / f"{engine}-info.json", {})
    now = time.time() if now is None else now
    if kept.get("key") != facts_key or not isinstance(kept.get("facts"), dict):
        return None
    if not 0 <= now - kept.get("at", 0) <= MAX_AGE:
        return None
    return kept["facts"]


def write(folder: Path, engine: str, facts_key: str | None, info: dict, now=None) -> None:
    if facts_key is not None:
        at = time.time() if now is None else now
        runs.write_json(
            folder / f"{engine}-info.json", {"key": facts_key, "at": at, "facts": pick(engine, info)}
        )
