"""The run phase: a service's `run:` step. Its objects are applied and waited for as any deploy's,
then its command runs on the host (or its Job in the cluster); what it prints may become a
ConfigMap in the stack's namespace and a file under the run folder (runspec.py).

It is the deploy step of its service, not a step kind of its own: the services that use its output
depend on it as on any service, so `deploy.<service>` pre= chains, the strategies and run.json need
nothing new; only the outcome ("ran") tells it apart. It runs again when its inputs changed: its
command or Job, its objects, or the deployed records of the services it depends on.
"""

import os
from pathlib import Path

from .. import readiness, render, runs
from ..context import RunContext
from ..errors import CommandFailed, KindlingError, NotReady
from ..plan import Outcome, StepKind
from ..procs.masking import SECRET_NAME_RE, display
from ..procs.runner import tail
from ..stack import runspec
from . import deploy, suite

JOB_LOGS_TIMEOUT = 60  # seconds for `kubectl logs` of a finished Job


def ensure_ran(ctx: RunContext, name) -> Outcome:
    spec = ctx.stack.services[name].run
    docs = deploy.rendered(ctx, name)
    targets = render.readiness_targets(docs)
    job_docs = deploy.rendered(ctx, name, [runspec.job_object(spec.job)]) if spec.job else []
    wanted = {**deploy.deploy_inputs(ctx, name, docs), "run_inputs": _inputs(ctx, name, job_docs)}
    if deploy.up_to_date(ctx, name, wanted, docs, targets) and _outputs_present(ctx, name):
        if spec.file:
            ctx.cluster_state.restore_output(name, ctx.run.folder / spec.file)
        return Outcome.UP_TO_DATE
    applied = deploy.apply_and_wait(ctx, name, docs, targets)
    if not ctx.dry_run:
        ctx.cluster_state.record_deployed(name, None)  # not as deployed until the step has run
    log = ctx.log(StepKind.DEPLOY, name)
    if spec.command:
        output = _run_command(ctx, name, log)
    else:
        output = _run_job(ctx, name, job_docs[0], log)
        applied += deploy.applied_objects(job_docs)
    if ctx.dry_run:
        if spec.configmap:
            ctx.console.line(f"[dry-run] {name}: the output would become ConfigMap {spec.configmap}")
        if spec.file:
            ctx.console.line(f"[dry-run] {name}: the output would be written to {ctx.run.folder / spec.file}")
        return Outcome.RAN
    data = None
    if spec.configmap:
        data = _apply_configmap(ctx, name, output, log)
        applied.append(["ConfigMap", spec.configmap, ctx.stack.namespace])
    if spec.file:
        runs.write_private(_output_path(ctx, spec.file), output)
        ctx.cluster_state.save_output(name, output)
    digest = runspec.output_digest(data, output if spec.file else None)
    ctx.cluster_state.record_deployed(
        name, {**wanted, "run": ctx.run.id, "objects": applied, "output": digest}
    )
    return Outcome.RAN


def _inputs(ctx: RunContext, name, job_docs) -> str:
    service = ctx.stack.services[name]
    deployed = ctx.cluster_state.deployed()
    dependencies = {
        dep: {
            key: (deployed.get(dep) or {}).get(key)
            for key in ("image", "manifests", "run_inputs", "output", "run")
        }
        for dep in service.depends_on
    }
    return runspec.inputs_digest(service.run, job_docs, dependencies, roots=(ctx.stack.source,))


def _outputs_present(ctx: RunContext, name) -> bool:
    """What the step made is still there: its ConfigMap (one query; a namespace deleted by hand
    takes it along) and its kept output file."""
    spec = ctx.stack.services[name].run
    if spec.configmap and ctx.kubectl.get_json(f"configmap/{spec.configmap}", ctx.stack.namespace) is None:
        return False
    return not spec.file or (ctx.cluster_state.outputs / f"{name}.out").is_file()


def command_env(ctx: RunContext, name) -> dict:
    """The run's own `env`, then what the suite is told (KUBECONFIG of the cluster, never the user's;
    E2E_NAMESPACE, E2E_CLUSTER, E2E_RUN_DIR, E2E_IMAGE_<SERVICE>)."""
    spec = ctx.stack.services[name].run
    ctx.runner.add_secrets(v for k, v in spec.env.items() if SECRET_NAME_RE.search(k))
    return {**spec.env, **{k: v for k, v in suite.suite_env(ctx).items() if v}}


