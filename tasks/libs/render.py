"""Manifest rendering: pure functions from manifest documents to what is applied.

A container whose `image:` is a service's key (`image: datastorage`), or that
service's repository (`localhost/<project>/datastorage[:any]`, or as the stack's naming
template composes it), gets the service's
concrete reference; images loaded into Kind get `imagePullPolicy: Never`, so a
missing image fails fast (ErrImageNeverPull) instead of pulling from Docker Hub.
"""

import base64
import copy
import hashlib
import json
import re
from pathlib import Path

import yaml

from . import imagerefs
from .errors import KindlingError

# Apply order: what others refer to goes first. A ConfigMap applied after the
# Deployment that mounts it leaves the pod in ContainerCreating until it appears.
KIND_ORDER = [
    "Namespace",
    "CustomResourceDefinition",
    "PriorityClass",
    "StorageClass",
    "PersistentVolume",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "Endpoints",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "DaemonSet",
    "StatefulSet",
    "Deployment",
    "ReplicaSet",
    "Pod",
    "Job",
    "CronJob",
    "Ingress",
    "HorizontalPodAutoscaler",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "APIService",
]
CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "APIService",
    "Node",
    "IngressClass",
    "RuntimeClass",
    "CSIDriver",
    "VolumeAttachment",
}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


class ManifestError(KindlingError):
    pass


def load_documents(path: Path) -> list:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read manifest: {exc}")
    return parse_documents(text, path)


def parse_documents(text: str, path) -> list:
    """The Kubernetes objects of a multi-document YAML text (Lists flattened); path names where it
    came from in errors (a manifest file, or the chart or kustomization it was rendered from)."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: invalid YAML: {exc}") from None
    flat = []
    for index, doc in enumerate(docs):
        items = doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" else [doc]
        for item in items or []:
            if not isinstance(item, dict) or "kind" not in item or not isinstance(item.get("metadata"), dict):
                raise ManifestError(
                    f"{path}: document {index + 1} is not a Kubernetes object "
                    "(needs apiVersion, kind and metadata)"
                )
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


def match_service(
    image: str,
    project: str,
    service_refs: dict,
    registry: str = imagerefs.LOCAL_REGISTRY,
    template: str = imagerefs.DEFAULT_NAME_TEMPLATE,
):
    """The service a container image names, if any: its key, or its repository (any tag), as the
    stack's naming template composes it."""
    if image in service_refs:
        return image
    try:
        ref = imagerefs.parse(image)
    except imagerefs.BadReference:
        return None
    for service in service_refs:
        if ref.repository in (
            imagerefs.repository(project, service, template=template),
            imagerefs.repository(project, service, registry, template),
        ):
            return service
    return None


def render(
    docs: list,
    *,
    project: str,
    namespace: str,
    service_refs: dict,
    pull_policies: dict,
    registry: str = imagerefs.LOCAL_REGISTRY,
    template: str = imagerefs.DEFAULT_NAME_TEMPLATE,
) -> list:
    """Copy docs with image references substituted and namespaces made explicit.

    service_refs: service name -> concrete reference; pull_policies: service -> policy to set
    (Never for images loaded into the nodes, IfNotPresent for images pulled from a registry);
    template: the stack's image naming template (imagerefs.name).
    """
    out = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        meta = doc.setdefault("metadata", {})
        if doc.get("kind") not in CLUSTER_SCOPED and not meta.get("namespace"):
            meta["namespace"] = namespace
        for container in containers(doc):
            service = match_service(
                str(container.get("image", "")), project, service_refs, registry, template
            )
            if service is None:
                continue
            container["image"] = service_refs[service]
            if service in pull_policies:
                container["imagePullPolicy"] = pull_policies[service]
        out.append(doc)
    return sort_for_apply(out)


def sort_for_apply(docs: list) -> list:
    rank = {kind: i for i, kind in enumerate(KIND_ORDER)}
    return sorted(docs, key=lambda d: rank.get(d.get("kind"), len(KIND_ORDER)))


def teardown_order(objects: list) -> list:
    """[kind, name, namespace] entries in reverse apply order: custom resources first (their
    controllers may still need the rest), then workloads, then configuration, CRDs last."""
    rank = {kind: i for i, kind in enumerate(KIND_ORDER)}
    return sorted(
        objects, key=lambda o: 1 if o[0] == "CustomResourceDefinition" else -rank.get(o[0], len(KIND_ORDER))
    )


def split_crds(docs: list):
    crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
    rest = [d for d in docs if d.get("kind") != "CustomResourceDefinition"]
    return crds, rest


def readiness_targets(docs: list) -> list:
    """(kind, name, namespace) of every object whose readiness the deploy waits for."""
    return [
        (d["kind"], d["metadata"]["name"], d["metadata"].get("namespace", ""))
        for d in docs
        if d.get("kind") in WORKLOADS
    ]


def manifest_replicas(docs: list) -> dict:
    """(kind, name, namespace) -> the replica count the manifest asks for (the API default is 1)."""
    return {
        (d["kind"], d["metadata"]["name"], d["metadata"].get("namespace", "")): (d.get("spec") or {}).get(
            "replicas", 1
        )
        for d in docs
        if d.get("kind") in ("Deployment", "StatefulSet")
    }


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


class KubeDumper(yaml.SafeDumper):
    """YAML that kubectl and kind read back as written. They read it with sigs.k8s.io/yaml, whose
    go-yaml v2 (goyaml.v2/resolve.go) takes some plain scalars PyYAML writes unquoted for strings
    as other types: y, Y, n and N as booleans, and 1e3 or 5. as floats. A string that would read
    so is quoted."""


yaml.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^[yYnN]$"), list("yYnN"), Dumper=KubeDumper)
yaml.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"),
    Dumper=KubeDumper,
)


