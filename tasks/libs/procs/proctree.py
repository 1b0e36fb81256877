"""Process trees through /proc: find, signal and kill a command and everything it started."""

import os
import signal
import threading
import time


def descendants(pid: int) -> list:
    """Every process below pid, found through /proc; deepest last."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def send_signal(pid, signum):
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def wait(pid: int, wait_for_exit, timeout: float, grace: float = 5.0) -> bool:
    """Block in wait_for_exit() until the command ends; past timeout seconds its tree is killed
    (kill_tree). True when it timed out. A timer instead of sh's `wait(timeout)`, which polls every
    0.1 s: most of a quick query's time, and a warm run is mostly quick queries."""
    expired = threading.Event()

    def expire():
        expired.set()
        kill_tree(pid, grace)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        wait_for_exit()
    except Exception:
        if not expired.is_set():
            raise
    finally:
        timer.cancel()
        timer.join()  # a kill under way finishes first
    return expired.is_set()


def kill_tree(pid: int, grace: float = 5.0) -> None:
    """Stop a command and everything it started.

    Container runtimes put the processes of a RUN step in a session of their own,
    so signalling podman's process group misses them and they outlive the build
    (seen with podman 4.3: SIGTERM or SIGINT to `podman build` leaves the RUN step
    running). Killing the descendants first lets podman notice the failed step and
    remove its working container itself; podman is then given a grace period.
    """
    for child in reversed(descendants(pid)):
        send_signal(child, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.05)
    if alive(pid):
        send_signal(pid, signal.SIGTERM)
        time.sleep(0.5)
        for child in reversed(descendants(pid)):
            send_signal(child, signal.SIGKILL)
        send_signal(pid, signal.SIGKILL)


def alive(pid) -> bool:
    """Whether the process exists and is not a zombie (a finished child not yet reaped)."""
    try:
        with open(f"/proc/{int(pid)}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, ValueError, TypeError):
        return False


def kill_all(pids, grace) -> None:
    """kill_tree for several commands at once (both sides of a pipe)."""
    threads = [threading.Thread(target=kill_tree, args=(pid, grace)) for pid in pids if pid]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def process_age() -> float:
    """Seconds since this process started (/proc/self/stat starttime, in clock ticks since boot,
    against /proc/uptime); 0.0 where /proc cannot say."""
    try:
        with open("/proc/self/stat") as handle:
            started = int(handle.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime") as handle:
            return max(0.0, float(handle.read().split()[0]) - started)
    except (OSError, ValueError, IndexError):
        return 0.0
