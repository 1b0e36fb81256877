"""Local-registry delivery (`--load-via registry`): images pushed to a registry container beside
Kind, which the nodes pull from, as kind's "Local Registry" guide sets it up
(site/static/examples/kind-with-registry.sh)."""

from dataclasses import dataclass, field
from types import MappingProxyType

from .. import render
from ..adapters.localregistry import LocalRegistry
from ..plan import Outcome, PlannedStep, StepKind, step_id
from .base import Delivery, DeliveryMode

DEFAULT_KIND_REGISTRY = {
    "name": LocalRegistry.DEFAULT_NAME,
    "port": LocalRegistry.DEFAULT_PORT,
    "image": LocalRegistry.DEFAULT_IMAGE,
}


@dataclass(frozen=True)
class LocalRegistryDelivery(Delivery):
    registry: str = f"localhost:{DEFAULT_KIND_REGISTRY['port']}"
    tls_verify: bool = False  # the guide's registry serves plain HTTP on loopback
    kind_registry: MappingProxyType = field(default_factory=lambda: MappingProxyType(DEFAULT_KIND_REGISTRY))

    mode = DeliveryMode.LOCAL_REGISTRY

    @property
    def reads_certs_d(self) -> bool:
        return True

    def setup_steps(self, cluster_id):
        name = self.kind_registry["name"]
        return [
            PlannedStep(StepKind.REGISTRY, name),
            # After both exist: `podman network connect` needs the container and kind's network.
            PlannedStep(StepKind.REGISTRY_WIRING, name, (cluster_id, step_id(StepKind.REGISTRY))),
        ]

    def deploy_needs(self):
        return (step_id(StepKind.REGISTRY_WIRING),)

    def delivery_step(self, service, name, image_id, cluster_id):
        if not service.built:
            return None
        return PlannedStep(StepKind.PUSH, name, (image_id, step_id(StepKind.REGISTRY)))

    def registry_container(self, runner, engine, network):
        local = self.kind_registry
        return LocalRegistry(
            runner, engine, name=local["name"], port=local["port"], image=local["image"], network=network
        )

    def actions(self):
        return {StepKind.REGISTRY: ensure_container, StepKind.REGISTRY_WIRING: wire}


def ensure_container(ctx, _subject) -> Outcome:
    return Outcome(ctx.local_registry.ensure(log_path=ctx.log(StepKind.REGISTRY)))


def wire(ctx, _subject) -> Outcome:
    """Once both the cluster and the registry container exist (kind's local-registry guide):
    each node's hosts.toml, the registry on the cluster's network, the hosting ConfigMap."""
    log = ctx.log(StepKind.REGISTRY)
    nodes = ctx.cluster.nodes() if not ctx.dry_run else [f"{ctx.stack.cluster_name}-control-plane"]
    ctx.local_registry.connect(nodes, log_path=log)
    hosting = ctx.run.folder / "local-registry-hosting.yaml"
    hosting.write_text(render.dump([render.local_registry_hosting(ctx.local_registry.host)]))
    ctx.kubectl.apply(hosting, log_path=log, timeout=ctx.timeout("apply"))
    return Outcome.WIRED