def dump(docs: list) -> str:
    """Objects as the YAML stream kubectl applies (see KubeDumper)."""
    return yaml.dump_all(docs, Dumper=KubeDumper, sort_keys=False)


def namespace_doc(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


COVERAGE_DIR = "/coverdata"
COVERAGE_VOLUME = "kindling-coverdata"


def coverage_kind_config(config: dict | None, host_dir: str) -> dict:
    """The Kind config with the host folder mounted at /coverdata on every node."""
    config = copy.deepcopy(config) if config else {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4"}
    nodes = config.setdefault("nodes", [{"role": "control-plane"}])
    for node in nodes:
        mounts = node.setdefault("extraMounts", [])
        if not any(m.get("containerPath") == COVERAGE_DIR for m in mounts):
            mounts.append({"hostPath": host_dir, "containerPath": COVERAGE_DIR})
    return config


def add_coverage(docs: list, covered_images: set, pod_security_context: dict | None = None) -> list:
    """Containers running a covered image write counters to GOCOVERDIR=/coverdata (a node hostPath);
    their pods' securityContext gets pod_security_context's fields (e.g. runAsUser: 0)."""
    out = copy.deepcopy(docs)
    for doc in out:
        spec = pod_spec(doc)
        if spec is None:
            continue
        touched = False
        for container in spec.get("containers") or []:
            if container.get("image") not in covered_images:
                continue
            env = [e for e in container.get("env") or [] if e.get("name") != "GOCOVERDIR"]
            container["env"] = env + [{"name": "GOCOVERDIR", "value": COVERAGE_DIR}]
            mounts = [m for m in container.get("volumeMounts") or [] if m.get("name") != COVERAGE_VOLUME]
            container["volumeMounts"] = mounts + [{"name": COVERAGE_VOLUME, "mountPath": COVERAGE_DIR}]
            touched = True
        if touched:
            volumes = [v for v in spec.get("volumes") or [] if v.get("name") != COVERAGE_VOLUME]
            spec["volumes"] = volumes + [
                {"name": COVERAGE_VOLUME, "hostPath": {"path": COVERAGE_DIR, "type": "DirectoryOrCreate"}}
            ]
            if pod_security_context:
                spec["securityContext"] = {**(spec.get("securityContext") or {}), **pod_security_context}
    return out


def covered_workloads(docs: list) -> list:
    """(kind, name, namespace, matchLabels) of workloads that mount the coverage folder."""
    found = []
    for doc in docs:
        spec = pod_spec(doc) or {}
        if doc.get("kind") in ("Deployment", "StatefulSet") and any(
            v.get("name") == COVERAGE_VOLUME for v in spec.get("volumes") or []
        ):
            labels = ((doc.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            found.append((doc["kind"], doc["metadata"]["name"], doc["metadata"].get("namespace", ""), labels))
    return found


def env_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


# Kind's documented local-registry pattern (kind docs, "Local Registry", kind-with-registry.sh).
CONTAINERD_REGISTRY_PATCH = (
    '[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"'
)


def kind_registry_config(config: dict | None) -> dict:
    """The Kind config with containerd reading per-registry hosts.toml files from certs.d."""
    config = copy.deepcopy(config) if config else {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4"}
    patches = config.setdefault("containerdConfigPatches", [])
    if CONTAINERD_REGISTRY_PATCH not in patches:
        patches.append(CONTAINERD_REGISTRY_PATCH)
    return config


def registry_hosts_toml(registry_name: str, container_port: int = 5000) -> str:
    """Inside a node `localhost` is the node itself: send localhost:<port> to the registry container."""
    return f'[host."http://{registry_name}:{container_port}"]\n'


# The first line of every hosts.toml kindling writes for a loopback registry: a file without it is
# someone else's (kind's local-registry guide, a user's own) and is never overwritten.
HOSTS_TOML_MARK = "# kindling:"


def loopback_hosts_toml(registry: str, url: str, how: str, skip_verify: bool = False) -> str:
    """hosts.toml sending a node's pulls of `registry`, a registry on this host's loopback, to `url`, an
    address of this host the node reaches (delivery/loopback.py). Only pulls go there (containerd
    docs/hosts.md, capabilities); skip_verify only when the pushes skip TLS verification too."""
    lines = [
        f"{HOSTS_TOML_MARK} {registry} is on the host's loopback; the node reaches the host at {url} ({how})",
        f'[host."{url}"]',
        '  capabilities = ["pull", "resolve"]',
    ]
    if skip_verify and url.startswith("https://"):
        lines.append("  skip_verify = true")
    return "\n".join(lines) + "\n"


def local_registry_hosting(host: str) -> dict:
    """KEP-1755's ConfigMap telling tools where the cluster's local registry is."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "local-registry-hosting", "namespace": "kube-public"},
        "data": {
            "localRegistryHosting.v1": f'host: "{host}"\n'
            'help: "https://kind.sigs.k8s.io/docs/user/local-registry/"\n'
        },
    }


def declared_local_registry(configmap: dict | None) -> str | None:
    """The registry host a cluster's local-registry-hosting ConfigMap (KEP-1755) says its nodes pull
    from by the name the host pushes to: its `host`, unless a different `hostFromContainerRuntime`
    says the nodes know it by another name."""
    text = ((configmap or {}).get("data") or {}).get("localRegistryHosting.v1")
    try:
        hosting = yaml.safe_load(text) if isinstance(text, str) else None
    except yaml.YAMLError:
        return None
    if not isinstance(hosting, dict) or not hosting.get("host"):
        return None
    host, runtime = str(hosting["host"]), hosting.get("hostFromContainerRuntime")
    return host if not runtime or str(runtime) == host else None
