"""Version skew (`invoke doctor`, preflight.py): kubectl against the cluster's API server, kind
against the node image."""

import json
import re
from pathlib import Path

from .. import imagerefs
from ..runs import ClusterState
from .checkresult import OK, WARN, Check, parse_version, query

# The default node image of each kind release (pkg/apis/config/defaults/image.go at its
# tag): the newest Kubernetes that release supports. Newer node images need a newer kind.
KIND_DEFAULT_NODE = {
    (0, 20): "v1.27.3",
    (0, 21): "v1.29.1",
    (0, 22): "v1.29.2",
    (0, 23): "v1.30.0",
    (0, 24): "v1.31.0",
    (0, 25): "v1.31.2",
    (0, 26): "v1.32.0",
    (0, 27): "v1.32.2",
    (0, 28): "v1.33.1",
    (0, 29): "v1.33.1",
    (0, 30): "v1.34.0",
    (0, 31): "v1.35.0",
    (0, 32): "v1.36.1",
}
KUBECTL_SKEW = 1  # kubernetes.io version skew policy: kubectl within one minor of kube-apiserver


def skew_checks(runner, stack, home: Path, kubectl_text, kind_text, server=None) -> list:
    """server: the API server's answer to `kubectl version` (server_version), when already asked."""
    checks = []
    if kubectl_text:
        checks.append(
            kubectl_skew_check(
                runner,
                ClusterState(home, stack.cluster_name).kubeconfig,
                stack.cluster_name,
                kubectl_text,
                server,
            )
        )
    if kind_text:
        checks.append(node_image_check(kind_text, stack.node_image))
    return checks


def api_server_version(runner, kubeconfig: Path) -> tuple:
    """(the API server's gitVersion, "") through kubeconfig, or (None, why not); (None, "") when there
    is no kubeconfig yet."""
    if not kubeconfig.exists():
        return None, ""
    result, failure = query(
        runner,
        ["kubectl", "--kubeconfig", str(kubeconfig), "version", "-o", "json", "--request-timeout=5s"],
        timeout=15,
    )
    try:
        return json.loads(result.stdout)["serverVersion"]["gitVersion"], ""
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, failure or "no serverVersion"


def kubectl_skew_check(runner, kubeconfig: Path, cluster: str, client_text: str, server=None) -> Check:
    if not kubeconfig.exists():
        return Check("kubectl skew", OK, f"no cluster yet ({cluster}); checked once it is up")
    server, failure = server or api_server_version(runner, kubeconfig)
    if server is None:
        return Check("kubectl skew", OK, f"no cluster yet: {cluster}'s API server did not answer ({failure})")
    client, server_version = parse_version(client_text), parse_version(server)
    if not client or not server_version:
        return Check(
            "kubectl skew", WARN, f"cannot compare kubectl {client_text!r} with the server's {server!r}"
        )
    server = f"{server_version[0]}.{server_version[1]}"
    shown = f"kubectl {client[0]}.{client[1]}, cluster {cluster} Kubernetes {server}"
    if abs(client[1] - server_version[1]) <= KUBECTL_SKEW and client[0] == server_version[0]:
        return Check("kubectl skew", OK, shown)
    return Check(
        "kubectl skew",
        WARN,
        f"{shown}: kubectl supports one minor version either side of the API "
        "server (kubernetes.io version skew policy)",
        f"use kubectl {server_version[0]}.{server_version[1] - 1}-{server_version[0]}."
        f"{server_version[1] + 1}: https://kubernetes.io/docs/tasks/tools/",
    )


def node_image_check(kind_text: str, node_image: str) -> Check:
    kind = parse_version(kind_text)
    if kind is None:
        return Check("node image", WARN, f"kind version unknown ({kind_text.strip()[:60]!r})")
    kind_shown = ".".join(map(str, kind))
    if not node_image:
        return Check("node image", OK, f"kind {kind_shown}'s default")
    try:
        tag = imagerefs.parse(node_image).tag
    except imagerefs.BadReference:
        tag = ""  # load_stack has reported it
    match = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", tag)
    default = KIND_DEFAULT_NODE.get(kind[:2])
    if not match or default is None:
        why = (
            "its tag is not vX.Y.Z"
            if not match
            else f"kindling knows kind releases up to 0.{max(KIND_DEFAULT_NODE)[1]}"
        )
        return Check("node image", OK, f"{node_image} with kind {kind_shown} (not compared: {why})")
    wanted, newest = (int(match[1]), int(match[2])), parse_version(default)[:2]
    if wanted > newest:
        return Check(
            "node image",
            WARN,
            f"{node_image} is Kubernetes {wanted[0]}.{wanted[1]}, newer than kind "
            f"{kind_shown} supports (its newest node image is {default})",
            f"upgrade kind to a release whose notes list {wanted[0]}.{wanted[1]} node images, or set "
            f"cluster.image (or KINDLING_NODE_IMAGE) to kindest/node:{default}",
        )
    return Check("node image", OK, f"{node_image} (kind {kind_shown} supports up to {default})")
