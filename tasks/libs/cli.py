"""What every task module shares: finding the stack, building an Environment, reporting errors."""

import functools
import os
import sys
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


def load(ctx, check_files=True, env=None):
    return load_stack(stack_file(ctx), env=env, check_files=check_files)


def parse_budget(text):
    if text in (None, ""):
        return None
    try:
        return parse_size(text)
    except ValueError:
        raise KindlingError(f"--memory-budget: {text!r} is not a size; write e.g. 8GiB") from None


def environment(ctx, registry="", output="text", **options) -> Environment:
    """An Environment for the configured stack; registry= overrides IMAGE_REGISTRY; output=json sends
    progress to stderr so stdout carries only the JSON report."""
    coverage = options.pop("coverage", False) or truthy(os.environ.get("E2E_COVERAGE", ""))
    # Invoke's own --dry means what each task's --dry-run means, in every task.
    options["dry_run"] = bool(options.get("dry_run")) or bool(ctx.config.run.dry)
    env = {**os.environ, **({"IMAGE_REGISTRY": registry} if registry else {})}
    if output not in ("text", "json"):
        raise KindlingError(f"--output {output!r}: use text or json")
    console = Console(sys.stderr if output == "json" else None)
    return Environment(load(ctx, env=env), env=env, console=console, coverage=coverage, **options)


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
