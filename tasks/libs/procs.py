"""Running external commands: argument lists through `sh`, logged, bounded, killable.

Every adapter (engine, kind, kubectl) runs its tool through one Runner, so every
command can be printed (--dry-run), is written to the run's command log with
secrets masked, has a timeout, and is terminated with its whole process tree
when the run is interrupted or fails.
"""

import os
import re
import shlex
import signal
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import sh

from .errors import CommandFailed

SECRET_NAME_RE = re.compile(r"pass(word|wd)?|secret|token|api[_-]?key|credential|private", re.I)
MASK = "***"
TAIL_LINES = 20
DEFAULT_TIMEOUT = 600  # seconds, for commands whose caller gives none


@dataclass
class Result:
    stdout: str
    exit_code: int
    stderr: str = ""  # empty when the command logged to a file (stderr went there)


def mask_argv(argv, secrets=()) -> list:
    """The argument list as it may be shown: secret-looking build args and known secret values hidden."""
    shown = []
    for arg in argv:
        arg = str(arg)
        name, sep, value = arg.partition("=")
        if sep and value and SECRET_NAME_RE.search(name) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            arg = f"{name}={MASK}"
        for secret in secrets:
            if secret and len(secret) >= 4:
                arg = arg.replace(secret, MASK)
        shown.append(arg)
    return shown


def display(argv, env_overrides=None, secrets=()) -> str:
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env_overrides or {}).items())
    text = shlex.join(mask_argv(argv, secrets))
    return f"{prefix} {text}" if prefix else text


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


def _signal(pid, signum):
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def kill_tree(pid: int, grace: float = 5.0) -> None:
    """Stop a command and everything it started.

    Container runtimes put the processes of a RUN step in a session of their own,
    so signalling podman's process group misses them and they outlive the build
    (seen with podman 4.3: SIGTERM or SIGINT to `podman build` leaves the RUN step
    running). Killing the descendants first lets podman notice the failed step and
    remove its working container itself; podman is then given a grace period.
    """
    for child in reversed(descendants(pid)):
        _signal(child, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        _signal(pid, signal.SIGTERM)
        time.sleep(0.5)
        for child in reversed(descendants(pid)):
            _signal(child, signal.SIGKILL)
        _signal(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


_RUNNERS = weakref.WeakSet()


def terminate_everything():
    """Stop every command any Runner of this process is running (on SIGINT/SIGTERM)."""
    for runner in list(_RUNNERS):
        runner.terminate_all()


class Runner:
    """Runs commands as argument lists. One per kindling run; thread-safe."""

    def __init__(self, dry_run=False, command_log=None, echo=None, secrets=(), default_timeout=DEFAULT_TIMEOUT):
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

    @property
    def stopping(self) -> bool:
        return self._stopping

    def add_secrets(self, values):
        self.secrets.update(v for v in values if v)

    def _record(self, line):
        if self.echo and self.dry_run:
            self.echo(line)
        if self.command_log:
            with self._lock:
                self.command_log.parent.mkdir(parents=True, exist_ok=True)
                with open(self.command_log, "a", encoding="utf-8") as handle:
                    handle.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def run(self, argv, *, env=None, log_path=None, timeout=None, check=True, mutating=True, cwd=None,
            stream=None, input=None) -> Result:
        """Run argv; env holds overrides on top of os.environ.

        mutating=False marks read-only queries, which still run under --dry-run so that
        a dry run can show what would be done.
        """
        argv = [str(a) for a in argv]
        timeout = self.default_timeout if timeout is None else timeout
        shown = display(argv, env, self.secrets)
        if self.dry_run and mutating:
            self._record(f"[dry-run] {shown}")
            return Result("", 0)
        if self._stopping:
            raise CommandFailed(shown, 130, reason="not started: the run is stopping")
        self._record(shown)
        full_env = {**os.environ, **(env or {})}
        log_handle = open(log_path, "ab") if log_path else None
        options = dict(_env=full_env, _bg=True, _bg_exc=False, _new_group=True,
                       _tty_out=False, _truncate_exc=False, _in=input)
        if cwd:
            options["_cwd"] = str(cwd)
        if log_handle:
            log_handle.write(f"$ {shown}\n".encode())
            log_handle.flush()
            options.update(_out=log_handle, _err_to_out=True)
            if stream:
                # Shown live and kept: each line to the console and to the log.
                def both(line, handle=log_handle):
                    handle.write(line.encode("utf-8", "replace") if isinstance(line, str) else line)
                    handle.flush()
                    stream(self.mask_text(line if isinstance(line, str) else line.decode("utf-8", "replace")).rstrip("\n"))
                options["_out"] = both
        try:
            try:
                process = sh.Command(argv[0])(*argv[1:], **options)
            except sh.CommandNotFound:
                raise CommandFailed(shown, 127, reason=f"{argv[0]} is not installed or not on PATH")
            with self._lock:
                self._live[process.pid] = process
            try:
                process.wait(timeout=timeout)
                _drain(process)
                return Result(_text(process.stdout), process.exit_code, _text(process.stderr))
            except sh.TimeoutException:
                kill_tree(process.pid)
                output = tail(Path(log_path)) if log_path else tail(_text(process.stdout) + _text(process.stderr))
                raise CommandFailed(shown, 124, output, log_path, reason=f"timed out after {timeout} s")
            except sh.SignalException as exc:
                output = tail(Path(log_path)) if log_path else tail(_text(exc.stderr))
                raise CommandFailed(shown, 128 + abs(exc.exit_code), output, log_path,
                                    reason="stopped by a signal")
            except sh.ErrorReturnCode as exc:
                _drain(process)
                exc = _refreshed(exc, process)
                if not check:
                    return Result(_text(exc.stdout), exc.exit_code, _text(exc.stderr))
                output = tail(Path(log_path)) if log_path else tail(_text(exc.stderr) or _text(exc.stdout))
                raise CommandFailed(shown, exc.exit_code, output, log_path)
            finally:
                with self._lock:
                    self._live.pop(process.pid, None)
        finally:
            if log_handle:
                log_handle.close()

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
        threads = [threading.Thread(target=kill_tree, args=(pid,)) for pid in pids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def resume(self):
        self._stopping = False


def _drain(process) -> None:
    """Wait for sh's reader threads too: a bounded `wait` can return while they still copy the
    output of a command that exited at once, leaving stdout or stderr cut short."""
    try:
        process.process.wait()
    except sh.ErrorReturnCode:
        pass


def _refreshed(exc, process):
    """The exception with the output as it is once the readers are done."""
    exc.stdout = process.process.stdout
    exc.stderr = process.process.stderr
    return exc


def _text(data) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
