"""`invoke cluster.*`: the stack's Kind cluster."""

from invoke import Collection, task

from .libs import cli
from .libs.errors import KindlingError


@task(help={"dry-run": "Print the commands instead of running them.",
            "recreate": "Delete and recreate the cluster when kind lists it but it is not usable."})
@cli.reports_errors
def create(c, dry_run=False, recreate=False):
    """Create the stack's Kind cluster, or reuse it if it exists and is usable; write its kubeconfig."""
    env = cli.environment(c, dry_run=dry_run, recreate=recreate)
    outcome = env.ensure_cluster()
    env.console.line(f"cluster {env.stack.cluster_name}: {outcome}; kubeconfig {env.cluster_state.kubeconfig}")


@task(help={"dry-run": "Print the commands instead of running them."})
@cli.reports_errors
def delete(c, dry_run=False):
    """Delete the stack's Kind cluster and its kubeconfig (images are kept)."""
    env = cli.environment(c, dry_run=dry_run)
    for line in env.teardown(keep_images=True) or ["nothing to delete"]:
        env.console.line(line)


@task
@cli.reports_errors
def status(c):
    """Say whether the cluster exists, where its kubeconfig is, and what each node holds."""
    env = cli.environment(c)
    if not env.cluster.exists():
        env.console.line(f"cluster {env.stack.cluster_name}: absent")
        return
    problem = env.cluster.problem()
    if problem:
        raise KindlingError(f"cluster {env.stack.cluster_name}: listed by kind but not usable: {problem}\n"
                            "  fix: `invoke cluster.delete` then `invoke cluster.create` (or e2e.setup --recreate)")
    env.console.line(f"cluster {env.stack.cluster_name}: running, API server ready; "
                     f"kubeconfig {env.cluster_state.kubeconfig}")
    deployed = env.cluster_state.deployed()
    for name in env.stack.order():
        info = deployed.get(name)
        env.console.line(f"  {name:<24} {info['image'] if info else 'not deployed'}")
    for node, names in env.cluster.node_images(env.engine).items():
        ours = sorted(n for n in names if f"/{env.stack.project}/" in n)
        env.console.line(f"  node {node}: {len(names)} images, {len(ours)} of this stack")


collection = Collection("cluster")
for _task in (create, delete, status):
    collection.add_task(_task)
