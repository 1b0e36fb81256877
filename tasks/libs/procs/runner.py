"""Running external commands: argument lists through `sh`, logged, bounded, killable.

Every adapter (engine, kind, kubectl) runs its tool through one Runner, so every
command can be printed (--dry-run), is written to the run's command log with
secrets masked, has a timeout, and is terminated with its whole process tree
when the run is interrupted or fails.
"""

import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import sh

from ..errors import CommandFailed, PipeFailed
from . import proctree
from .childenv import child_environment
from .commandlog import DRY_RUN_MARK, PIPE_MARK, READ_ONLY_MARK
from .masking import MASK, display
from .pipeside import TAIL_LINES, PipeSide, drain, pipe_culprit

DEFAULT_TIMEOUT = 600  # seconds, for commands whose caller gives none


@dataclass
class Result:
    stdout: str
    exit_code: int
    stderr: str = ""  # empty when the command logged to a file (stderr went there)


def tail(path_or_text, lines=TAIL_LINES) -> str:
    if isinstance(path_or_text, Path):
        try:
            with open(path_or_text, "rb") as handle:
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return ""
    else:
        text = path_or_text or ""
    return "\n".join(deque(text.rstrip("\n").splitlines(), maxlen=lines))


_RUNNERS = weakref.WeakSet()


def terminate_everything():
    """Stop every command any Runner of this process is running (on SIGINT/SIGTERM)."""
    for runner in list(_RUNNERS):
        runner.terminate_all()


