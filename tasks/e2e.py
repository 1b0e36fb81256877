"""`invoke e2e.*`: the whole environment: set up, tear down."""

import os

from invoke import Collection, task

from . import doctor
from .libs import cli, report
from .libs.environment import STRATEGIES
from .libs.errors import Interrupted, KindlingError
from .libs.scheduler import StepFailed


@task(
    help={
        "strategy": f"How steps are scheduled: {', '.join(STRATEGIES)} (default pipelined: each step "
                    "as soon as its inputs are ready).",
        "jobs": "At most this many image builds at once (default 4).",
        "no-cache": "Rebuild every image even when one with the same inputs exists.",
        "keep-cluster": "On failure keep a cluster this run created (also KEEP_CLUSTER=1).",
        "memory-budget": "Memory the concurrent builds may declare together, e.g. 12GiB "
                         "(default: three quarters of available memory).",
        "dry-run": "Print the commands instead of running them.",
    }
)
@cli.reports_errors
def setup(c, strategy="pipelined", jobs=None, no_cache=False, keep_cluster=False, memory_budget="",
          dry_run=False):
    """Create the cluster, build and load the images, deploy every service in dependency order."""
    env = cli.environment(c, dry_run=dry_run or bool(c.config.run.dry), no_cache=no_cache, jobs=jobs,
                          strategy=strategy, memory_budget=cli.parse_budget(memory_budget))
    doctor.require_ready(env)
    existed = env.dry_run or env.cluster.exists()
    env.console.line(f"setting up stack {env.stack.name} on cluster {env.stack.cluster_name} "
                     f"({strategy}); run folder {env.run.folder}")
    try:
        result = env.execute(env.setup_steps(env.stack.order()), label="e2e.setup")
    except (StepFailed, Interrupted) as exc:
        keep = keep_cluster or cli.truthy(os.environ.get("KEEP_CLUSTER", ""))
        if env.last_report:
            env.console.line(report.table(env.last_report))
        if not existed and not keep and not env.dry_run:
            env.runner.resume()
            env.teardown(keep_images=True)
            env.console.line(f"deleted cluster {env.stack.cluster_name} that this run created "
                             "(keep it next time with --keep-cluster or KEEP_CLUSTER=1)")
        if isinstance(exc, Interrupted):
            raise
        raise KindlingError("e2e.setup failed\n" + env.failure_details(exc.records)) from None
    env.console.line(report.table(result))
    env.console.line(report.service_table(result, [(n, env.known_refs().get(n, "")) for n in env.stack.order()]))
    env.console.line(f"kubeconfig: {env.cluster_state.kubeconfig}")


@task(
    help={
        "keep-images": "Keep the images kindling built (the next setup reuses them).",
        "dry-run": "Print the commands instead of running them.",
    }
)
@cli.reports_errors
def teardown(c, keep_images=False, dry_run=False):
    """Delete the cluster, its kubeconfig, leftover archives and the images this stack's runs built."""
    env = cli.environment(c, dry_run=dry_run or bool(c.config.run.dry))
    for line in env.teardown(keep_images=keep_images) or ["nothing to tear down"]:
        env.console.line(line)


collection = Collection("e2e")
collection.add_task(setup)
collection.add_task(teardown)
