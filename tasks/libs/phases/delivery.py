"""The delivery phase: each built image onto the nodes, loaded from an archive or pushed to the
registry they pull from (settings.Delivery says which)."""

from ..context import RunContext
from ..plan import Outcome, StepKind


def ensure_loaded(ctx: RunContext, name) -> Outcome:
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


def ensure_pushed(ctx: RunContext, name) -> Outcome:
    """Push the image; layers the registry has are not sent again."""
    ref = ctx.known_refs()[name]
    delivery = ctx.settings.delivery
    # kind's local registry serves plain HTTP on loopback, as in kind's guide.
    ctx.engine.push(
        ref, delivery.tls_verify, log_path=ctx.log(StepKind.PUSH, name), timeout=ctx.timeout("load")
    )
    return Outcome.PUSHED
