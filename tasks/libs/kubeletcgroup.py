"""Whether the kind config needs `failCgroupV1: false` for the kubelet, and the config with it. Pure.

From Kubernetes 1.35 the kubelet refuses to start on a cgroup v1 host unless its KubeletConfiguration
sets `failCgroupV1: false` (kubernetes PR 134298, pkg/kubelet/apis/config/validation/validation_linux.go);
minikube sets it for 1.35+ on cgroup v1 (kubernetes/minikube PR 22319). kind v0.32.0 does not: the
KubeletConfiguration it templates (pkg/cluster/internal/kubeadm/config.go) sets cgroupDriver (systemd
from 1.24, cgroupfs before), cgroupRoot and failSwapOn, and nothing about failCgroupV1; on a cgroup v1
host it only warns that cgroup v1 is deprecated (pkg/cluster/internal/create/create.go validateProvider).
So kindling adds it as a kubeadmConfigPatches entry, which kind merges into every KubeletConfiguration
(pkg/internal/patch/resource.go: a patch without apiVersion matches on kind alone).
"""

import copy
from dataclasses import dataclass

import yaml

from .checks import nodeversion

FIELD = "failCgroupV1"
KUBELET = "KubeletConfiguration"
PATCH = f"kind: {KUBELET}\n{FIELD}: false\n"
REFUSED_FROM = (1, 35)  # the first Kubernetes whose kubelet refuses cgroup v1 by default
KIND_API_VERSION = "kind.x-k8s.io/v1alpha4"
ADDED = f"kind config gets {KUBELET} {FIELD}: false"


@dataclass(frozen=True)
class Decision:
    add: bool
    line: str  # what kindling does, and why, in one line
    nodes: str = ""  # the node image(s) it was decided for, and where each is named


def pinned_origin(env) -> str:
    """Where the node image kindling passes as `kind create cluster --image` comes from."""
    return "KINDLING_NODE_IMAGE" if env.get("KINDLING_NODE_IMAGE") else "cluster.image"


def decide(cgroup: str, document, pinned: str, origin: str, kind_text) -> Decision:
    """cgroup: "v1", "v2" or "" (unknown), as the engine reports the host; document: the kind config
    (None when there is none); pinned: the --image kindling passes ("" for none) and origin where it is
    named; kind_text: a function returning `kind version`'s output or None, called only when a node
    takes kind's default node image."""
    if cgroup == "v2":
        return Decision(False, f"cgroup v2 host: the kubelet needs no {FIELD}")
    if cgroup != "v1":
        return Decision(False, f"cgroup version unknown (the engine did not report it): no {FIELD} patch")
    if sets_fail_cgroup_v1(document):
        return Decision(False, f"cgroup v1 host: the kind config sets {FIELD} itself; kindling leaves it")
    found = node_images(document, pinned, origin, kind_text)
    nodes = ", ".join(f"{image} ({where})" for image, where in found)
    unversioned = [image for image, _ in found if nodeversion.image_version(image) is None]
    if unversioned:
        # Added when the version is unknown: 1.35+ needs it, 1.31-1.34 already default to false, the
        # validation only ever refuses true, and a kubelet without the field decodes its config leniently
        # (its codec falls back when strict decoding fails).
        return Decision(
            True,
            f"cgroup v1 host and node image {unversioned[0]} names no Kubernetes version: {ADDED} "
            "(1.35+ kubelets need it; older ones run on cgroup v1 anyway)",
            nodes,
        )
    newest = max(_version(nodeversion.image_version(image)) for image, _ in found)
    shown = f"node v{newest[0]}.{newest[1]}"
    if newest < REFUSED_FROM:
        return Decision(
            False,
            f"cgroup v1 host and {shown}: kubelets before 1.35 run on cgroup v1 as is; no {FIELD} patch",
            nodes,
        )
    return Decision(True, f"cgroup v1 host and {shown}: {ADDED}", nodes)


def node_images(document, pinned: str, origin: str, kind_text) -> list:
    """[(image, where it is named)] of the nodes kind will create: --image replaces every node's image
    (kind v0.32.0 pkg/cluster/internal/create/create.go fixupOptions); else each node's own image, and
    kind's default for a node naming none or for the single node of a config listing none."""
    if pinned:
        return [(pinned, origin)]
    nodes = document.get("nodes") if isinstance(document, dict) else None
    nodes = [node for node in _list(nodes) if isinstance(node, dict)]
    named = [node.get("image") if isinstance(node.get("image"), str) else "" for node in nodes]
    found = []
    for image in named:
        if image and (image, "the kind config") not in found:
            found.append((image, "the kind config"))
    if not named or "" in named:
        tag, default_origin = nodeversion.kind_default(kind_text())
        found.append((f"kindest/node:{tag}", default_origin))
    return found


def sets_fail_cgroup_v1(document) -> bool:
    """Whether a KubeletConfiguration patch of the kind config, the cluster's or a node's, merge patch or
    JSON 6902, already names failCgroupV1: then the user's choice stands, whichever it is."""
    if not isinstance(document, dict):
        return False
    nodes = [node for node in _list(document.get("nodes")) if isinstance(node, dict)]
    for holder in [document, *nodes]:
        for patch in _list(holder.get("kubeadmConfigPatches")):
            if _merge_patch_sets(patch):
                return True
        for patch in _list(holder.get("kubeadmConfigPatchesJSON6902")):
            if (
                isinstance(patch, dict)
                and patch.get("kind") == KUBELET
                and FIELD in str(patch.get("patch") or "")
            ):
                return True
    return False


def with_patch(document) -> dict:
    """A copy of the kind config with the patch added (a minimal kind config when there is none)."""
    config = copy.deepcopy(document) if document else {"kind": "Cluster", "apiVersion": KIND_API_VERSION}
    config["kubeadmConfigPatches"] = [*_list(config.get("kubeadmConfigPatches")), PATCH]
    return config


def _merge_patch_sets(patch) -> bool:
    if not isinstance(patch, str):
        return False
    try:
        documents = list(yaml.safe_load_all(patch))
    except yaml.YAMLError:
        return FIELD in patch  # kind refuses the patch anyway; adding to it would not help
    return any(isinstance(doc, dict) and doc.get("kind") == KUBELET and FIELD in doc for doc in documents)


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _version(text: str) -> tuple:
    return tuple(int(part) for part in text.split("."))
