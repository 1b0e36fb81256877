"""What every task module shares: finding the stack, building an Environment, reporting errors."""

import functools
import os
import signal
import threading
from pathlib import Path

from invoke.exceptions import Exit

from . import procs
from .console import Console
from .environment import Environment
from .errors import Interrupted, KindlingError
from .stack import load_stack, parse_size, stack_path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def truthy(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def stack_file(ctx=None) -> Path:
    configured = None
    if ctx is not None:
        configured = ctx.config.get("e2e", {}).get("stack")
    return stack_path(configured, root=PROJECT_ROOT)


def load(ctx, check_files=True):
    return load_stack(stack_file(ctx), check_files=check_files)


def parse_budget(text):
    if text in (None, ""):
        return None
    try:
        return parse_size(text)
    except ValueError:
        raise KindlingError(f"--memory-budget: {text!r} is not a size; write e.g. 8GiB") from None


def environment(ctx, **options) -> Environment:
    coverage = options.pop("coverage", False) or truthy(os.environ.get("E2E_COVERAGE", ""))
    return Environment(load(ctx), console=Console(), coverage=coverage, **options)


def reports_errors(function):
    """Turn the tool's own errors into a message and exit code, never a traceback.

    SIGTERM is turned into an exception like SIGINT, so both stop every command this
    process started (their process trees included) before exiting 143 or 130.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        previous = _trap_sigterm()
        try:
            return function(*args, **kwargs)
        except (Interrupted, KeyboardInterrupt) as exc:
            procs.terminate_everything()
            code = exc.exit_code if isinstance(exc, Interrupted) else 130
            raise Exit(f"kindling: {exc if isinstance(exc, Interrupted) else 'interrupted by SIGINT'}", code=code)
        except KindlingError as exc:
            raise Exit(f"kindling: {exc}", code=exc.exit_code)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


def _trap_sigterm():
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Interrupted(signum)

    return signal.signal(signal.SIGTERM, handler)
