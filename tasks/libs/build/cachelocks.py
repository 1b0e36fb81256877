"""The locks that keep a build cache from being emptied under a build (buildcaches.py).

A build holds a shared lock (flock(2)) on `<cache>.lock`, beside the cache folder, until its
process ends; clearing takes the lock exclusively and is refused while any build holds it. The
first build to take a cache alone (no other process holds it) may act on it first, e.g. trim it.
"""

import fcntl
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import KindlingError

LOCK_WAIT_SECONDS = 300  # a build waits this long for a clear or trim in another process to finish

_HELD = {}  # lock file -> open handle with a shared lock, kept until this process exits
_HELD_GUARD = threading.Lock()


class CacheBusy(KindlingError):
    pass


def lock_file(cache_folder: Path) -> Path:
    return cache_folder.with_name(cache_folder.name + ".lock")


def hold_shared(cache_folder: Path, when_alone) -> str:
    """Take this process's shared hold on a cache (once). When no other process holds it,
    when_alone() runs first, under the exclusive lock; what it returns (a note for the build's
    progress line, "" if nothing) is returned."""
    path = lock_file(cache_folder)
    with _HELD_GUARD:
        if str(path) in _HELD:
            return ""
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        note = when_alone() if alone else ""
        # Downgrading is not atomic (flock(2)): a clear may slip in between, so the folder is
        # created only once the shared hold is taken.
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.close()
                    raise CacheBusy(
                        f"cache {cache_folder} is being cleared by another process for over "
                        f"{LOCK_WAIT_SECONDS} s\n  fix: wait for `invoke cache.clear` to end"
                    ) from None
                time.sleep(0.2)
        cache_folder.mkdir(parents=True, exist_ok=True)
        _HELD[str(path)] = handle
        return note


def release_all() -> None:
    """Give up this process's holds (before handing a cache to a child process that may clear it)."""
    with _HELD_GUARD:
        for handle in _HELD.values():
            handle.close()
        _HELD.clear()


def in_use(cache_folder: Path) -> bool:
    """Whether some kindling process (this one included) holds the cache for its builds."""
    path = lock_file(cache_folder)
    if not path.exists():
        return False
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


@contextmanager
def exclusive(cache_folder: Path):
    """The cache to this process alone (to clear it), or CacheBusy while a build holds it."""
    with open(lock_file(cache_folder), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CacheBusy(
                f"cache {cache_folder} is in use by a running kindling build (its process "
                "holds it until it ends)\n  fix: clear it when that run has finished"
            ) from None
        yield
