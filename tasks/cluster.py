"""`invoke cluster.*`: the stack's Kind cluster."""

from invoke import Collection, task

from .libs import cli, imagerefs
from .libs.errors import KindlingError
from .libs.phases import cluster as cluster_phase
from .libs.phases import teardown as teardown_phase


@task(
    help={
        "dry-run": "Print the commands instead of running them.",
        "recreate": "Delete and recreate the cluster when kind lists it but it is not usable.",
    }
)
@cli.reports_errors
def create(c, dry_run=False, recreate=False):
    """Create the stack's Kind cluster, or reuse it if it exists and is usable; write its kubeconfig."""
    ctx = cli.environment(c, dry_run=dry_run, recreate=recreate).ctx
    outcome = cluster_phase.ensure_cluster(ctx)
    ctx.console.line(
        f"cluster {ctx.stack.cluster_name}: {outcome.value}; kubeconfig {ctx.cluster_state.kubeconfig}"
    )


@task(help={"dry-run": "Print the commands instead of running them."})
@cli.reports_errors
def delete(c, dry_run=False):
    """Delete the stack's Kind cluster and its kubeconfig (images are kept)."""
    ctx = cli.environment(c, dry_run=dry_run).ctx
    result = teardown_phase.teardown(ctx, keep_images=True)
    for line in result.lines(ctx.stack.cluster_name) or ["nothing to delete"]:
        ctx.console.line(line)


@task
@cli.reports_errors
def status(c):
    """Say whether the cluster exists, where its kubeconfig is, and what each node holds."""
    ctx = cli.environment(c).ctx
    if not ctx.cluster.exists():
        ctx.console.line(f"cluster {ctx.stack.cluster_name}: absent")
        return
    problem = ctx.cluster.problem(ctx.kubectl.api_problem)
    if problem:
        raise KindlingError(
            f"cluster {ctx.stack.cluster_name}: listed by kind but not usable: {problem}\n"
            "  fix: `invoke cluster.delete` then `invoke cluster.create` (or e2e.setup --recreate)"
        )
    ctx.console.line(
        f"cluster {ctx.stack.cluster_name}: running, API server ready; "
        f"kubeconfig {ctx.cluster_state.kubeconfig}"
    )
    deployed = ctx.cluster_state.deployed()
    for name in ctx.stack.order():
        info = deployed.get(name)
        ctx.console.line(f"  {name:<24} {info['image'] if info else 'not deployed'}")
    stack = ctx.stack
    repositories = {
        imagerefs.repository(stack.project, service, ctx.registry, stack.image_name)
        for service in stack.services
    }
    for node, names in ctx.snapshot.node_images().items():
        ours = sorted(n for n in names if imagerefs.parse(n).repository in repositories)
        ctx.console.line(f"  node {node}: {len(names)} images, {len(ours)} of this stack")


ns = Collection("cluster")
for _task in (create, delete, status):
    ns.add_task(_task)
