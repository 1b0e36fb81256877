"""The Kubernetes version a stack's cluster will run, which `stack.check` validates against. Pure.

The node image decides it: kind's `--image` (KINDLING_NODE_IMAGE, else the stack's
`cluster.image`) replaces the image of every node of the kind config (sigs.k8s.io/kind v0.32.0
pkg/cluster/internal/create/create.go fixupOptions); else the kind config's control-plane node
image; else the default node image of the kind release installed, whose tag names the
Kubernetes version (pkg/apis/config/defaults/image.go: kind v0.32.0's is kindest/node:v1.36.1;
pkg/apis/config/v1alpha4/default.go gives it to every node that names no image, and makes a node
without a role a control-plane node).
"""

import re
from dataclasses import dataclass

from .. import imagerefs
from .checkresult import parse_version
from .skew import KIND_DEFAULT_NODE

_VERSION_TAG_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+.].*)?$")


@dataclass(frozen=True)
class Choice:
    version: str  # Kubernetes minor version, e.g. "1.36"
    origin: str  # why: which node image, and where it was named
    note: str = ""  # something the user should know about the choice


def image_version(image: str):
    """The Kubernetes minor version a node image's tag names ("1.36" for kindest/node:v1.36.1), or None."""
    try:
        tag = imagerefs.parse(image).tag
    except imagerefs.BadReference:
        return None
    match = _VERSION_TAG_RE.match(tag or "")
    return f"{int(match[1])}.{int(match[2])}" if match else None


def config_image(document) -> str:
    """The image of the first control-plane node of a kind config (its API server), "" when none is named."""
    nodes = document.get("nodes") if isinstance(document, dict) else None
    for node in nodes if isinstance(nodes, list) else []:
        if isinstance(node, dict) and node.get("role", "control-plane") == "control-plane":
            image = node.get("image")
            return image if isinstance(image, str) else ""
    return ""


def kind_default(kind_text):
    """(node image tag, what it is) of the installed kind's default node image."""
    newest = max(KIND_DEFAULT_NODE)
    kind = parse_version(kind_text) if kind_text else None
    if kind is None:
        return KIND_DEFAULT_NODE[newest], (
            f"kind is not on PATH or its version is unknown: kind 0.{newest[1]}'s default node image"
        )
    shown = ".".join(map(str, kind))
    if kind[:2] in KIND_DEFAULT_NODE:
        return KIND_DEFAULT_NODE[kind[:2]], f"kind {shown}'s default node image"
    oldest = min(KIND_DEFAULT_NODE)
    nearest = newest if kind[:2] > newest else oldest
    return KIND_DEFAULT_NODE[nearest], (
        f"kind {shown}'s default node image, taken as kind 0.{nearest[1]}'s "
        f"(kindling knows kind 0.{oldest[1]} to 0.{newest[1]})"
    )


def cluster_version(pinned: str, pinned_origin: str, config: str, config_origin: str, kind_text) -> Choice:
    """pinned: the --image kindling passes ("" for none) and where it comes from; config: the kind
    config's control-plane image and where; kind_text: `kind version` output (None when not installed)."""
    note = ""
    for image, origin in ((pinned, pinned_origin), (config, config_origin)):
        if not image:
            continue
        version = image_version(image)
        if version is not None:
            return Choice(version, f"node image {image} ({origin})")
        note = (
            f"node image {image} ({origin}): its tag names no Kubernetes version (vX.Y.Z), so the "
            "kind default's version is assumed"
        )
        break
    tag, origin = kind_default(kind_text)
    return Choice(image_version(f"kindest/node:{tag}"), f"{origin}, kindest/node:{tag}", note)


def schema_version(wanted: str, shipped) -> tuple:
    """(the schema version to validate with, a note) among the minor versions kubernetes-validate ships:
    the wanted one, else the newest shipped below it, else the oldest shipped."""
    if wanted in shipped or not shipped:
        return wanted, ""

    def key(version):
        return tuple(int(part) for part in version.split("."))

    older = [v for v in shipped if key(v) < key(wanted)]
    chosen = max(older, key=key) if older else min(shipped, key=key)
    return chosen, (
        f"kubernetes-validate has no schemas for Kubernetes {wanted}; validating with {chosen}'s "
        "(pip install -U kubernetes-validate for newer ones)"
    )
