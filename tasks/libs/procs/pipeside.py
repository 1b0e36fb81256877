"""One side of a pipe between two commands (Runner.pipe): its process, its deadline, the tail of its
output, and which side of a failed pipe is to blame."""

import signal
from collections import deque
from pathlib import Path

import sh

from ..errors import PipeFailed
from . import proctree
from .childenv import child_environment
from .masking import display

TAIL_LINES = 20


def pipe_culprit(left_code: int, right_code: int, left_tail: str = "", stopped=()) -> str | None:
    """Which side of `left | right` failed first: "left", "right", or None when both succeeded.

    A side kindling stopped because the other had failed is not a cause, and neither is a
    writer cut off by its reader: it dies of SIGPIPE, or reports EPIPE ("broken pipe") when it
    opened the pipe itself (podman writes through /dev/stdout)."""
    if left_code == 0 and right_code == 0:
        return None
    broken = left_code == -signal.SIGPIPE or "broken pipe" in left_tail.lower()
    if left_code != 0 and "left" not in stopped and not broken:
        return "left"
    if right_code != 0 and "right" not in stopped:
        return "right"
    return "left" if left_code != 0 else "right"


class PipeSide:
    """One command of Runner.pipe: its process, its deadline and the tail of its output."""

    def __init__(self, role, argv, env, timeout, runner):
        self.role, self.env, self.timeout, self.runner = role, env, timeout, runner
        self.argv = [str(a) for a in argv]
        self.shown = display(self.argv, env, runner.secrets)
        self.name = " ".join([Path(self.argv[0]).name, *self.argv[1:2]])  # "podman save", "kind load"
        self.log = None
        self.process = None
        self._lines = deque(maxlen=TAIL_LINES)
        self._all = []

    @property
    def pid(self):
        return self.process.pid if self.process is not None else None

    def start(self, **streams):
        options = dict(
            _env=child_environment(self.env),
            _bg=True,
            _bg_exc=False,
            _new_group=True,
            _tty_out=False,
            _truncate_exc=False,
            _decode_errors="replace",
            **streams,
        )
        try:
            self.process = sh.Command(self.argv[0])(*self.argv[1:], **options)
        except sh.CommandNotFound:
            raise PipeFailed(
                self.role, self.shown, 127, reason=f"{self.argv[0]} is not installed or not on PATH"
            ) from None
        with self.runner._lock:
            self.runner._live[self.process.pid] = self.process

    def output(self, line):
        line = line if isinstance(line, str) else line.decode("utf-8", "replace")
        self._lines.append(line.rstrip("\n"))
        if self.role == "right":
            self._all.append(line)
        if self.log:
            with self.runner._lock:
                self.log.write(f"{Path(self.argv[0]).name}: {line}".encode("utf-8", "replace"))
                self.log.flush()

    def exit_code(self):
        """None while it runs; negative when a signal ended it."""
        if self.process is None:
            return None
        running, code = self.process.process.is_alive()
        return None if running else code

    def finish(self, timeout):
        """Wait for the exit and for sh's readers to pass on the last output."""
        if self.process is None:
            return
        try:
            proctree.wait(self.process.pid, self.process.wait, timeout, grace=1.0)
        except sh.ErrorReturnCode:
            pass
        drain(self.process)

    def tail(self) -> str:
        return "\n".join(self._lines)

    def text(self) -> str:
        return "".join(self._all)

    def describe(self, sides) -> str:
        other = next(side for side in sides if side is not self)
        return f"it {'feeds' if self.role == 'left' else 'reads from'} {other.name}"


def drain(process) -> None:
    """Wait for sh's reader threads too: a bounded `wait` can return while they still copy the
    output of a command that exited at once, leaving stdout or stderr cut short."""
    try:
        process.process.wait()
    except sh.ErrorReturnCode:
        pass
