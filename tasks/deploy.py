"""`invoke deploy.<service>`: a partial redeploy of one service.

The tasks are generated from the stack file. Each names the services it depends on
as Invoke `pre=` tasks, so they are ensured first; ensuring a service that is up
to date (same image inputs, same rendered manifests, workloads ready) costs a few
quick checks and changes nothing.
"""

from invoke import Collection, Task

from .libs import cli
from .libs.environment import outcome_of
from .libs.errors import KindlingError
from .libs.plan import Outcome, StepKind

HELP = {
    "no-cache": "Rebuild this service's image even if its inputs are unchanged.",
}


def ensure_services(c, names, no_cache=False):
    env = cli.environment(c, no_cache=no_cache)
    stack = env.ctx.stack
    unknown = [n for n in names if n not in stack.services]
    if unknown:
        raise KindlingError(f"{stack.path}: no service named {', '.join(unknown)}")
    return env, env.execute(env.setup_steps(names), label="deploy " + ",".join(names))


# Outcomes that change nothing: the image, the node's copy and the workloads were already so.
UNCHANGED = {o.value for o in (Outcome.CACHED, Outcome.PRESENT, Outcome.ON_NODE, Outcome.UP_TO_DATE)}
UNCHANGED |= {o.value for o in (Outcome.EXISTS, Outcome.EXISTING, Outcome.RUNNING)}
# What the deploy tasks of this process changed: `deploy.X` runs the tasks of its dependencies first
# (pre=), each a run of its own, and says at its end whether the whole command changed anything.
changed_in_process = []


def service_task(name, pre, runs=False):
    def deploy_service(c, no_cache=False):
        env, result = ensure_services(c, [name], no_cache=no_cache)
        changed_in_process.extend(s["id"] for s in result["steps"] if s.get("outcome") not in UNCHANGED)
        outcome = outcome_of(result, StepKind.DEPLOY, name)
        ref = env.ctx.known_refs().get(name) or "no image"
        line = f"{name}: {outcome} ({ref}) in {result['wall_seconds']:.1f} s"
        if not changed_in_process:
            line += "; nothing changed"
        env.ctx.console.line(line)

    deploy_service.__name__ = f"deploy_{name.replace('-', '_')}"
    what = f"Deploy {name}, then run its `run:` step" if runs else f"Build, load and roll out {name}"
    deploy_service.__doc__ = what + (f" (after ensuring {', '.join(t.name for t in pre)})." if pre else ".")
    return Task(cli.reports_errors(deploy_service), name=name, pre=pre, help=HELP)


def make_collection(stack) -> Collection:
    """deploy.<service> for each service of the stack, each with its dependencies as pre= tasks."""
    ns = Collection("deploy")
    if stack is None:
        return ns
    made = {}
    for name in stack.order():
        made[name] = service_task(
            name,
            [made[d] for d in stack.services[name].depends_on],
            runs=stack.services[name].run is not None,
        )
        ns.add_task(made[name])
    return ns
