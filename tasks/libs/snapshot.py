"""What the outside world holds, read once per run: the engine's images, each node's images
and the stack's workloads. A warm run that changes nothing then costs the same few commands
whatever the number of services, instead of a few per service.

Each view is read on first use, under a lock of its own (steps run in threads), or ahead of it
once the cluster is known to be up (prefetch). The image and workload views answer "is it already
there?" questions asked before anything is changed; a run that loads an image records it with
`add_loaded`, so later questions see it.
"""

import threading

from . import imagerefs, readiness
from .adapters.engine import DIGEST_LABEL, Engine
from .adapters.kind import KindCluster
from .adapters.kubectl import RESOURCES, Kubectl


class Views:
    """What was read, kept for every run of one process against one cluster: the tasks of a pre=
    chain (`deploy.api` after `deploy.db`) are runs of their own, and each asking podman, the nodes
    and the API server again cost a partial redeploy about 0.6 s a dependency. A change a step
    makes is written through (add_loaded) or forgets the view it touched."""

    def __init__(self):
        # One lock per view: a read of the nodes must not hold up a question about podman's images.
        self.images_lock = threading.Lock()
        self.nodes_lock = threading.Lock()
        self.workloads_lock = threading.Lock()
        self.images = None  # [(names, labels, created)], or None when the engine cannot list them
        self.images_read = False
        self.nodes = None  # node -> set of node names (imagerefs.node_name)
        self.workloads = {}  # namespace -> {(kind, name): object}


_SHARED = {}  # (state home, cluster name) -> Views
_SHARED_LOCK = threading.Lock()


def shared_views(key: tuple) -> Views:
    with _SHARED_LOCK:
        return _SHARED.setdefault(key, Views())


def forget_shared(key: tuple) -> None:
    """The cluster was created, recreated or deleted: nothing read of it before holds."""
    with _SHARED_LOCK:
        _SHARED.pop(key, None)


class Snapshot:
    def __init__(self, engine: Engine, cluster: KindCluster, kubectl: Kubectl, views: Views | None = None):
        self.engine, self.cluster, self.kubectl = engine, cluster, kubectl
        self._views = views or Views()

    # ---- the engine's images ------------------------------------------------------------------

    def _engine_images(self):
        views = self._views
        with views.images_lock:
            if not views.images_read:
                views.images = self.engine.list_images()
                views.images_read = True
            return views.images

    def find_built(self, repository: str, digest: str) -> list:
        """References in `repository` of images built from these inputs, newest first."""
        listed = self._engine_images()
        if listed is None:
            return self.engine.find_by_label(repository, DIGEST_LABEL, digest)
        found = []
        for names, labels, created in listed:
            if labels.get(DIGEST_LABEL) != digest:
                continue
            found += [(created, n) for n in names if n.rsplit(":", 1)[0] == repository and ":" in n]
        return [name for _, name in sorted(found, reverse=True)]

    def image_exists(self, ref: str) -> bool:
        listed = self._engine_images()
        if listed is not None:
            try:
                wanted = imagerefs.normalize(ref)
            except imagerefs.BadReference:
                wanted = ref
            if any(wanted in names or ref in names for names, _, _ in listed):
                return True
        # Not listed by name (e.g. pinned by digest): ask the engine about this one.
        return self.engine.image_exists(ref)

    # ---- the nodes' images --------------------------------------------------------------------

    def node_images(self) -> dict:
        views = self._views
        with views.nodes_lock:
            if views.nodes is None:
                views.nodes = self.cluster.node_images(self.engine)
            return views.nodes

    def on_every_node(self, ref: str) -> bool:
        wanted = imagerefs.node_name(ref)
        holdings = self.node_images()
        return bool(holdings) and all(wanted in names for names in holdings.values())

    def add_loaded(self, ref: str) -> None:
        wanted = imagerefs.node_name(ref)
        with self._views.nodes_lock:
            for names in (self._views.nodes or {}).values():
                names.add(wanted)

    def forget_images(self) -> None:
        """An image was built or pulled."""
        with self._views.images_lock:
            self._views.images, self._views.images_read = None, False

    def forget_workloads(self, namespaces) -> None:
        """Objects were applied or deleted in these namespaces."""
        with self._views.workloads_lock:
            for namespace in namespaces:
                self._views.workloads.pop(namespace, None)

    # ---- the workloads ------------------------------------------------------------------------

    def prefetch(self, namespace: str) -> None:
        """Start reading the nodes' images and the namespace's workloads, now that the cluster is up:
        the first load and deploy steps ask for them only after the builds' check of podman's images,
        and a warm run's critical path is those reads one after another. A read that fails here is
        left unread, and the step that needs it reads it again and reports the failure."""
        for read in (self.node_images, lambda: self.workload("", "", namespace)):
            threading.Thread(target=_quietly, args=(read,), daemon=True).start()

    def workload(self, kind: str, name: str, namespace: str) -> dict | None:
        views = self._views
        with views.workloads_lock:
            if namespace not in views.workloads:
                listed = self.kubectl.get_json(",".join(RESOURCES.values()), namespace) or {}
                views.workloads[namespace] = {
                    (item.get("kind"), item["metadata"]["name"]): item for item in listed.get("items") or []
                }
            return views.workloads[namespace].get((kind, name))

    def is_ready(self, kind: str, name: str, namespace: str, replicas=None) -> bool:
        """Ready as kubectl means it; with replicas, the live object must still ask for that many
        (a workload scaled to zero since is not as deployed, whatever its status says)."""
        obj = self.workload(kind, name, namespace)
        if obj is None:
            return False
        if replicas is not None and (obj.get("spec") or {}).get("replicas", 1) != replicas:
            return False
        return readiness.workload(obj).state == readiness.State.READY


def _quietly(read) -> None:
    try:
        read()
    except Exception:  # noqa: BLE001 - the step that needs the view reads it again and reports it
        pass
