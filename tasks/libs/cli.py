"""What every task module shares: finding the stack, building an Environment, turning errors into
Invoke's Exit (here and nowhere else)."""

import functools
import signal
import sys
import threading
from pathlib import Path

from invoke import Config
from invoke.exceptions import Exit

from .console import Console
from .environment import Environment
from .errors import Interrupted, KindlingError
from .procs import runner as procs
from .scheduler import StepFailed
from .settings import build_settings, invoke_config_defaults, process_environment, profile_setting
from .stack.model import load_stack, stack_path
from .stack.stackfile import parse_size

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DEFAULTS = invoke_config_defaults()  # ns.configure() in tasks.py declares them to Invoke


def _plain(value):
    """Invoke's config section as plain dicts (its DataProxy is a live view)."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    return value


def e2e_config(ctx) -> dict:
    """The `e2e` section of the Invoke config: invoke.yaml, `-f FILE`, the user's config files
    and INVOKE_E2E_* variables, merged by Invoke itself."""
    return _plain(ctx.config.get("e2e", {})) if ctx is not None else {}


def configured_e2e(argv) -> dict:
    """The `e2e` section of Invoke's config before a task context exists: system, user and project
    config files, INVOKE_E2E_* variables, and the runtime file of a `-f FILE`/`--config FILE`."""
    # Invoke loads INVOKE_* variables only for keys its defaults already have.
    config = Config(
        project_location=str(PROJECT_ROOT), defaults={**Config.global_defaults(), **CONFIG_DEFAULTS}
    )
    for i, arg in enumerate(argv):
        if arg in ("-f", "--config") and i + 1 < len(argv):
            config.set_runtime_path(argv[i + 1])
        elif arg.startswith("--config="):
            config.set_runtime_path(arg.split("=", 1)[1])
    config.load_project()
    config.load_runtime()
    config.load_shell_env()
    return _plain(config.get("e2e") or {})


def stack_file(ctx=None, env=None, config=None) -> Path:
    """The stack file the settings name (e2e.stack, E2E_STACK, else the project's e2e.yaml)."""
    env = process_environment() if env is None else env
    config = e2e_config(ctx) if config is None else config
    return stack_path(config.get("stack"), env, root=PROJECT_ROOT)


def load(ctx, check_files=True, env=None, config=None, problems=None):
    """The configured stack, with the profiles E2E_PROFILE or e2e.profile chooses laid over it.
    config: the `e2e` section when no task context exists yet (tasks.py's task list); problems: a
    list that collects what can be reported together instead of raising the first (stack.check)."""
    env = process_environment() if env is None else env
    config = e2e_config(ctx) if config is None else config
    names, origin = profile_setting(config, env)
    return load_stack(
        stack_file(env=env, config=config),
        env=env,
        check_files=check_files,
        problems=problems,
        profile_names=names,
        profile_origin=origin,
    )


def parse_budget(text):
    if text in (None, ""):
        return None
    try:
        return parse_size(text)
    except ValueError:
        raise KindlingError(f"--memory-budget: {text!r} is not a size; write e.g. 8GiB") from None


def environment(ctx, registry="", output="text", **options) -> Environment:
    """An Environment for the configured stack, with its settings read once (settings.py):
    registry= overrides IMAGE_REGISTRY; output=json sends progress to stderr so stdout carries
    only the JSON report. Invoke's own --dry means what each task's --dry-run means."""
    options["dry_run"] = bool(options.get("dry_run")) or bool(ctx.config.run.dry)
    env = {**process_environment(), **({"IMAGE_REGISTRY": registry} if registry else {})}
    if output not in ("text", "json"):
        raise KindlingError(f"--output {output!r}: use text or json")
    console = Console(sys.stderr if output == "json" else None, env=env)
    stack = load(ctx, env=env)
    return Environment(stack, build_settings(stack, env, e2e_config(ctx), **options), env, console=console)


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
            raise Exit(
                f"kindling: {exc if isinstance(exc, Interrupted) else 'interrupted by SIGINT'}", code=code
            )
        except StepFailed as exc:
            raise Exit(f"kindling: {exc.label} failed\n{exc.details}", code=exc.exit_code)
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
