"""`invoke e2e.*`: the whole environment and the suite around it."""

import json
import shlex

from invoke import Collection, task

from . import doctor
from .libs import cli, report, runs, taskoptions
from .libs.environment import deploy_ids, suite_exit_code
from .libs.errors import Interrupted, KindlingError
from .libs.phases import deploy, images, suite
from .libs.phases import teardown as teardown_phase
from .libs.scheduler import StepFailed
from .libs.settings import process_environment


def _environment(c, **given):
    options = {**taskoptions.defaults(*taskoptions.SETUP, "dry_run", "keep_cluster"), **given}
    env = cli.environment(
        c,
        dry_run=options["dry_run"],
        no_cache=options["no_cache"],
        jobs=options["jobs"],
        strategy=options["strategy"],
        memory_budget=cli.parse_budget(options["memory_budget"]),
        coverage=options["coverage"],
        registry=options["registry"],
        output=options["output"],
        context=options["context"] or None,
        kubeconfig=options["kubeconfig"] or None,
        load_via=options["load_via"] or None,
        recreate=options["recreate"],
        keep_cluster=options["keep_cluster"],
    )
    if options["images_from"]:
        for ref in images.import_archives(env.ctx, options["images_from"]):
            env.ctx.console.line(f"loaded {ref} from {options['images_from']}")
    return env


def _print_report(env, result, output):
    ctx = env.ctx
    if output == "json":
        print(json.dumps(result, indent=2, sort_keys=True))
        return
    ctx.console.line(report.table(result))
    refs = ctx.known_refs()
    ctx.console.line(report.service_table(result, [(n, refs.get(n, "")) for n in ctx.stack.order()]))


def _run_graph(env, steps, label):
    """Run setup steps (and maybe the suite); on failure delete a cluster this run created, unless
    the settings keep it."""
    ctx = env.ctx
    doctor.require_ready(ctx)
    existed = ctx.dry_run or ctx.cluster.exists()
    ctx.console.line(
        f"{label}: stack {ctx.stack.name} on cluster {ctx.stack.cluster_name} "
        f"({ctx.settings.strategy.value}); run folder {ctx.run.folder}"
    )
    try:
        return env.execute(steps, label=label)
    except (StepFailed, Interrupted) as exc:
        if env.last_report:
            ctx.console.line(report.table(env.last_report))
        if isinstance(exc, StepFailed) and suite_exit_code(exc.records) and not ctx.dry_run:
            ctx.runner.resume()
            where = deploy.write_diagnostics(ctx, "suite")
            ctx.console.line(f"suite failed: diagnostics in {where}")
        if not existed and not ctx.settings.keep_cluster and not ctx.dry_run:
            ctx.runner.resume()
            if teardown_phase.teardown(ctx, keep_images=True).cluster_deleted:
                ctx.console.line(
                    f"deleted cluster {ctx.stack.cluster_name} that this run created "
                    "(keep it next time with --keep-cluster or KEEP_CLUSTER=1)"
                )
        elif not ctx.dry_run and ctx.cluster_state.kubeconfig.exists():
            ctx.console.line(f"cluster kept: KUBECONFIG={ctx.cluster_state.kubeconfig}")
        raise


@taskoptions.task(*taskoptions.SETUP, "keep_cluster", "dry_run")
@cli.reports_errors
def setup(c, **options):
    """Create the cluster, build and load the images, deploy every service in dependency order."""
    env = _environment(c, **options)
    ctx = env.ctx
    result = _run_graph(env, env.setup_steps(ctx.stack.order()), "e2e.setup")
    _print_report(env, result, options.get("output", "text"))
    if not ctx.settings.delivery.existing_cluster:
        ctx.console.line(f"kubeconfig: {ctx.cluster_state.kubeconfig}")


