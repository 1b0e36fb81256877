"""The cluster phase: the Kind cluster (or an existing one), the stack's namespace, and the
registry container beside Kind when images go through it, or the nodes' route to a registry on this
host's loopback."""

import os
from pathlib import Path

import yaml

from .. import kubeletcgroup, locks, readiness, render, snapshot
from ..context import RunContext
from ..errors import KindlingError, NotReady
from ..plan import Outcome, StepKind

API_READY_SECONDS = 120
ADDONS_NAMESPACE = "kube-system"
ADDONS_READY_SECONDS = 180
ADDONS_NUDGE_SECONDS = 8  # a Deployment of kube-system ready later than this after kube-proxy is stuck
_ENSURED = set()  # (state home, cluster) this process has ensured: a pre= chain checks once


def ensure_cluster(ctx: RunContext) -> Outcome:
    if ctx.settings.delivery.existing_cluster:
        return _ensure_existing(ctx)
    key = (str(ctx.home), ctx.stack.cluster_name)
    if key in _ENSURED and not ctx.dry_run:
        return Outcome.EXISTS
    log = ctx.log(StepKind.CLUSTER)
    config = ctx.stack.cluster_config
    if ctx.settings.coverage or ctx.settings.delivery.reads_certs_d:
        config = rendered_kind_config(ctx)
        if (
            ctx.settings.coverage
            and not ctx.dry_run
            and ctx.cluster.exists()
            and not coverage_dir(ctx).exists()
        ):
            ctx.console.line(
                f"warning: cluster {ctx.stack.cluster_name} was created without the "
                "coverage mount; run e2e.teardown first to collect coverage"
            )
    # A broken cluster kindling made is ours to recreate; one made elsewhere only on --recreate.
    outcome = Outcome(
        ctx.cluster.ensure(
            lambda: with_kubelet_cgroup(ctx, config),  # decided only when kind creates the cluster
            log_path=log,
            timeout=ctx.timeout("cluster"),
            recreate=ctx.settings.recreate or ctx.cluster_state.created_by_kindling(),
            api_problem=lambda: api_problem(ctx),
        )
    )
    if outcome is not Outcome.EXISTS:
        snapshot.forget_shared(ctx.snapshot_key)
    if not ctx.dry_run:
        ctx.snapshot.prefetch(ctx.stack.namespace)
    if outcome is not Outcome.EXISTS and not ctx.dry_run:
        ctx.cluster_state.mark_created()
        # kind's --wait ends when the control-plane node is Ready, and on a loaded host the kubelet may
        # still restart kube-apiserver (its static pod's liveness probe): the first apply would meet
        # "connection refused". A new cluster is used once /readyz answers.
        problem = ctx.kubectl.wait_api_ready(API_READY_SECONDS)
        if problem is not None:
            raise KindlingError(
                f"cluster {ctx.stack.cluster_name} was created, but {problem} after {API_READY_SECONDS} s; "
                f"`invoke cluster.status` shows its nodes, `kind export logs` the control plane's logs"
            )
        wait_cluster_addons(ctx, log)
    ensure_namespace(ctx, log, known_new=outcome is not Outcome.EXISTS)
    if not ctx.dry_run:
        _ENSURED.add(key)
    return outcome


def api_problem(ctx: RunContext) -> str | None:
    """Why the API server cannot be used through our kubeconfig, or None. The preflight's `kubectl
    version` has just had it answer through that kubeconfig, then a /readyz would tell nothing new."""
    if ctx.host_info.api_answered(ctx.cluster_state.kubeconfig):
        return None
    return ctx.kubectl.api_problem()


def wait_cluster_addons(ctx: RunContext, log: Path) -> None:
    """A new cluster's own workloads in kube-system (CoreDNS, kube-proxy, the CNI daemon) are ready
    before anything is deployed. kind's --wait covers the control-plane node only: until CoreDNS is
    ready and kube-proxy has programmed its Service, a pod resolving a name meets "connection
    refused" from 10.96.0.10, and a workload that resolves its dependencies at start fails.

    The DaemonSets (kube-proxy, the CNI daemon) are waited for first. A Deployment (CoreDNS, the
    storage provisioner) whose pods started before kube-proxy had programmed the API server's
    Service sent its first request to 10.96.0.1 into nothing, and client-go gives that dial 30 s
    before it tries again (CoreDNS logs "waiting for Kubernetes API" meanwhile; coredns/coredns
    issues 3989 and 4436). On a host busy with builds that cost 30 s of every cold setup. Such a
    Deployment not ready ADDONS_NUDGE_SECONDS after the DaemonSets has its pods deleted once:
    their replacements start with the Service routed, and are ready in a second or two."""
    listed = ctx.kubectl.get_json("deployments,daemonsets", ADDONS_NAMESPACE) or {}
    items = [i for i in listed.get("items") or [] if i.get("kind") in ("DaemonSet", "Deployment")]
    for item in sorted(items, key=lambda i: i["kind"] != "DaemonSet"):  # DaemonSets first
        kind, name = item["kind"], item["metadata"]["name"]
        try:
            if kind == "Deployment":
                if _ready_within(ctx, kind, name, ADDONS_NUDGE_SECONDS, log):
                    continue
                selector = readiness.selector_of(item)
                if selector:
                    ctx.console.line(
                        f"[cluster] {ADDONS_NAMESPACE}/{name} not ready {ADDONS_NUDGE_SECONDS} s after "
                        "kube-proxy: its pods started before the API server's Service was routed; "
                        "starting them again"
                    )
                    ctx.kubectl.delete_pods(selector, ADDONS_NAMESPACE, log_path=log)
            ctx.kubectl.wait_ready(kind, name, ADDONS_NAMESPACE, ADDONS_READY_SECONDS, log_path=log)
        except NotReady as exc:
            raise KindlingError(
                f"cluster {ctx.stack.cluster_name} was created, but its {kind} {ADDONS_NAMESPACE}/{name} "
                f"is not ready: {exc}\n  fix: `kubectl --kubeconfig {ctx.cluster_state.kubeconfig} -n "
                f"{ADDONS_NAMESPACE} describe pods` shows why; `invoke cluster.delete` and run again"
            ) from None


