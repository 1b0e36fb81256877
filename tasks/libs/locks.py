"""One run at a time per cluster: a host-wide lock file named after the cluster.

Kind cluster names are global to the host (they name podman containers), so the
lock lives in one folder for the whole host, not in a stack's state folder. flock(2)
is released by the kernel when its holder dies, so a lock left by a crashed run is
simply taken over; the file also records the holder for the message others see.
"""

import atexit
import fcntl
import json
import os
import time
from pathlib import Path

from .errors import KindlingError
from .procs import proctree

_HELD = {}  # path -> open file: held until this process exits (pre= chains re-enter)


class ClusterBusy(KindlingError):
    pass


def lock_folder(env) -> Path:
    if env.get("KINDLING_LOCK_DIR"):
        return Path(env["KINDLING_LOCK_DIR"])
    return Path(env.get("XDG_RUNTIME_DIR") or "/tmp") / f"kindling-locks-{os.getuid()}"


def acquire(cluster: str, what: str, wait_seconds: float, env, say=None) -> str:
    """Take the cluster's lock or raise ClusterBusy naming the holder. Returns a note for the log."""
    folder = lock_folder(env)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cluster}.lock"
    if str(path) in _HELD:
        return "held"
    handle = open(path, "a+")
    deadline = time.monotonic() + wait_seconds
    told = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = _holder(path)
            message = (
                f"cluster {cluster} is in use by PID {holder.get('pid', '?')} "
                f"({holder.get('what', '?')}, started {holder.get('started', '?')})"
            )
            if time.monotonic() >= deadline:
                handle.close()
                raise ClusterBusy(
                    message + "\n  fix: wait for it to finish, use another cluster name, or "
                    "set KINDLING_LOCK_WAIT=SECONDS to wait"
                )
            if say and not told:
                say(message + "; waiting")
                told = True
            time.sleep(0.2)
    previous = _holder(path)
    note = "acquired"
    if previous.get("pid") and previous.get("pid") != os.getpid() and not proctree.alive(previous["pid"]):
        note = f"took over a stale lock from PID {previous['pid']} (no longer running)"
    handle.seek(0)
    handle.truncate()
    handle.write(
        json.dumps({"pid": os.getpid(), "what": what, "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    )
    handle.flush()
    if not _HELD:
        atexit.register(release_all)
    _HELD[str(path)] = handle
    return note


def release_all() -> None:
    """On a normal exit, leave the lock files empty, so the next run sees no stale holder."""
    for handle in _HELD.values():
        try:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        except (OSError, ValueError):
            pass
    _HELD.clear()


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
