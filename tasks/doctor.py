"""`invoke doctor`: can this machine run the stack? Tools, versions, provider, disk, memory."""

from pathlib import Path

from invoke import task

from .libs import cli
from .libs.checks import preflight
from .libs.checks.checkresult import FAIL, Check
from .libs.console import Console
from .libs.errors import KindlingError, StackError
from .libs.procs.runner import Runner
from .libs.settings import process_environment


@task
@cli.reports_errors
def doctor(c):
    """Check podman/docker, kind and kubectl (versions, skew), kind's provider needs, disk and memory."""
    try:
        env = cli.environment(c)
        console, checks = env.ctx.console, preflight_checks(env.ctx)
    except KindlingError as exc:
        # A stack that does not load (say, its source checkout is missing) is one more problem:
        # the tools and the host are still checked.
        console = Console(env=process_environment())
        checks = _without_stack(c) + [_stack_problem(exc)]
    for check in checks:
        console.line(check.line())
    failed = [check.name for check in checks if check.status == FAIL]
    if failed:
        raise KindlingError(f"doctor: {len(failed)} problem(s): {', '.join(failed)}")


def _without_stack(c) -> list:
    """The checks a stack that does not fully load allows: all of them when the file reads without its
    file checks (e.g. only the source checkout is missing), else the tools and the host, for podman."""
    env = process_environment()
    try:
        stack = cli.load(c, check_files=False, env=env)
    except KindlingError:
        stack = None
    if env.get("KINDLING_HOME"):
        home = Path(env["KINDLING_HOME"]).resolve()
    else:
        home = (stack.folder if stack is not None else cli.stack_file(c, env).parent) / ".kindling"
    return preflight.run_checks(
        stack, Runner(), home, preflight.mem_available() * 3 // 4, preflight.mem_available(), env
    )


def _stack_problem(exc: KindlingError) -> Check:
    if isinstance(exc, StackError):
        where = f"{exc.path}: {exc.field}: " if exc.field else f"{exc.path}: "
        return Check("stack", FAIL, where + exc.problem, exc.fix)
    return Check("stack", FAIL, str(exc).replace("\n", " "))


def preflight_checks(ctx) -> list:
    return preflight.run_checks(
        ctx.stack,
        ctx.runner,
        ctx.home,
        ctx.settings.memory_budget,
        preflight.mem_available(),
        ctx.env,
        host=ctx.host_info,
    )


def require_ready(ctx) -> None:
    """The same checks before a setup: say nothing when all is well, stop before any work if not."""
    checks = preflight_checks(ctx)
    for check in checks:
        if check.status != "ok":
            ctx.console.line(check.line())
    failed = [check for check in checks if check.status == FAIL]
    if failed and ctx.dry_run:
        # A dry run plans anyway: it changes nothing, and says what it could not check.
        ctx.console.line("dry run: planning anyway, though a real run would stop at these checks")
        return
    if failed:
        raise KindlingError(
            "preflight failed: "
            + "; ".join(f"{c.name}: {c.detail}" for c in failed)
            + "\n  (run `invoke doctor` for the fixes)"
        )
