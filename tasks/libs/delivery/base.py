"""The one interface of a delivery mode. A mode is a frozen value made by settings.py; the plan,
the run context, the cluster and deploy phases ask it questions instead of asking which mode it is,
and the environment binds its steps to `actions`."""

from dataclasses import dataclass
from enum import Enum

from ..plan import Outcome, PlannedStep, StepKind


class DeliveryMode(Enum):
    """The modes' names, as run.json shows them (its `delivery`)."""

    ARCHIVE = "archive"  # saved from the engine and loaded into each node (`kind load`)
    LOCAL_REGISTRY = "local-registry"  # pushed to a registry container beside Kind
    REGISTRY = "registry"  # pushed to the stack's registry; maybe an existing cluster


@dataclass(frozen=True)
class Delivery:
    registry: str  # the host image references are tagged for ("localhost" for archives)
    tls_verify: bool = True

    mode = None  # DeliveryMode, set by each mode
    step_kind = StepKind.PUSH  # the step that delivers one image: LOAD or PUSH

    @property
    def pushes(self) -> bool:
        return self.step_kind is StepKind.PUSH

    @property
    def existing_cluster(self) -> bool:
        """The run deploys to a cluster kindling did not make (and never deletes)."""
        return False

    @property
    def reads_certs_d(self) -> bool:
        """The nodes get per-registry hosts.toml files, so containerd must read certs.d (kind's
        "Local Registry" guide, its containerd patch)."""
        return False

    def setup_steps(self, cluster_id: str) -> list:
        """Steps of the mode itself (a registry container, the nodes wired to a registry)."""
        return []

    def deploy_needs(self) -> tuple:
        """Step ids every deploy waits for besides its own image's delivery."""
        return ()

    def delivery_step(self, service, name: str, image_id: str, cluster_id: str) -> PlannedStep | None:
        """The step that brings one service's image to the nodes, or None when the nodes pull it
        from where it lives (a prebuilt image in a push mode)."""
        if not service.built:
            return None
        return PlannedStep(StepKind.PUSH, name, (image_id,))

    def pull_policy(self, service) -> str | None:
        """The imagePullPolicy the service's containers get, or None to leave theirs."""
        return "IfNotPresent" if service.built else None

    def registry_container(self, runner, engine: str, network: str):
        """The adapter of a registry container the mode runs beside Kind, or None."""
        return None

    def actions(self) -> dict:
        """Step kind -> function(ctx, subject) -> Outcome, for the steps this mode plans besides a
        push (`push` below, which `build --push` uses as well)."""
        return {}

    def refuse(self, ctx) -> None:
        """Before any build: raise KindlingError when the nodes could never get the images."""


def push(ctx, name) -> Outcome:
    """Push the image; layers the registry has are not sent again."""
    ref = ctx.known_refs()[name]
    ctx.engine.push(
        ref,
        ctx.settings.delivery.tls_verify,
        log_path=ctx.log(StepKind.PUSH, name),
        timeout=ctx.timeout("load"),
    )
    return Outcome.PUSHED
