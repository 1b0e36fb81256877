"""Progress lines: one colored, prefixed line per state change; plain when not a TTY or NO_COLOR."""

import sys
import threading

from colorama import Fore, Style

_COLORS = {
    "queued": Style.DIM,
    "building": Fore.CYAN,
    "loading": Fore.CYAN,
    "deploying": Fore.CYAN,
    "creating": Fore.CYAN,
    "running": Fore.CYAN,
    "pulling": Fore.CYAN,
    "saving": Fore.CYAN,
    "done": Fore.GREEN,
    "built": Fore.GREEN,
    "loaded": Fore.GREEN,
    "ready": Fore.GREEN,
    "cached": Fore.BLUE,
    "up to date": Fore.BLUE,
    "skipped": Fore.YELLOW,
    "exists": Fore.BLUE,
    "FAILED": Fore.RED + Style.BRIGHT,
    "error": Fore.RED + Style.BRIGHT,
}


def use_color(stream, env) -> bool:
    """Color on a terminal, unless NO_COLOR is set (no-color.org)."""
    if "NO_COLOR" in env and env["NO_COLOR"] != "":
        return False
    return hasattr(stream, "isatty") and stream.isatty()


class Console:
    def __init__(self, stream=None, color=None, env=None):
        """env: the process environment (settings.process_environment), for NO_COLOR."""
        self.stream = stream or sys.stdout
        self.color = use_color(self.stream, env or {}) if color is None else color
        self._lock = threading.Lock()

    def paint(self, text, state):
        if not self.color:
            return text
        return f"{_COLORS.get(state, '')}{text}{Style.RESET_ALL}"

    def state(self, kind, subject, state, detail=""):
        """e.g. `[build] datastorage   done in 12.3 s`"""
        line = f"[{kind}] {subject:<22} {self.paint(state, state)}"
        if detail:
            line += f" {detail}"
        self.line(line)

    def line(self, text=""):
        with self._lock:
            print(text, file=self.stream, flush=True)

    def error(self, text):
        self.line(self.paint(text, "error"))