@taskoptions.task(
    "keep_images",
    "dry_run",
    "registry",
    "context",
    "kubeconfig",
    help={
        "context": "With a registry: the existing cluster's context; only the objects kindling applied "
        "are deleted, never the cluster."
    },
)
@cli.reports_errors
def teardown(c, keep_images, **options):
    """Delete the cluster, its kubeconfig, leftover archives and the images this stack's runs built."""
    ctx = _environment(c, **options).ctx
    result = teardown_phase.teardown(ctx, keep_images=keep_images)
    for line in result.lines(ctx.stack.cluster_name) or ["nothing to tear down"]:
        ctx.console.line(line)


@taskoptions.task(
    "args", "coverage", help={"coverage": "Coverage mode: also collect coverage data after the suite."}
)
@cli.reports_errors
def test(c, args, coverage):
    """Run the stack's test command against the environment that is up; exit with its exit code."""
    env = _environment(c, coverage=coverage)
    ctx = env.ctx
    if not ctx.cluster.exists():
        raise KindlingError(f"cluster {ctx.stack.cluster_name} does not exist: run `invoke e2e.setup` first")
    try:
        env.execute([env.suite_step(_extra_args(c, args))], label="e2e.test")
    finally:
        if ctx.settings.coverage:
            suite.collect_coverage(ctx)


@taskoptions.task(
    *taskoptions.SETUP,
    "args",
    "no_keep",
    "keep_images",
    help={"keep-images": "After a passing suite, keep the built images (the next run reuses them)."},
)
@cli.reports_errors
def run(c, args, no_keep, keep_images, **options):
    """Set up, run the suite, tear down on success; on failure keep the cluster and write diagnostics."""
    env = _environment(c, keep_cluster=not no_keep, **options)
    ctx = env.ctx
    if ctx.stack.test is None:
        raise KindlingError(f"{ctx.stack.path}: test: the stack has no `test:` section")
    steps = env.setup_steps(ctx.stack.order())
    steps.append(env.suite_step(_extra_args(c, args), needs=deploy_ids(steps)))
    try:
        result = _run_graph(env, steps, "e2e.run")
    finally:
        if ctx.settings.coverage and not ctx.dry_run and ctx.cluster.exists():
            ctx.runner.resume()
            suite.collect_coverage(ctx)
    _print_report(env, result, options.get("output", "text"))
    for line in teardown_phase.teardown(ctx, keep_images=keep_images).lines(ctx.stack.cluster_name):
        ctx.console.line(line)


@task(
    help={
        "run": "Run id or run folder (default: the newest run that has a run.json).",
        "html": "Where to write the HTML page (default: report.html in the run folder).",
        "list": "List the stack's runs (id, task, status, wall time, commands) instead.",
    },
    optional=["run"],
    name="report",
)
@cli.reports_errors
def report_(c, run=None, html="", list=False):
    """Print a run's steps as a table with a timeline, and write a self-contained HTML report."""
    stack = cli.load(c, check_files=False)
    home = runs.state_home(stack, process_environment())
    if list:
        listed = runs.list_runs(home)
        print(f"{'run':<44} {'task':<22} {'status':<12} {'wall':>8} {'commands':>9}")
        for run_id, data in listed:
            commands = (data.get("commands") or {}).get("total", "-")
            print(
                f"{run_id:<44} {str(data.get('task', '?'))[:22]:<22} {data.get('status', '?'):<12} "
                f"{data.get('wall_seconds', 0):7.1f}s {commands:>9}"
            )
        print(f"{len(listed)} run(s) under {home / 'runs'} (at most the newest KINDLING_KEEP_RUNS are kept)")
        return
    path = runs.find_run(home, run)
    data = runs.read_json(path / "run.json", None)
    if data is None:
        raise KindlingError(f"{path / 'run.json'}: missing or unreadable")
    print(report.table(data))
    target = html or str(path / "report.html")
    with open(target, "w", encoding="utf-8") as handle:
        handle.write(report.html_page(data))
    print(f"html: {target}")


def _extra_args(c, args: str) -> list:
    """--args "..." plus whatever follows a standalone `--` on the command line."""
    return shlex.split(args or "") + shlex.split(getattr(c, "remainder", "") or "")


ns = Collection("e2e")
for _task in (setup, teardown, test, run, report_):
    ns.add_task(_task)
