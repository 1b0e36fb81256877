"""The teardown phase: the cluster (or, on an existing cluster, exactly what kindling applied),
leftover archives and the images this stack's runs built. Caches and other stacks' state stay."""

from dataclasses import dataclass, field

from .. import render, runs
from ..context import RunContext
from . import cluster as cluster_phase


@dataclass
class TeardownResult:
    cluster_deleted: bool = False
    objects_deleted: list = field(default_factory=list)  # "Kind/name [in namespace]"
    objects_left: list = field(default_factory=list)  # (object, why)
    archives_removed: list = field(default_factory=list)
    images_removed: list = field(default_factory=list)
    images_left: list = field(default_factory=list)

    def lines(self, cluster_name: str) -> list:
        """What a person reads: one line per thing done or left."""
        out = [f"deleted {o}" for o in self.objects_deleted]
        out += [f"could not delete {o}: {why}" for o, why in self.objects_left]
        out += [f"deleted cluster {cluster_name}"] if self.cluster_deleted else []
        out += [f"removed {a}" for a in self.archives_removed]
        out += [f"removed image {r}" for r in self.images_removed]
        out += [f"could not remove image {r} (in use?)" for r in self.images_left]
        return out


def _delete_applied_objects(ctx: RunContext, result: TeardownResult) -> None:
    """Existing cluster: delete exactly what kindling applied, in reverse apply order. Every wait
    is bounded; an object a finalizer holds is reported, and the rest still go."""
    deployed = ctx.cluster_state.deployed()
    order = ctx.stack.order()
    objects = [o for name in reversed(order) for o in (deployed.get(name) or {}).get("objects", [])]
    log = ctx.run.log_path("teardown")
    for kind, object_name, namespace in render.teardown_order(objects):
        label = f"{kind}/{object_name}" + (f" in {namespace}" if namespace else "")
        outcome = ctx.kubectl.delete(
            kind.lower(), object_name, namespace, log_path=log, wait_seconds=30, check=False
        )
        if outcome.exit_code == 0:
            result.objects_deleted.append(label)
            continue
        live = ctx.kubectl.get_json(f"{kind.lower()}/{object_name}", namespace or "default") or {}
        finalizers = (live.get("metadata") or {}).get("finalizers") or []
        result.objects_left.append(
            (
                label,
                f"held by finalizers {', '.join(finalizers)}"
                if finalizers
                else f"kubectl exit {outcome.exit_code}; see {log}",
            )
        )
    if not ctx.dry_run:
        for name in order:
            ctx.cluster_state.record_deployed(name, None)


def teardown(ctx: RunContext, keep_cluster=False, keep_images=False) -> TeardownResult:
    """Delete the cluster, its kubeconfig, leftover tars and the images kindling built."""
    result = TeardownResult()
    if ctx.settings.delivery.existing_cluster:
        _delete_applied_objects(ctx, result)
        keep_cluster = True  # never an existing cluster
    cluster_phase.forget_ensured(ctx)
    if not keep_cluster:
        cluster_phase.lock_cluster(ctx, "teardown")
        listed = ctx.dry_run or ctx.cluster.exists()
        # `kind delete cluster` succeeds for a missing cluster and also removes the nodes of a
        # creation that was interrupted before kind listed the cluster.
        ctx.cluster.delete(log_path=ctx.run.log_path("teardown"))
        result.cluster_deleted = listed
        if not ctx.dry_run:
            ctx.cluster_state.forget()
    for tar in (
        t for t in (ctx.home / "runs").glob("*/*.tar") if runs.is_run_of(ctx.stack.name, t.parent.name)
    ):
        if not ctx.dry_run:
            tar.unlink(missing_ok=True)
        result.archives_removed.append(tar.name)
    if not keep_images:
        built = list(ctx.run.built_images())
        failed = ctx.engine.remove_images(built)
        if not ctx.dry_run:
            ctx.run.forget_built([r for r in built if r not in failed])
            runs.write_json(ctx.run.stack_folder / "images.json", {})
        result.images_removed = [r for r in built if r not in failed]
        result.images_left = list(failed)
    return result
