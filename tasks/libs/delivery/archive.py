"""Archive delivery, the default: each image saved from the engine and loaded into every node
(`kind load`), so nothing is pushed and the pods never pull."""

from dataclasses import dataclass

from .. import imagerefs
from ..plan import Outcome, PlannedStep, StepKind
from .base import Delivery, DeliveryMode


@dataclass(frozen=True)
class ArchiveDelivery(Delivery):
    registry: str = imagerefs.LOCAL_REGISTRY

    mode = DeliveryMode.ARCHIVE
    step_kind = StepKind.LOAD

    def delivery_step(self, service, name, image_id, cluster_id):
        return PlannedStep(StepKind.LOAD, name, (cluster_id, image_id))

    def pull_policy(self, service):
        # The image is only on the nodes: a missing load shows as ErrImageNeverPull, not as a pull.
        return "Never" if service.built or service.load else None

    def actions(self):
        return {StepKind.LOAD: load}


def load(ctx, name) -> Outcome:
    """`kind load` the image unless every node holds it already."""
    ref = ctx.known_refs()[name]
    if not ctx.dry_run and ctx.snapshot.on_every_node(ref):
        return Outcome.ON_NODE
    # Streamed (engine save | kind load, no archive on disk) unless streaming is unavailable here:
    # then through the archive file, removed whatever happens (KindCluster.load_streamed).
    how = ctx.cluster.load_streamed(
        ctx.engine,
        ref,
        ctx.run.tar_path(name),
        nodes=None if ctx.dry_run else list(ctx.snapshot.node_images()),
        log_path=ctx.log(StepKind.LOAD, name),
        save_timeout=ctx.timeout("save"),
        load_timeout=ctx.timeout("load"),
    )
    if not ctx.dry_run:
        ctx.cluster.verify_loaded(ctx.engine, ref)
        ctx.snapshot.add_loaded(ref)
    return Outcome.STREAMED if how == "streamed" else Outcome.LOADED
