"""The tool's own error types: every failure a user can cause or meet ends as one of these."""


class KindlingError(Exception):
    """A failure with a message meant for the user; the CLI prints it without a traceback."""

    exit_code = 1


class StackError(KindlingError):
    """A stack file that cannot be used: names the file, the field and the fix."""

    def __init__(self, path, field, problem, fix=""):
        self.path, self.field, self.problem, self.fix = str(path), field, problem, fix
        text = f"{self.path}: {field}: {problem}" if field else f"{self.path}: {problem}"
        if fix:
            text += f"\n  fix: {fix}"
        super().__init__(text)


class CommandFailed(KindlingError):
    """An external command exited non-zero (or timed out)."""

    def __init__(self, command, exit_code, tail="", log_path=None, reason=""):
        self.command, self.returncode, self.tail, self.log_path = command, exit_code, tail, log_path
        text = reason or f"command failed with exit code {exit_code}"
        text += f"\n  command: {command}"
        if log_path:
            text += f"\n  log: {log_path}"
        if tail:
            text += "\n  last lines:\n" + "\n".join("    " + line for line in tail.splitlines())
        super().__init__(text)


class PipeFailed(CommandFailed):
    """One side of a pipe between two commands failed (or timed out): `side` is "left" for the
    command that writes, "right" for the one that reads."""

    def __init__(self, side, command, exit_code, tail="", log_path=None, reason=""):
        self.side = side
        super().__init__(command, exit_code, tail, log_path, reason)


class Interrupted(KindlingError):
    """SIGINT or SIGTERM arrived; exit 130 or 143 like a shell would."""

    def __init__(self, signum, records=()):
        import signal

        self.signum, self.records = signum, list(records)  # records: the graph's steps, when in one
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


class NotReady(KindlingError):
    """A workload failed, or did not become ready in time; carries the verdict that said so."""

    def __init__(self, text, verdict=None):
        self.verdict = verdict
        super().__init__(text)
