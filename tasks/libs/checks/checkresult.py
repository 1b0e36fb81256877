"""A check's result and the read-only queries checks make: shared by the preflight (preflight.py),
the host checks kind's provider needs (kindhost.py) and the version skew checks (skew.py)."""

import re
from dataclasses import dataclass

from ..errors import CommandFailed

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4} {self.name:<14} {self.detail}"
        return text + (f"\n     fix: {self.fix}" if self.fix and self.status != OK else "")


def parse_version(text: str):
    match = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return tuple(int(g) for g in match.groups() if g is not None) if match else None


@dataclass(frozen=True)
class Probe:
    """A tool's `version` call: its output, or None with what failed ("" when the tool is not on PATH)."""

    text: str | None
    failure: str = ""


def query(runner, argv, env=None, timeout=30):
    """(result, "") of a read-only command, or (None, what failed: exit code and last stderr line)."""
    shown = " ".join(argv)
    try:
        result = runner.run(argv, env=env, check=False, mutating=False, timeout=timeout)
    except CommandFailed as exc:  # timed out, or not runnable at all
        return (
            None,
            f"`{shown}` failed (exit {exc.returncode}): {last_line(exc.tail) or str(exc).splitlines()[0]}",
        )
    if result.exit_code != 0:
        last = last_line(result.stderr) or last_line(result.stdout) or "no output"
        return None, f"`{shown}` failed (exit {result.exit_code}): {last}"
    return result, ""


def last_line(text) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""
