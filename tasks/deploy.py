"""`invoke deploy.<service>`: a partial redeploy of one service.

The tasks are generated from the stack file. Each names the services it depends on
as Invoke `pre=` tasks, so they are ensured first; ensuring a service that is up
to date (same image inputs, same rendered manifests, workloads ready) costs a few
quick checks and changes nothing.
"""

from invoke import Collection, Task

from .libs import cli
from .libs.errors import KindlingError
from .libs.scheduler import StepFailed

HELP = {
    "no-cache": "Rebuild this service's image even if its inputs are unchanged.",
}


def ensure_services(c, names, no_cache=False):
    env = cli.environment(c, no_cache=no_cache)
    unknown = [n for n in names if n not in env.stack.services]
    if unknown:
        raise KindlingError(f"{env.stack.path}: no service named {', '.join(unknown)}")
    try:
        result = env.execute(env.setup_steps(names), label="deploy " + ",".join(names))
    except StepFailed as exc:
        raise KindlingError("deploy failed\n" + env.failure_details(exc.records)) from None
    return env, result


def service_task(name, pre):
    def deploy_service(c, no_cache=False):
        env, result = ensure_services(c, [name], no_cache=no_cache)
        outcome = next(s["outcome"] for s in result["steps"] if s["id"] == f"deploy:{name}")
        env.console.line(f"{name}: {outcome} ({env.known_refs().get(name)}) in {result['wall_seconds']:.1f} s")

    deploy_service.__name__ = f"deploy_{name.replace('-', '_')}"
    deploy_service.__doc__ = (f"Build, load and roll out {name}"
                              + (f" (after ensuring {', '.join(t.name for t in pre)})." if pre else "."))
    return Task(cli.reports_errors(deploy_service), name=name, pre=pre, help=HELP)


def make_collection(stack) -> Collection:
    collection = Collection("deploy")
    if stack is None:
        return collection
    made = {}
    for name in stack.order():
        made[name] = service_task(name, [made[d] for d in stack.services[name].depends_on])
        collection.add_task(made[name])
    return collection
