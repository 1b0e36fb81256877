"""Registry delivery: images pushed to the stack's registry (`registry:`, IMAGE_REGISTRY or
--registry), which the nodes pull from. The cluster is the Kind cluster kindling makes, or, given
--context/--kubeconfig, an existing one, which kindling never deletes.

A registry on this host's loopback names each node's own loopback: the nodes of a Kind cluster
kindling makes are pointed at this host (loopback.py); an existing cluster must map it already."""

from dataclasses import dataclass

from .. import render
from ..adapters.kind import kind_network
from ..errors import CommandFailed, KindlingError
from ..plan import Outcome, PlannedStep, StepKind, step_id
from . import loopback, registryhost
from .base import Delivery, DeliveryMode


@dataclass(frozen=True)
class RegistryDelivery(Delivery):
    context: str | None = None  # an existing cluster's kubeconfig context
    kubeconfig: str | None = None  # an existing cluster's kubeconfig

    mode = DeliveryMode.REGISTRY

    @property
    def existing_cluster(self) -> bool:
        return bool(self.context or self.kubeconfig)

    @property
    def loopback(self) -> bool:
        """The registry is on this host's loopback, which no node reaches as such."""
        return registryhost.is_loopback(self.registry)

    @property
    def routes_loopback(self) -> bool:
        """The nodes of the Kind cluster kindling makes are pointed at this host for the registry
        (loopback.py); a cluster kindling does not make cannot be (loopback_refusal)."""
        return self.loopback and not self.existing_cluster

    @property
    def reads_certs_d(self) -> bool:
        return self.routes_loopback

    def setup_steps(self, cluster_id):
        # A registry on this host's loopback: the nodes are pointed at the host once they exist.
        return (
            [PlannedStep(StepKind.REGISTRY_WIRING, self.registry, (cluster_id,))]
            if self.routes_loopback
            else []
        )

    def deploy_needs(self):
        return (step_id(StepKind.REGISTRY_WIRING),) if self.routes_loopback else ()

    def actions(self):
        return {StepKind.REGISTRY_WIRING: wire_loopback}

    def refuse(self, ctx) -> None:
        refuse_unreachable(ctx)


def loopback_refusal(delivery, declared: str | None, unmapped: list | None = None) -> str | None:
    """Why the nodes of an existing cluster cannot pull from the registry, or None.

    A loopback registry names each node's own loopback, and kindling points at this host only the nodes
    of a Kind cluster it makes (loopback.py): it does not change the nodes of a cluster it did not make,
    which may be remote. Such a cluster is used only when its nodes already map the registry's host:
    - `declared`: the host of its `local-registry-hosting` ConfigMap (KEP-1755), which kind's
      local-registry guide applies after sending the nodes' localhost:PORT to its registry container
      (render.declared_local_registry);
    - `unmapped`: when every node is a Kind node container on this host, the nodes without a hosts.toml
      for the host (an empty list: all map it); None when kindling cannot look into the nodes."""
    host = delivery.registry
    if not (delivery.existing_cluster and delivery.loopback) or declared == host or unmapped == []:
        return None
    target = f"context {delivery.context}" if delivery.context else f"kubeconfig {delivery.kubeconfig}"
    if unmapped:
        why = (
            f"its nodes are Kind nodes on this host, but {', '.join(unmapped)} "
            f"{'has' if len(unmapped) == 1 else 'have'} no hosts.toml for it in /etc/containerd/certs.d"
        )
    else:
        why = "kindling cannot look into its nodes (not all are Kind node containers on this host)"
    return (
        f"registry {host} is on this host's loopback, and the existing cluster ({target}) cannot pull from "
        f"it: each node has a 127.0.0.1 of its own, and {why}. kindling points only the nodes of a Kind "
        "cluster it makes at this host. Give a registry address the cluster's nodes reach (--registry, "
        "IMAGE_REGISTRY or the stack's registry:); or drop --context/--kubeconfig, so kindling makes that "
        "Kind cluster; or drop the registry and use --load-via registry (kind's local registry); or map "
        f"the host in each node as kind's local-registry guide does (/etc/containerd/certs.d/{host}/"
        "hosts.toml) or, if the nodes map it already, say so as that guide does: the ConfigMap "
        f'kube-public/local-registry-hosting with host: "{host}"'
        + (f' (it names "{declared}")' if declared else "")
    )


def refuse_unreachable(ctx) -> None:
    """Before any build: a loopback registry with a cluster kindling did not make is refused unless its
    nodes already map that host (loopback_refusal). Read-only: the cluster's hosting ConfigMap,
    else, when its nodes are Kind node containers here, their hosts.toml files."""
    delivery = ctx.settings.delivery
    if not (delivery.existing_cluster and delivery.loopback):
        return
    hosting = ctx.kubectl.get_json("configmap/local-registry-hosting", "kube-public")
    declared = render.declared_local_registry(hosting)
    unmapped = None if declared == delivery.registry else _unmapped_kind_nodes(ctx, delivery.registry)
    problem = loopback_refusal(delivery, declared, unmapped)
    if problem:
        raise KindlingError(problem)
    how = (
        "kube-public/local-registry-hosting names it" if unmapped is None else "each has a hosts.toml for it"
    )
    ctx.console.line(
        f"registry {delivery.registry} is on this host's loopback; the cluster's nodes map it ({how})"
    )


def _unmapped_kind_nodes(ctx, host: str) -> list | None:
    """The cluster's nodes with no hosts.toml for host, when each is a Kind node container on this host
    (kind names a node's container as the node: --hostname in its providers' provision.go); None when
    kindling cannot look into them."""
    listed = ctx.kubectl.get_json("nodes", "default") or {}
    nodes = [item["metadata"]["name"] for item in listed.get("items") or [] if item.get("metadata")]
    route = loopback.LoopbackRoute(ctx.runner, ctx.stack.engine)
    if not nodes or not set(nodes) <= route.kind_node_containers():
        return None
    try:
        return [node for node in nodes if route.files(node, [host]).get(host, ("none",))[0] == "none"]
    except CommandFailed:
        return None  # a node that cannot be looked into (stopped, no bash)


def wire_loopback(ctx, _subject) -> Outcome:
    """Once the cluster exists: each node's containerd sends the pulls of the registry on this host's
    loopback to an address of this host the node reaches, found and checked from a node (loopback.py)."""
    delivery, log = ctx.settings.delivery, ctx.log(StepKind.REGISTRY_WIRING)
    network = kind_network(ctx.stack.engine, ctx.env)
    if ctx.dry_run:
        ctx.console.line(
            f"registry {delivery.registry} is on this host's loopback: each node would get a hosts.toml "
            f"sending it to this host at host.containers.internal or the gateway of network {network}, "
            "whichever answers from the node once the cluster exists"
        )
        return Outcome.WIRED
    route = loopback.LoopbackRoute(ctx.runner, ctx.stack.engine, network)
    line = route.wire(ctx.cluster.nodes(), delivery.registry, delivery.tls_verify, log_path=log)
    ctx.console.line(line)
    return Outcome.WIRED