def _ready_within(ctx: RunContext, kind, name, seconds, log) -> bool:
    """Ready within `seconds`; a failure (not a timeout) is raised as it is."""
    try:
        ctx.kubectl.wait_ready(kind, name, ADDONS_NAMESPACE, seconds, log_path=log)
        return True
    except NotReady as exc:
        if exc.verdict is not None and exc.verdict.state is readiness.State.FAILED:
            raise
        return False


def lock_cluster(ctx: RunContext, what: str) -> None:
    """One run at a time changes a cluster (locks.py); a dry run changes nothing."""
    if ctx.dry_run:
        return
    note = locks.acquire(ctx.stack.cluster_name, what, ctx.settings.lock_wait, ctx.env, say=ctx.console.line)
    if note.startswith("took over"):
        ctx.console.line(f"cluster {ctx.stack.cluster_name}: {note}")


def forget_ensured(ctx: RunContext) -> None:
    """Check the cluster again, and read it again (snapshot.Views), as a new process would."""
    _ENSURED.discard((str(ctx.home), ctx.stack.cluster_name))
    snapshot.forget_shared(ctx.snapshot_key)


def _ensure_existing(ctx: RunContext) -> Outcome:
    """An existing cluster (registry mode with a kubeconfig/context): reachable? then the namespace."""
    log = ctx.log(StepKind.CLUSTER)
    ctx.kubectl.run("cluster-info", log_path=log, timeout=ctx.timeout("apply"), mutating=False)
    ensure_namespace(ctx, log)
    return Outcome.EXISTING


def ensure_namespace(ctx: RunContext, log: Path, known_new: bool = False) -> None:
    """Apply the namespace only when it is missing: a run that changes nothing mutates nothing."""
    if (
        not known_new
        and not ctx.dry_run
        and ctx.kubectl.get_json(f"namespace/{ctx.stack.namespace}", "default")
    ):
        return
    namespace_file = ctx.run.folder / "namespace.yaml"
    namespace_file.write_text(render.dump([render.namespace_doc(ctx.stack.namespace)]))
    ctx.kubectl.apply(namespace_file, log_path=log, timeout=ctx.timeout("apply"))


def coverage_dir(ctx: RunContext) -> Path:
    """Host folder mounted at /coverdata on the nodes in coverage mode."""
    return ctx.cluster_state.folder / "coverdata"


def kind_config(ctx: RunContext) -> dict | None:
    if ctx.stack.cluster_config is None:
        return None
    return yaml.safe_load(ctx.stack.cluster_config.read_text(encoding="utf-8")) or None


def rendered_kind_config(ctx: RunContext) -> Path:
    """A rendered copy of the Kind config (the committed one stays clean): the coverage mount,
    and containerd's registry config folder when the nodes get hosts.toml files (reads_certs_d)."""
    config = kind_config(ctx)
    if ctx.settings.coverage:
        folder = coverage_dir(ctx)
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o777)  # workloads may run as any user
        config = render.coverage_kind_config(config, str(folder))
    if ctx.settings.delivery.reads_certs_d:
        config = render.kind_registry_config(config)
    return write_kind_config(ctx, config)


def with_kubelet_cgroup(ctx: RunContext, config: Path | None) -> Path | None:
    """The kind config kind is given: `config` (the stack's, or its rendered copy), with KubeletConfiguration
    failCgroupV1: false added when the host is cgroup v1 and the node image 1.35+ (kubeletcgroup.py). The
    cgroup version comes from the preflight's `<engine> info`, asked now only when no preflight ran."""
    try:
        document = yaml.safe_load(Path(config).read_text(encoding="utf-8")) if config else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return config  # kind says what is wrong with it, in its own words
    if document is not None and not isinstance(document, dict):
        return config
    decision = kubeletcgroup.decide(
        ctx.host_info.cgroup_version(),
        document,
        ctx.stack.node_image,
        kubeletcgroup.pinned_origin(ctx.env),
        lambda: ctx.host_info.version("kind").text,
    )
    if not decision.add:
        return config
    ctx.console.line(decision.line)
    return write_kind_config(ctx, kubeletcgroup.with_patch(document))


class _KindConfigDumper(render.KubeDumper):
    """Multi-line strings (kubeadm and containerd patches) as literal blocks, as kind's docs write them."""


def _string(dumper, text: str):
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_KindConfigDumper.add_representer(str, _string)


def write_kind_config(ctx: RunContext, config: dict) -> Path:
    """The effective kind config, in the run folder: the stack's own file is never edited."""
    path = ctx.run.folder / "kind-config.yaml"
    path.write_text(yaml.dump(config, Dumper=_KindConfigDumper, sort_keys=False))
    return path
