"""`invoke e2e.*`: the whole environment and the suite around it."""

import json
import os
import shlex

from invoke import Collection, task

from . import doctor
from .libs import cli, report, runs
from .libs.environment import STRATEGIES
from .libs.errors import Interrupted, KindlingError
from .libs.scheduler import FAILED, StepFailed

SETUP_HELP = {
    "strategy": f"How steps are scheduled: {', '.join(STRATEGIES)} (default pipelined: each step "
                "as soon as its inputs are ready).",
    "jobs": "At most this many image builds at once (default 4).",
    "no-cache": "Rebuild every image even when one with the same inputs exists.",
    "memory-budget": "Memory the concurrent builds may declare together, e.g. 12GiB "
                     "(default: three quarters of available memory).",
    "coverage": "Coverage mode (also E2E_COVERAGE=true): coverage build args, /coverdata mounts, GOCOVERDIR.",
    "registry": "Registry mode (also IMAGE_REGISTRY, or the stack's registry:): push images to HOST[:PORT] "
                "and let the nodes pull them, instead of kind load.",
    "context": "With a registry: deploy to this kubeconfig context of an existing cluster (no Kind cluster).",
    "kubeconfig": "With a registry: the kubeconfig of an existing cluster (default: KUBECONFIG).",
    "images-from": "Load the image archives (*.tar) in this folder first, e.g. CI artifacts; with IMAGE_TAG "
                   "they are used instead of building, and teardown never removes them.",
    "output": "text (default) or json: the run report as JSON on stdout, progress on stderr.",
    "load-via": "archive (default: podman save + kind load) or registry: push to a registry container "
                "beside Kind (kind's local-registry pattern), so a reload sends only changed layers.",
    "recreate": "Delete and recreate the stack's Kind cluster when kind lists it but it is not usable "
                "(nodes stopped, API server not answering). A cluster kindling created is recreated anyway.",
    "dry-run": "Print the commands instead of running them.",
}


def _environment(c, strategy="pipelined", jobs=None, no_cache=False, memory_budget="", coverage=False,
                 dry_run=False, registry="", context="", kubeconfig="", images_from="", output="text",
                 load_via="", recreate=False):
    env = cli.environment(c, dry_run=dry_run, no_cache=no_cache, jobs=jobs,
                          strategy=strategy, memory_budget=cli.parse_budget(memory_budget), coverage=coverage,
                          registry=registry, output=output, context=context or None,
                          kubeconfig=kubeconfig or None, load_via=load_via or None, recreate=recreate)
    env.output = output
    if (context or kubeconfig) and not env.registry_mode:
        raise KindlingError("--context/--kubeconfig deploy to an existing cluster, which cannot receive "
                            "`kind load`: also give --registry (or IMAGE_REGISTRY)")
    if images_from:
        for ref in env.import_archives(images_from):
            env.console.line(f"loaded {ref} from {images_from}")
    return env


def _print_report(env, result):
    if getattr(env, "output", "text") == "json":
        print(json.dumps(result, indent=2, sort_keys=True))
        return
    env.console.line(report.table(result))
    env.console.line(report.service_table(result, [(n, env.known_refs().get(n, "")) for n in env.stack.order()]))


def _run_graph(env, steps, label, keep_cluster):
    """Run setup steps (and maybe the suite); on failure delete a cluster this run created, unless kept."""
    doctor.require_ready(env)
    existed = env.dry_run or env.cluster.exists()
    env.console.line(f"{label}: stack {env.stack.name} on cluster {env.stack.cluster_name} "
                     f"({env.strategy}); run folder {env.run.folder}")
    try:
        return env.execute(steps, label=label)
    except (StepFailed, Interrupted) as exc:
        if env.last_report:
            env.console.line(report.table(env.last_report))
        suite_failed = isinstance(exc, StepFailed) and any(
            r.id == "test" and r.status == FAILED for r in exc.records)
        if suite_failed and not env.dry_run:
            env.runner.resume()
            where = env.write_diagnostics("suite")
            env.console.line(f"suite failed: diagnostics in {where}")
        keep = keep_cluster or cli.truthy(os.environ.get("KEEP_CLUSTER", ""))
        if not existed and not keep and not env.dry_run:
            env.runner.resume()
            if any(line.startswith("deleted cluster") for line in env.teardown(keep_images=True)):
                env.console.line(f"deleted cluster {env.stack.cluster_name} that this run created "
                                 "(keep it next time with --keep-cluster or KEEP_CLUSTER=1)")
        elif not env.dry_run and env.cluster_state.kubeconfig.exists():
            env.console.line(f"cluster kept: KUBECONFIG={env.cluster_state.kubeconfig}")
        if isinstance(exc, Interrupted):
            raise
        error = KindlingError(f"{label} failed\n" + env.failure_details(exc.records))
        if suite_failed:
            error.exit_code = _suite_exit_code(exc.records)
        raise error from None


