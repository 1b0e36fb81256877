"""A Runner that starts no process, shipped beside the real one (as ctlptl ships its fake command
runner in internal/exec) so that every in-process test stands on the same seam.

Each command is recorded and answered instead of run. The rest is the real Runner's: a dry run
prints changes instead of making them, a stopping run starts nothing, secrets are masked in the
command log, commands are counted, and a non-zero exit raises CommandFailed unless check=False.
"""

from dataclasses import dataclass

from ..errors import CommandFailed
from .masking import display
from .runner import Result, Runner


@dataclass(frozen=True)
class Call:
    argv: list
    mutating: bool
    env: dict | None = None
    input: object = None


class FakeRunner(Runner):
    """answers: (predicate(argv), answer) pairs, the first match answering; or a callable given the
    Call (argv, mutating, env, input), e.g. an object that simulates what the commands act on. An
    answer is a Result, None (exit 0, no output), an exception to raise, or a list answered in turn,
    its last entry repeated."""

    def __init__(self, answers=(), dry_run=False, secrets=(), command_log=None):
        super().__init__(dry_run=dry_run, secrets=secrets, command_log=command_log)
        self.answers = answers if callable(answers) else list(answers)
        self.calls = []

    def run(self, argv, *, mutating=True, check=True, env=None, input=None, **options) -> Result:
        argv = [str(a) for a in argv]
        shown = display(argv, env, self.secrets)
        if not self._start(shown, mutating):
            return Result("", 0)
        call = Call(argv, mutating, env, input)
        self.calls.append(call)
        result = self._answer(call) or Result("", 0)
        if check and result.exit_code != 0:
            raise CommandFailed(shown, result.exit_code, result.stderr or result.stdout)
        return result

    def _answer(self, call: Call):
        if callable(self.answers):
            answer = self.answers(call)
        else:
            answer = next((a for predicate, a in self.answers if predicate(call.argv)), None)
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def commands(self, *prefix) -> list:
        """The argument lists run so far that start with prefix (e.g. "podman", "build")."""
        return [c.argv for c in self.calls if c.argv[: len(prefix)] == list(prefix)]
