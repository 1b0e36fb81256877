"""`invoke doctor`: can this machine run the stack? Tools, versions, provider, disk, memory."""

from invoke import task

from .libs import cli
from .libs.errors import KindlingError
from .libs.preflight import FAIL


@task
@cli.reports_errors
def doctor(c):
    """Check podman/docker, kind and kubectl (with versions), the kind provider, disk and memory."""
    env = cli.environment(c)
    checks = env.preflight()
    for check in checks:
        env.console.line(check.line())
    failed = [check.name for check in checks if check.status == FAIL]
    if failed:
        raise KindlingError(f"doctor: {len(failed)} problem(s): {', '.join(failed)}")


def require_ready(env) -> None:
    """The same checks before a setup: say nothing when all is well, stop before any work if not."""
    checks = env.preflight()
    for check in checks:
        if check.status != "ok":
            env.console.line(check.line())
    failed = [check for check in checks if check.status == FAIL]
    if failed:
        raise KindlingError("preflight failed: " + "; ".join(f"{c.name}: {c.detail}" for c in failed)
                            + "\n  (run `invoke doctor` for the fixes)")
