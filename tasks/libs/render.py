"""Manifest rendering: pure functions from manifest documents to what is applied.

A container whose `image:` is a service's key (`image: datastorage`), or that
service's repository (`localhost/<project>/datastorage[:any]`), gets the service's
concrete reference; images loaded into Kind get `imagePullPolicy: Never`, so a
missing image fails fast (ErrImageNeverPull) instead of pulling from Docker Hub.
"""

import base64
import copy
import hashlib
import json
from pathlib import Path

import yaml

from . import images
from .errors import KindlingError

# Apply order: what others refer to goes first. A ConfigMap applied after the
# Deployment that mounts it leaves the pod in ContainerCreating until it appears.
KIND_ORDER = [
    "Namespace", "CustomResourceDefinition", "PriorityClass", "StorageClass", "PersistentVolume",
    "ServiceAccount", "Secret", "ConfigMap", "PersistentVolumeClaim",
    "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
    "Service", "Endpoints", "NetworkPolicy", "PodDisruptionBudget",
    "DaemonSet", "StatefulSet", "Deployment", "ReplicaSet", "Pod", "Job", "CronJob",
    "Ingress", "HorizontalPodAutoscaler",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "APIService",
]
CLUSTER_SCOPED = {
    "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
    "StorageClass", "PriorityClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
    "APIService", "Node", "IngressClass", "RuntimeClass", "CSIDriver", "VolumeAttachment",
}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


class ManifestError(KindlingError):
    pass


def load_documents(path: Path) -> list:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read manifest: {exc}")
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: invalid YAML: {exc}")
    flat = []
    for index, doc in enumerate(docs):
        items = doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" else [doc]
        for item in items or []:
            if not isinstance(item, dict) or "kind" not in item or not isinstance(item.get("metadata"), dict):
                raise ManifestError(f"{path}: document {index + 1} is not a Kubernetes object "
                                    "(needs apiVersion, kind and metadata)")
            flat.append(item)
    return flat


def pod_spec(doc: dict):
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        return (spec.get("template") or {}).get("spec")
    return None


def containers(doc: dict) -> list:
    spec = pod_spec(doc) or {}
    found = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        found.extend(c for c in spec.get(key) or [] if isinstance(c, dict))
    return found


def match_service(image: str, project: str, service_refs: dict) -> str | None:
    """The service a container image names, if any."""
    if image in service_refs:
        return image
    try:
        ref = images.parse(image)
    except images.BadReference:
        return None
    for service in service_refs:
        if ref.repository == images.repository(project, service):
            return service
    return None


def render(docs: list, *, project: str, namespace: str, service_refs: dict, never_pull: set) -> list:
    """Copy docs with image references substituted and namespaces made explicit.

    service_refs: service name -> concrete reference; never_pull: services whose image
    is loaded into the nodes (pull policy Never).
    """
    out = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        meta = doc.setdefault("metadata", {})
        if doc.get("kind") not in CLUSTER_SCOPED and not meta.get("namespace"):
            meta["namespace"] = namespace
        for container in containers(doc):
            service = match_service(str(container.get("image", "")), project, service_refs)
            if service is None:
                continue
            container["image"] = service_refs[service]
            if service in never_pull:
                container["imagePullPolicy"] = "Never"
        out.append(doc)
    return sort_for_apply(out)


def sort_for_apply(docs: list) -> list:
    rank = {kind: i for i, kind in enumerate(KIND_ORDER)}
    return sorted(docs, key=lambda d: rank.get(d.get("kind"), len(KIND_ORDER)))


def split_crds(docs: list):
    crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
    rest = [d for d in docs if d.get("kind") != "CustomResourceDefinition"]
    return crds, rest


def readiness_targets(docs: list) -> list:
    """(kind, name, namespace) of every object whose readiness the deploy waits for."""
    return [(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace", ""))
            for d in docs if d.get("kind") in WORKLOADS]


def secret_values(docs: list) -> set:
    """Values in Secrets (decoded), so logs and diagnostics can mask them."""
    values = set()
    for doc in docs:
        if doc.get("kind") != "Secret":
            continue
        for value in (doc.get("stringData") or {}).values():
            values.add(str(value))
        for value in (doc.get("data") or {}).values():
            try:
                values.add(base64.b64decode(str(value)).decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                continue
    return {v for v in values if len(v) >= 4}


def digest(docs: list) -> str:
    canonical = json.dumps(docs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def dump(docs: list) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def namespace_doc(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
