"""Reading a run's command log back (benchmarks count what a run did from it).

Lines: "HH:MM:SS [dry-run] CMD" (not run), "HH:MM:SS [read-only] CMD" (a query, run under
--dry-run too), "HH:MM:SS CMD" (changes something); a pipe is one line, "CMD | CMD".
"""

import shlex
from dataclasses import dataclass

# Command log lines: "HH:MM:SS [dry-run] CMD" (not run), "HH:MM:SS [read-only] CMD" (a query, run
# under --dry-run too), "HH:MM:SS CMD" (changes something); a pipe is one line, "CMD | CMD".
DRY_RUN_MARK, READ_ONLY_MARK, PIPE_MARK = "[dry-run]", "[read-only]", " | "


@dataclass
class LoggedCommand:
    """One line of a command log."""

    shown: str  # the command as logged (secrets masked)
    processes: int  # 2 for a pipe
    mutating: bool
    ran: bool  # False for a dry-run line


def read_command_log(text: str) -> list:
    """The command log's lines (see DRY_RUN_MARK) as LoggedCommands."""
    found = []
    for line in text.splitlines():
        _, _, shown = line.partition(" ")
        ran = not shown.startswith(DRY_RUN_MARK)
        mutating = not shown.startswith(READ_ONLY_MARK)
        for mark in (DRY_RUN_MARK, READ_ONLY_MARK):
            shown = shown.removeprefix(mark + " ")
        if shown:
            found.append(LoggedCommand(shown, _pipe_marks(shown) + 1, mutating, ran))
    return found


def _pipe_marks(shown: str) -> int:
    """How many bare `|` words join commands; shlex.join quoted any argument holding a `|`, and
    non-POSIX splitting keeps those quotes, so such an argument is never counted."""
    words = shlex.shlex(shown, posix=False)
    words.whitespace_split = True
    try:
        return sum(word == PIPE_MARK.strip() for word in words)
    except ValueError:  # an unbalanced quote: not written by display()
        return shown.count(PIPE_MARK)
