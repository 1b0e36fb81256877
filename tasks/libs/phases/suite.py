"""The suite phase: the stack's test command run against the environment, and coverage."""

import shutil
from pathlib import Path

from .. import hostports, render
from ..context import RunContext
from ..errors import KindlingError
from ..plan import Outcome, StepKind
from . import cluster, deploy


def suite_env(ctx: RunContext) -> dict:
    """What the suite is told about the environment (documented in the README)."""
    stack = ctx.stack
    docs = []
    for name in stack.services:
        try:
            docs += deploy.rendered(ctx, name)
        except KindlingError:
            continue
    env = {
        "KUBECONFIG": str(ctx.cluster_state.kubeconfig),
        "E2E_CLUSTER": stack.cluster_name,
        "E2E_NAMESPACE": stack.namespace,
        "E2E_STACK_NAME": stack.name,
        "E2E_RUN_DIR": str(ctx.run.folder),
    }
    for name, ref in ctx.known_refs().items():
        env[f"E2E_IMAGE_{render.env_name(name)}"] = ref
    kind_config = cluster.kind_config(ctx)
    # Each named port as E2E_URL_<SERVICE>_<PORT>; a Service's own variable wins a clash of names.
    for (service, port), url in hostports.port_endpoints(docs, kind_config).items():
        env[f"E2E_URL_{render.env_name(service)}_{render.env_name(port)}"] = url
    probe = None if ctx.dry_run else hostports.answers
    for service, url in hostports.endpoints(docs, kind_config, probe).items():
        env[f"E2E_URL_{render.env_name(service)}"] = url
    if ctx.settings.coverage:
        env["E2E_COVERDIR"] = str(cluster.coverage_dir(ctx))
    return env


def run_suite(ctx: RunContext, extra_args=()) -> Outcome:
    spec = ctx.stack.test
    if spec is None:
        raise KindlingError(
            f"{ctx.stack.path}: test: the stack has no `test:` section; add "
            "`test: {command: [go, test, ./test/e2e/...]}`"
        )
    argv = [*spec.command, *extra_args]
    env = {**spec.env, **suite_env(ctx)}
    for name, service in ctx.stack.services.items():
        if service.run is not None and service.run.file:  # a run step's file, kept from the run that ran it
            ctx.cluster_state.restore_output(name, ctx.run.folder / service.run.file)
    log = ctx.log(StepKind.TEST)
    ctx.console.line(f"[test] {' '.join(argv)} (in {spec.workdir}; log {log})")
    ctx.runner.run(
        argv, env=env, cwd=spec.workdir, log_path=log, timeout=spec.timeout, stream=ctx.console.line
    )
    return Outcome.PASSED


def collect_coverage(ctx: RunContext) -> Path | None:
    """Scale covered workloads to zero so Go flushes its counters, then copy them out."""
    order = ctx.stack.order()
    docs = {name: deploy.rendered(ctx, name) for name in order}
    covered = [w for name in order for w in render.covered_workloads(docs[name])]
    if not covered:
        return None
    log = ctx.run.log_path("coverage")
    # Scaled to zero, these services are no longer as deployed: the next setup rolls them out.
    scaled = {name for _, name, _, _ in covered}
    for service in order:
        if scaled & {name for _, name, _ in render.readiness_targets(docs[service])}:
            ctx.cluster_state.record_deployed(service, None)
    for kind, name, namespace, labels in covered:
        ctx.kubectl.run("scale", f"{kind.lower()}/{name}", "--replicas=0", "-n", namespace, log_path=log)
        if labels:
            selector = ",".join(f"{k}={v}" for k, v in labels.items())
            ctx.kubectl.run(
                "wait",
                "--for=delete",
                "pod",
                "-l",
                selector,
                "-n",
                namespace,
                "--timeout=120s",
                log_path=log,
                check=False,
                timeout=150,
            )
    target = ctx.run.folder / "coverdata"
    if not ctx.dry_run:
        shutil.copytree(cluster.coverage_dir(ctx), target, dirs_exist_ok=True)
    ctx.console.line(
        f"coverage data: {target}\n  profile: go tool covdata textfmt -i={target} "
        f"-o {ctx.run.folder / 'coverage.out'}"
    )
    return target