class Runner:
    """Runs commands as argument lists. One per kindling run; thread-safe."""

    def __init__(
        self, dry_run=False, command_log=None, echo=None, secrets=(), default_timeout=DEFAULT_TIMEOUT
    ):
        _RUNNERS.add(self)
        # Every command is bounded: callers give step timeouts; quick queries get this one.
        self.default_timeout = default_timeout
        self.dry_run = dry_run
        self.command_log = Path(command_log) if command_log else None
        self.echo = echo
        self.secrets = set(secrets)
        self._live = {}
        self._lock = threading.Lock()
        self._stopping = False
        self.commands_run = {"total": 0, "mutating": 0}  # commands started (the run report shows it)
        self.not_checked = {}  # dry run: program -> the queries it could not answer (not installed)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def add_secrets(self, values):
        self.secrets.update(v for v in values if v)

    def _start(self, shown: str, mutating: bool, processes: int = 1) -> bool:
        """Log and count a command about to start; False when it must not run (a change, in a
        dry run: printed instead). A stopping run starts nothing."""
        if self.dry_run and mutating:
            self._record(f"{DRY_RUN_MARK} {shown}")
            return False
        if self._stopping:
            raise CommandFailed(shown, 130, reason="not started: the run is stopping")
        with self._lock:
            self.commands_run["total"] += processes
            self.commands_run["mutating"] += processes if mutating else 0
        self._record(shown if mutating else f"{READ_ONLY_MARK} {shown}")
        return True

    def _not_checked(self, program: str, shown: str) -> Result:
        """A dry run plans without the tools it would use: a query whose program is not installed
        answers nothing (no cluster, no image), and the run says what it could not check."""
        with self._lock:
            self.not_checked.setdefault(program, []).append(shown)
        self._record(f"{DRY_RUN_MARK} not checked ({program} is not installed): {shown}")
        return Result("", 0)

    def _record(self, line):
        if self.echo and self.dry_run:
            self.echo(line)
        if self.command_log:
            with self._lock:
                self.command_log.parent.mkdir(parents=True, exist_ok=True)
                with open(self.command_log, "a", encoding="utf-8") as handle:
                    handle.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def run(
        self,
        argv,
        *,
        env=None,
        log_path=None,
        timeout=None,
        check=True,
        mutating=True,
        cwd=None,
        stream=None,
        input=None,
    ) -> Result:
        """Run argv; env holds overrides on top of this process's environment (childenv.py).

        mutating=False marks read-only queries, which still run under --dry-run so that
        a dry run can show what would be done.
        """
        argv = [str(a) for a in argv]
        timeout = self.default_timeout if timeout is None else timeout
        shown = display(argv, env, self.secrets)
        if not self._start(shown, mutating):
            return Result("", 0)
        full_env = child_environment(env)
        log_handle = open(log_path, "ab") if log_path else None
        options = dict(
            _env=full_env,
            _bg=True,
            _bg_exc=False,
            _new_group=True,
            _tty_out=False,
            _truncate_exc=False,
            _in=input,
        )
        if cwd:
            options["_cwd"] = str(cwd)
        if log_handle:
            log_handle.write(f"$ {shown}\n".encode())
            log_handle.flush()
            options.update(_out=log_handle, _err_to_out=True)
            if stream:
                # Shown live and kept: each line to the console and to the log. One parameter only:
                # sh passes a callback of two its stdin queue, of three the process too (sh's docs,
                # "Callbacks"), which a defaulted second parameter would silently receive.
                def both(line):
                    log_handle.write(line.encode("utf-8", "replace") if isinstance(line, str) else line)
                    log_handle.flush()
                    stream(
                        self.mask_text(
                            line if isinstance(line, str) else line.decode("utf-8", "replace")
                        ).rstrip("\n")
                    )

                options["_out"] = both
        try:
            try:
                process = sh.Command(argv[0])(*argv[1:], **options)
            except sh.CommandNotFound:
                if self.dry_run and not mutating:
                    return self._not_checked(argv[0], shown)
                raise CommandFailed(shown, 127, reason=f"{argv[0]} is not installed or not on PATH")
            with self._lock:
                self._live[process.pid] = process
            try:
                if proctree.wait(process.pid, process.wait, timeout):
                    raise sh.TimeoutException(None, shown)
                drain(process)
                return Result(_text(process.stdout), process.exit_code, _text(process.stderr))
            except sh.TimeoutException:
                drain(process)
                # The process's own buffers: RunningCommand.stdout would wait for it and raise its
                # exit (ErrorReturnCode_137) instead of giving the output.
                captured = _text(process.process.stdout) + _text(process.process.stderr)
                output = tail(Path(log_path)) if log_path else tail(captured)
                raise CommandFailed(shown, 124, output, log_path, reason=f"timed out after {timeout} s")
            except sh.SignalException as exc:
                output = tail(Path(log_path)) if log_path else tail(_text(exc.stderr))
                raise CommandFailed(
                    shown, 128 + abs(exc.exit_code), output, log_path, reason="stopped by a signal"
                )
            except sh.ErrorReturnCode as exc:
                drain(process)  # the output as it is once the readers are done
                stdout, stderr = _text(process.process.stdout), _text(process.process.stderr)
                if not check:
                    return Result(stdout, exc.exit_code, stderr)
                output = tail(Path(log_path)) if log_path else tail(stderr or stdout)
                raise CommandFailed(shown, exc.exit_code, output, log_path)
            finally:
                with self._lock:
                    self._live.pop(process.pid, None)
        finally:
            if log_handle:
                log_handle.close()

    def pipe(
        self,
        left,
        right,
        *,
        left_env=None,
        right_env=None,
        log_path=None,
        timeout=None,
        left_timeout=None,
        mutating=True,
    ) -> Result:
        """Run `left | right` with no shell and no file: left's stdout goes into right's stdin
        through an OS pipe. Returns right's output.

        Both exit codes are checked. When one side fails, the other is stopped at once, and the
        error (PipeFailed) names the side that failed first (pipe_culprit) with the tail of its
        output. `timeout` bounds the reading side, `left_timeout` (default: timeout) the writing
        side, both from the start. Each side's output goes to log_path with its program's name in
        front. The command log holds one line, "LEFT | RIGHT"; it counts as two commands.
        """
        timeout = self.default_timeout if timeout is None else timeout
        sides = (
            PipeSide("left", left, left_env, timeout if left_timeout is None else left_timeout, self),
            PipeSide("right", right, right_env, timeout, self),
        )
        shown = PIPE_MARK.join(side.shown for side in sides)
        if not self._start(shown, mutating, processes=2):
            return Result("", 0)
        log_handle = open(log_path, "ab") if log_path else None
        try:
            if log_handle:
                log_handle.write(f"$ {shown}\n".encode())
                log_handle.flush()
            return self._run_pipe(sides, shown, log_handle, log_path)
        finally:
            if log_handle:
                log_handle.close()

    def _run_pipe(self, sides, shown, log_handle, log_path) -> Result:
        left, right = sides
        for side in sides:
            side.log = log_handle
        read_end, write_end = os.pipe()
        try:
            # Our copies of both ends are closed right after both sides started: a reader that
            # exits must leave the writer with no reader (SIGPIPE), and the writer's end of file
            # must reach the reader.
            try:
                left.start(_out=write_end, _err=left.output)
                try:
                    right.start(_in=read_end, _out=right.output, _err_to_out=True)
                except PipeFailed:
                    proctree.kill_all([left.pid], grace=1.0)
                    raise
            finally:
                os.close(read_end)
                os.close(write_end)
            started = time.monotonic()
            stopped, timed_out = set(), None
            while True:
                codes = {side.role: side.exit_code() for side in sides}
                running = [side for side in sides if codes[side.role] is None]
                if not running:
                    break
                elapsed = time.monotonic() - started
                timed_out = next((side for side in running if elapsed > side.timeout), None)
                failed = [side for side in sides if codes[side.role] not in (None, 0)]
                if timed_out or failed or self._stopping:
                    # One bad side dooms the other: stop it rather than let it wait for a partner
                    # that is gone (a reader left with a half-written archive, a writer blocked).
                    stopped.update(side.role for side in running)
                    proctree.kill_all([side.pid for side in running], grace=1.0)
                    break
                time.sleep(0.05)
            for side in sides:
                side.finish(max(1.0, side.timeout - (time.monotonic() - started)))
        finally:
            with self._lock:
                for side in sides:
                    self._live.pop(side.pid, None)
        codes = {side.role: side.exit_code() for side in sides}
        if self._stopping:
            # Stopped from outside (terminate_all): a side whose children were killed may still
            # exit 0, so the stream is not trusted whatever the exit codes say.
            signals = [-code for code in codes.values() if code and code < 0]
            raise CommandFailed(
                shown,
                128 + (signals[0] if signals else 2),
                self.mask_text(right.tail()),
                log_path,
                reason="stopped by a signal",
            )
        if timed_out:
            raise PipeFailed(
                timed_out.role,
                shown,
                124,
                self.mask_text(timed_out.tail()),
                log_path,
                reason=f"{timed_out.name} timed out after {timed_out.timeout:g} s "
                f"({timed_out.describe(sides)})",
            )
        culprit = pipe_culprit(codes["left"], codes["right"], left.tail(), stopped)
        if culprit is None:
            return Result(right.text(), 0)
        side = left if culprit == "left" else right
        reason = f"{side.name} failed with exit code {codes[culprit]} ({side.describe(sides)})"
        raise PipeFailed(culprit, shown, codes[culprit], self.mask_text(side.tail()), log_path, reason=reason)

    def mask_text(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            if len(secret) >= 4:
                text = text.replace(secret, MASK)
        return text

    def terminate_all(self):
        """Stop every running command and its process tree; refuse new ones."""
        self._stopping = True
        with self._lock:
            pids = list(self._live)
        proctree.kill_all(pids, grace=5.0)

    def resume(self):
        self._stopping = False


def _text(data) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
