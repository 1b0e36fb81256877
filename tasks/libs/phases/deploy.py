"""The deploy phase: a service's manifests rendered with this run's images, applied in order,
waited for, and diagnosed when they do not become ready."""

import copy
import re
from pathlib import Path

from .. import deploysources, hostports, imagerefs, render, runs
from ..context import RunContext
from ..errors import CommandFailed, KindlingError, NotReady
from ..plan import Outcome, StepKind
from ..procs import masking
from ..stack import runspec
from . import cluster

NODEPORT_TAKEN = re.compile(
    r'Service "(?P<service>[^"]+)" is invalid: spec\.ports\[\d+\]\.nodePort: '
    r"Invalid value: (?P<port>\d+): provided port is already allocated"
)


def rendered(ctx: RunContext, name, docs=None) -> list:
    """The service's objects (or the given ones of it, e.g. its run step's Job) with this run's image
    references and pull policies."""
    stack = ctx.stack
    service = stack.services[name]
    if docs is None:
        if name not in ctx.source_documents:
            # Once per run: a chart is rendered by one `helm template`, however often the run asks.
            ctx.source_documents[name] = deploysources.documents(
                service, stack.namespace, ctx.runner, log_path=ctx.log(StepKind.DEPLOY, name)
            )
        docs = ctx.source_documents[name]
    docs = copy.deepcopy(docs)
    refs = ctx.known_refs()
    used = {
        render.match_service(
            str(c.get("image", "")),
            stack.project,
            {s: 1 for s in stack.services},
            ctx.registry,
            stack.image_name,
        )
        for d in docs
        for c in render.containers(d)
    } - {None}
    unknown = sorted(s for s in used if s not in refs)
    if unknown:
        raise KindlingError(
            f"{name}: its manifests use the image of {', '.join(unknown)}, which "
            "has not been built yet: run `invoke build` or `invoke e2e.setup` first"
        )
    policy = ctx.settings.delivery.pull_policy
    policies = {s: policy(svc) for s, svc in stack.services.items() if policy(svc)}
    docs = render.render(
        docs,
        project=stack.project,
        namespace=stack.namespace,
        service_refs=refs,
        pull_policies=policies,
        registry=ctx.registry,
        template=stack.image_name,
    )
    consumed = runspec.consumed_outputs(stack, name, ctx.cluster_state.deployed())
    if consumed:  # a new output of a run step this service depends on rolls its pods out again
        docs = runspec.annotate_pod_templates(docs, consumed)
    if ctx.settings.coverage:
        covered = {refs[s] for s, svc in stack.services.items() if svc.coverage.mount and s in refs}
        docs = render.add_coverage(docs, covered, stack.services[name].coverage.pod_security_context)
    ctx.runner.add_secrets(render.secret_values(docs))
    return docs


def up_to_date(ctx: RunContext, name, wanted, docs, targets) -> bool:
    """Same image, same rendered objects, and every workload ready against the manifest."""
    previous = ctx.cluster_state.deployed().get(name)
    if ctx.dry_run or not previous or {k: previous.get(k) for k in wanted} != wanted:
        return False
    replicas = render.manifest_replicas(docs)
    return all(
        ctx.snapshot.is_ready(
            kind,
            object_name,
            namespace or ctx.stack.namespace,
            replicas=replicas.get((kind, object_name, namespace)),
        )
        for kind, object_name, namespace in targets
    )


def ensure_deployed(ctx: RunContext, name) -> Outcome:
    docs = rendered(ctx, name)
    targets = render.readiness_targets(docs)
    wanted = deploy_inputs(ctx, name, docs)
    if up_to_date(ctx, name, wanted, docs, targets):
        return Outcome.UP_TO_DATE
    applied = apply_and_wait(ctx, name, docs, targets)
    if not ctx.dry_run:
        ctx.cluster_state.record_deployed(name, {**wanted, "run": ctx.run.id, "objects": applied})
    return Outcome.READY


def deploy_inputs(ctx: RunContext, name, docs) -> dict:
    """What a deploy is compared by: the image and the rendered objects."""
    return {"image": ctx.known_refs().get(name), "manifests": render.digest(docs)}