def _suite_exit_code(records) -> int:
    for record in records:
        if record.id == "test" and record.status == FAILED:
            code = record.extra.get("exit_code")
            if code:
                return code
    return 1


@task(help={**SETUP_HELP, "keep-cluster": "On failure keep a cluster this run created (also KEEP_CLUSTER=1)."})
@cli.reports_errors
def setup(c, strategy="pipelined", jobs=None, no_cache=False, keep_cluster=False, memory_budget="",
          coverage=False, dry_run=False, registry="", context="", kubeconfig="", images_from="", output="text",
          load_via="", recreate=False):
    """Create the cluster, build and load the images, deploy every service in dependency order."""
    env = _environment(c, strategy, jobs, no_cache, memory_budget, coverage, dry_run, registry, context,
                       kubeconfig, images_from, output, load_via, recreate=recreate)
    result = _run_graph(env, env.setup_steps(env.stack.order()), "e2e.setup", keep_cluster)
    _print_report(env, result)
    if not env.existing_cluster:
        env.console.line(f"kubeconfig: {env.cluster_state.kubeconfig}")


@task(
    help={
        "keep-images": "Keep the images kindling built (the next setup reuses them).",
        "dry-run": "Print the commands instead of running them.",
        "registry": SETUP_HELP["registry"],
        "context": "With a registry: the existing cluster's context; only the objects kindling applied "
                   "are deleted, never the cluster.",
        "kubeconfig": SETUP_HELP["kubeconfig"],
    }
)
@cli.reports_errors
def teardown(c, keep_images=False, dry_run=False, registry="", context="", kubeconfig=""):
    """Delete the cluster, its kubeconfig, leftover archives and the images this stack's runs built."""
    env = _environment(c, dry_run=dry_run, registry=registry, context=context, kubeconfig=kubeconfig)
    for line in env.teardown(keep_images=keep_images) or ["nothing to tear down"]:
        env.console.line(line)


@task(
    help={
        "args": "Extra arguments for the test command, split like a shell would "
                "(or pass them after --: invoke e2e.test -- --focus=Foo).",
        "coverage": "Coverage mode: also collect coverage data after the suite.",
    }
)
@cli.reports_errors
def test(c, args="", coverage=False):
    """Run the stack's test command against the environment that is up; exit with its exit code."""
    env = _environment(c, coverage=coverage)
    if not env.cluster.exists():
        raise KindlingError(f"cluster {env.stack.cluster_name} does not exist: run `invoke e2e.setup` first")
    extra = _extra_args(c, args)
    try:
        env.execute([env.suite_step(extra)], label="e2e.test")
    except StepFailed as exc:
        error = KindlingError("e2e.test: the suite failed\n" + env.failure_details(exc.records))
        error.exit_code = _suite_exit_code(exc.records)
        raise error from None
    finally:
        if env.coverage:
            env.collect_coverage()


@task(
    help={
        **{k: v for k, v in SETUP_HELP.items() if k != "dry-run"},
        "args": "Extra arguments for the test command (or after --).",
        "no-keep": "On failure delete the cluster too (default: keep it for debugging).",
        "keep-images": "After a passing suite, keep the built images (the next run reuses them).",
    }
)
@cli.reports_errors
def run(c, strategy="pipelined", jobs=None, no_cache=False, memory_budget="", coverage=False, args="",
        no_keep=False, keep_images=False, registry="", context="", kubeconfig="", images_from="", output="text",
        load_via="", recreate=False):
    """Set up, run the suite, tear down on success; on failure keep the cluster and write diagnostics."""
    env = _environment(c, strategy, jobs, no_cache, memory_budget, coverage, False, registry, context,
                       kubeconfig, images_from, output, load_via, recreate=recreate)
    if env.stack.test is None:
        raise KindlingError(f"{env.stack.path}: test: the stack has no `test:` section")
    steps = env.setup_steps(env.stack.order())
    steps.append(env.suite_step(_extra_args(c, args), needs=[s.id for s in steps if s.id.startswith("deploy:")]))
    try:
        result = _run_graph(env, steps, "e2e.run", keep_cluster=not no_keep)
    finally:
        if env.coverage and not env.dry_run and env.cluster.exists():
            env.runner.resume()
            env.collect_coverage()
    _print_report(env, result)
    for line in env.teardown(keep_images=keep_images):
        env.console.line(line)


@task(
    help={
        "run": "Run id or run folder (default: the newest run that has a run.json).",
        "html": "Where to write the HTML page (default: report.html in the run folder).",
    },
    optional=["run"],
    name="report",
)
@cli.reports_errors
def report_(c, run=None, html=""):
    """Print a run's steps as a table with a timeline, and write a self-contained HTML report."""
    stack = cli.load(c, check_files=False)
    home = runs.state_home(stack)
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


collection = Collection("e2e")
for _task in (setup, teardown, test, run, report_):
    collection.add_task(_task)
