"""What the outside world holds, read once per run: the engine's images, each node's images
and the stack's workloads. A warm run that changes nothing then costs the same few commands
whatever the number of services, instead of a few per service.

Each view is read on first use, under a lock (steps run in threads). The image and workload
views answer "is it already there?" questions asked before anything is changed; a run that
loads an image records it with `add_loaded`, so later questions see it.
"""

import threading

from . import images, readiness
from .engine import DIGEST_LABEL, Engine
from .kind import KindCluster
from .kubectl import RESOURCES, Kubectl


class Snapshot:
    def __init__(self, engine: Engine, cluster: KindCluster, kubectl: Kubectl):
        self.engine, self.cluster, self.kubectl = engine, cluster, kubectl
        self._lock = threading.Lock()
        self._images = None  # [(names, labels, created)], or None when the engine cannot list them
        self._images_read = False
        self._nodes = None  # node -> set of node names (images.node_name)
        self._workloads = {}  # namespace -> {(kind, name): object}

    # ---- the engine's images ------------------------------------------------------------------

    def _engine_images(self):
        with self._lock:
            if not self._images_read:
                self._images = self.engine.list_images()
                self._images_read = True
            return self._images

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
                wanted = images.normalize(ref)
            except images.BadReference:
                wanted = ref
            if any(wanted in names or ref in names for names, _, _ in listed):
                return True
        # Not listed by name (e.g. pinned by digest): ask the engine about this one.
        return self.engine.image_exists(ref)

    # ---- the nodes' images --------------------------------------------------------------------

    def node_images(self) -> dict:
        with self._lock:
            if self._nodes is None:
                self._nodes = self.cluster.node_images(self.engine)
            return self._nodes

    def on_every_node(self, ref: str) -> bool:
        wanted = images.node_name(ref)
        holdings = self.node_images()
        return bool(holdings) and all(wanted in names for names in holdings.values())

    def add_loaded(self, ref: str) -> None:
        wanted = images.node_name(ref)
        with self._lock:
            for names in (self._nodes or {}).values():
                names.add(wanted)

    # ---- the workloads ------------------------------------------------------------------------

    def workload(self, kind: str, name: str, namespace: str) -> dict | None:
        with self._lock:
            if namespace not in self._workloads:
                listed = self.kubectl.get_json(",".join(RESOURCES.values()), namespace) or {}
                self._workloads[namespace] = {
                    (item.get("kind"), item["metadata"]["name"]): item for item in listed.get("items") or []
                }
            return self._workloads[namespace].get((kind, name))

    def is_ready(self, kind: str, name: str, namespace: str, replicas=None) -> bool:
        """Ready as kubectl means it; with replicas, the live object must still ask for that many
        (a workload scaled to zero since is not as deployed, whatever its status says)."""
        obj = self.workload(kind, name, namespace)
        if obj is None:
            return False
        if replicas is not None and (obj.get("spec") or {}).get("replicas", 1) != replicas:
            return False
        return readiness.workload(obj).state == readiness.State.READY