def apply_and_wait(ctx: RunContext, name, docs, targets) -> list:
    """Apply the objects in order and wait for the workloads; [kind, name, namespace] of what was
    applied (teardown deletes these on an existing cluster)."""
    service = ctx.stack.services[name]
    log = ctx.log(StepKind.DEPLOY, name)
    crds, rest = render.split_crds(docs)
    folder = ctx.run.folder / "rendered"
    folder.mkdir(exist_ok=True)
    kubectl, namespace_default = ctx.kubectl, ctx.stack.namespace
    # What the apply changes is no longer as read (snapshot.Views, shared by a pre= chain's runs).
    ctx.snapshot.forget_workloads({d["metadata"].get("namespace") or namespace_default for d in docs})
    try:
        if crds:
            path = folder / f"{name}.crds.yaml"
            runs.write_private(path, render.dump(crds))
            kubectl.apply(path, log_path=log, timeout=ctx.timeout("apply"))
            for crd in crds:
                kubectl.wait_crd_established(crd["metadata"]["name"], 60, log_path=log)
        for kind, object_name, namespace in targets:
            if kind == "Job":
                # A Job's pod template is immutable: a new one replaces it. Foreground deletion
                # waits for the old pods, so an old migration never runs beside the new one.
                kubectl.delete("job", object_name, namespace, log_path=log, cascade="foreground")
        if rest:
            path = folder / f"{name}.yaml"
            runs.write_private(path, render.dump(rest))
            kubectl.apply(path, log_path=log, timeout=ctx.timeout("apply"))
        if not ctx.dry_run:
            for kind, object_name, namespace in targets:
                kubectl.wait_ready(
                    kind, object_name, namespace or namespace_default, service.ready_timeout, log_path=log
                )
            wait_host_ports(ctx, name, rest)
    except (CommandFailed, NotReady) as exc:
        ctx.cluster_state.record_deployed(name, None)
        taken = NODEPORT_TAKEN.search(str(exc))
        if taken:
            # The API server's words (pkg/registry/core/service/portallocator): on a shared
            # cluster another Service may hold the port.
            raise KindlingError(
                f"{name}: Service {taken['service']}: nodePort {taken['port']} is already allocated "
                f"in this cluster\n  fix: change or remove `nodePort: {taken['port']}` in "
                f"{', '.join(str(p) for p in service.manifests)} (without it Kubernetes picks a free "
                "port), or free the port in the cluster"
            ) from None
        if not ctx.dry_run and not ctx.runner.stopping:
            where = write_diagnostics(ctx, name, targets)
            detail = _not_ready_detail(ctx, exc) if isinstance(exc, NotReady) else str(exc)
            raise KindlingError(f"{name}: not ready: {detail}\n  diagnostics: {where}") from None
        raise
    return applied_objects(docs)


def wait_host_ports(ctx: RunContext, name, docs):
    """Ready includes the host: the NodePorts the Kind config publishes answer there (hostports.py)."""
    if ctx.settings.delivery.existing_cluster:  # its port mappings are not the stack's to know
        return
    ports = hostports.mapped(docs, cluster.kind_config(ctx))
    if not ports:
        return
    timeout = ctx.stack.services[name].ready_timeout
    waited = hostports.wait_answering(ports, timeout, stopping=lambda: ctx.runner.stopping)
    for port in waited.unserved:
        ctx.console.line(
            f"{name}: Service {port.service} nodePort {port.node_port} ({port.address}:{port.port}) "
            "refuses connections while its other ports answer: no container listens on its targetPort"
        )
    silent = waited.silent
    if silent:
        shown = "; ".join(
            f"Service {p.service} nodePort {p.node_port} -> {p.address}:{p.port}" for p in silent
        )
        raise NotReady(
            f"its pods are ready, but nothing answers on the host after {timeout:g} s: {shown} "
            f"(extraPortMappings of {ctx.stack.cluster_config}). kube-proxy on the node has not "
            "programmed the port (see kube-proxy in the diagnostics), or another process holds "
            "the host port"
        )


def applied_objects(docs) -> list:
    """[kind, name, namespace] of the objects teardown deletes on an existing cluster."""
    return [
        [d["kind"], d["metadata"]["name"], d["metadata"].get("namespace", "")]
        for d in docs
        if d["kind"] not in render.CLUSTER_SCOPED or d["kind"] == "CustomResourceDefinition"
    ]


def _not_ready_detail(ctx: RunContext, exc: NotReady) -> str:
    """The failure as the kubelet put it; for ErrImageNeverPull, what the pod asked for and what
    the nodes hold under that repository (the usual cause: a localhost/ prefix missing or doubled)."""
    verdict = exc.verdict
    text = str(exc)
    if verdict is None or verdict.reason != "ErrImageNeverPull" or not verdict.image:
        return text
    try:
        wanted_repo = imagerefs.parse(imagerefs.normalize(verdict.image)).repository
    except imagerefs.BadReference:
        return text
    held = sorted(
        {
            ref
            for names in ctx.cluster.node_images(ctx.engine).values()
            for ref in names
            if imagerefs.parse(ref).repository == wanted_repo
        }
    )
    return (
        f"{text}\n  the pod asked for: {verdict.image} ({imagerefs.normalize(verdict.image)})\n"
        f"  the nodes hold: {', '.join(held) or 'nothing under ' + wanted_repo}"
    )


def write_diagnostics(ctx: RunContext, name, targets=()) -> Path:
    """Pods, events, workloads, the targets' logs and `kind export logs`, secrets masked."""
    folder = ctx.run.folder / "diagnostics" / name
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, text in ctx.kubectl.diagnostics(ctx.stack.namespace).items():
        runs.write_private(folder / file_name, ctx.mask(text))
    for kind, object_name, namespace in targets:
        text = ctx.kubectl.logs(kind, object_name, namespace)
        runs.write_private(folder / f"logs-{object_name}.txt", ctx.mask(text))
    ctx.cluster.export_logs(folder / "kind-logs", log_path=ctx.run.log_path("diagnostics"))
    # `kind export logs` copies pod and node logs, which may print secret values.
    masking.mask_folder(folder / "kind-logs", ctx.mask)
    return folder