def _run_command(ctx: RunContext, name, log: Path) -> str:
    """Run the command in the stack file's folder; its stdout is the output, its stderr is kept in
    the step's log (masked) and, when it fails, its last lines are in the error."""
    spec = ctx.stack.services[name].run
    env = command_env(ctx, name)
    shown = display(spec.command, secrets=ctx.runner.secrets)
    ctx.console.line(f"[run] {name}: {shown} (in {spec.cwd}; log {log})")
    try:
        result = ctx.runner.run(list(spec.command), env=env, cwd=spec.cwd, timeout=spec.timeout, check=False)
    except CommandFailed as exc:  # timed out, stopped, or not installed
        _log(log, f"$ {shown}\n{ctx.mask(exc.tail)}\n")
        if ctx.runner.stopping:
            raise
        raise KindlingError(f"{name}: run.command: {ctx.mask(str(exc))}\n  log: {log}") from None
    _log(log, f"$ {shown}\n--- stderr\n{ctx.mask(result.stderr)}\n--- stdout\n{ctx.mask(result.stdout)}\n")
    if result.exit_code != 0:
        last = ctx.mask(tail(result.stderr) or tail(result.stdout) or "(no output)")
        raise KindlingError(
            f"{name}: run.command failed with exit code {result.exit_code}: {shown}\n"
            "  stderr (last lines):\n" + _indent(last) + f"\n  log: {log}"
        )
    return result.stdout


def _run_job(ctx: RunContext, name, job: dict, log: Path) -> str:
    """Replace the Job (its template is immutable), wait for it to complete, and return its logs."""
    spec = ctx.stack.services[name].run
    job_name, namespace = job["metadata"]["name"], job["metadata"].get("namespace") or ctx.stack.namespace
    folder = ctx.run.folder / "rendered"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.run-job.yaml"
    runs.write_private(path, render.dump([job]))
    kubectl = ctx.kubectl
    try:
        kubectl.delete("job", job_name, namespace, log_path=log, cascade="foreground")
        kubectl.apply(path, log_path=log, timeout=ctx.timeout("apply"))
        ctx.snapshot.forget_workloads({namespace})
        if ctx.dry_run:
            return ""
        kubectl.wait_ready("Job", job_name, namespace, spec.timeout, log_path=log)
    except (CommandFailed, NotReady) as exc:
        if ctx.dry_run or ctx.runner.stopping:
            raise
        where = deploy.write_diagnostics(ctx, name, [("Job", job_name, namespace)])
        logs = ctx.mask(kubectl.logs("Job", job_name, namespace))
        _log(log, f"--- logs of job/{job_name}\n{logs}\n")
        raise KindlingError(
            f"{name}: run.job {job_name} did not complete: {ctx.mask(str(exc))}\n"
            "  its logs (last lines):\n" + _indent(tail(logs)) + f"\n  log: {log}\n  diagnostics: {where}"
        ) from None
    # The pod that succeeded: `kubectl logs job/NAME` reads the first pod in podutils.ByLogging order
    # (k8s.io/kubectl pkg/polymorphichelpers/logsforobject.go), which may be one that failed before a retry.
    pod = _succeeded_pod(ctx, job_name, namespace)
    result = kubectl.run(
        "logs",
        pod or f"job/{job_name}",
        "-n",
        namespace,
        check=False,
        mutating=False,
        timeout=JOB_LOGS_TIMEOUT,
    )
    _log(log, f"--- logs of {pod or 'job/' + job_name}\n{ctx.mask(result.stdout)}{ctx.mask(result.stderr)}\n")
    if result.exit_code != 0 and (spec.configmap or spec.file):
        raise KindlingError(
            f"{name}: run.job {job_name} completed, but its logs (the output) cannot be "
            f"read: {ctx.mask(result.stderr.strip())}\n  log: {log}"
        )
    return result.stdout


def _succeeded_pod(ctx: RunContext, job_name, namespace) -> str:
    """The newest pod of the Job that succeeded ("" when none is listed)."""
    job = ctx.kubectl.get_json(f"job/{job_name}", namespace) or {}
    selector = readiness.selector_of(job) if job else ""
    if not selector:
        return ""
    pods = (ctx.kubectl.get_json("pods", namespace, "-l", selector) or {}).get("items", [])
    done = [p for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"]
    done.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""))
    return done[-1]["metadata"]["name"] if done else ""


def _apply_configmap(ctx: RunContext, name, output: str, log: Path) -> dict:
    spec = ctx.stack.services[name].run
    source = "command's stdout" if spec.command else f"Job's logs ({spec.job.name})"
    try:
        data = runspec.configmap_data(output, spec.keys)
    except runspec.OutputError as exc:
        printed = "\n".join(output.splitlines()[:10]) or "(nothing)"
        raise KindlingError(
            f"{name}: run.configmap {spec.configmap}: the {source} cannot be the ConfigMap's data: {exc}\n"
            "  it printed (first lines):\n"
            + _indent(ctx.mask(printed))
            + f"\n  fix: print one YAML or JSON mapping of keys to strings, numbers or booleans on stdout "
            f"(messages go to stderr)\n  log: {log}"
        ) from None
    path = ctx.run.folder / "rendered" / f"{name}.run-configmap.yaml"
    path.parent.mkdir(exist_ok=True)
    runs.write_private(
        path, render.dump([runspec.configmap_object(spec.configmap, ctx.stack.namespace, data, name)])
    )
    ctx.kubectl.apply(path, log_path=log, timeout=ctx.timeout("apply"))
    return data


def _output_path(ctx: RunContext, relative: str) -> Path:
    path = ctx.run.folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _log(log: Path, text: str) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a", encoding="utf-8") as handle:
        handle.write(text)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
