"""Image references: the one place that composes, parses and normalises them.

Kubernetes and containerd read an image name with no registry as Docker Hub's
(`api` means `docker.io/library/api:latest`), while podman names its local images
`localhost/<name>`. Every reference kindling builds, loads or renders is made
here, so the `localhost/` prefix is added once and never stripped or doubled.
"""

import re
import string
from dataclasses import dataclass

from .errors import KindlingError

LOCAL_REGISTRY = "localhost"
DEFAULT_REGISTRY = "docker.io"
OFFICIAL_NAMESPACE = "library"
# How a built image is named (a stack's `images.name`): {registry} is where images go ("localhost" for
# podman's store and kind loads, the registry's host in registry mode).
NAME_FIELDS = ("registry", "project", "service")
DEFAULT_NAME_TEMPLATE = "{registry}/{project}/{service}"

# Grammar from the distribution project's reference package (reference/regexp.go).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_COMPONENT_RE = re.compile(rf"^{_COMPONENT}$")
_DOMAIN_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)"
    r"(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*"
    r"(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$"
)
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")


class BadReference(KindlingError, ValueError):
    """An image reference that does not follow the reference grammar."""


@dataclass(frozen=True)
class ImageRef:
    registry: str  # "" when the reference names none
    path: str  # repository path without the registry, e.g. "kubernaut/datastorage"
    tag: str = ""
    digest: str = ""

    @property
    def repository(self) -> str:
        return f"{self.registry}/{self.path}" if self.registry else self.path

    def __str__(self) -> str:
        text = self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _looks_like_registry(first: str) -> bool:
    # The rule docker and containerd apply: the first path component is a
    # registry when it has a dot or a port, or is exactly "localhost".
    return "." in first or ":" in first or first == "localhost" or first.startswith("[")


def parse(reference: str) -> ImageRef:
    """Split a reference into registry, path, tag and digest, without normalising."""
    if not isinstance(reference, str) or not reference or reference != reference.strip():
        raise BadReference(f"{reference!r} is not an image reference")
    rest, digest = reference, ""
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise BadReference(f"{reference!r}: bad digest {digest!r}")
    registry = ""
    first, sep, remainder = rest.partition("/")
    if sep and _looks_like_registry(first):
        if not _DOMAIN_RE.match(first):
            raise BadReference(f"{reference!r}: bad registry {first!r}")
        registry, rest = first, remainder
    tag = ""
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not TAG_RE.match(tag):
            raise BadReference(f"{reference!r}: bad tag {tag!r}")
    if not rest or not all(_COMPONENT_RE.match(part) for part in rest.split("/")):
        raise BadReference(
            f"{reference!r}: repository path {rest!r} must be lowercase letters, digits "
            "and separators (. _ __ -), components joined by /"
        )
    if len(str(ImageRef(registry, rest))) > 255:
        raise BadReference(f"{reference!r}: repository name longer than 255 characters")
    return ImageRef(registry, rest, tag, digest)


def normalize(reference: str) -> str:
    """The fully qualified name a Kubernetes node (containerd) stores for a reference."""
    ref = parse(reference)
    registry = ref.registry or DEFAULT_REGISTRY
    path = ref.path
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"{OFFICIAL_NAMESPACE}/{path}"
    tag = ref.tag or ("" if ref.digest else "latest")
    return str(ImageRef(registry, path, tag, ref.digest))


def node_name(reference: str) -> str:
    """The name a node's containerd lists a reference under, as `crictl images -o json` shows it.

    A reference pinned by digest resolves by that digest alone (containerd's
    reference/docker.ParseDockerRef drops the tag of `name:tag@sha256:...`), and
    crictl lists it in repoDigests as `repository@sha256:...`; any other reference
    is a repoTags entry, `repository:tag`.
    """
    ref = parse(normalize(reference))
    return str(ImageRef(ref.registry, ref.path, "", ref.digest)) if ref.digest else str(ref)


def same_image(a: str, b: str) -> bool:
    return normalize(a) == normalize(b)


def local_ref(
    project: str,
    service: str,
    tag: str,
    registry: str = LOCAL_REGISTRY,
    template: str = DEFAULT_NAME_TEMPLATE,
) -> str:
    """The reference of a service's built image: `localhost/<project>/<service>:<tag>` by default,
    or as the stack's naming template (`images.name`) says."""
    check_tag(tag)
    text = f"{repository(project, service, registry, template)}:{tag}"
    parse(text)  # raises on a project or service name the grammar refuses
    return text


def repository(
    project: str, service: str, registry: str = LOCAL_REGISTRY, template: str = DEFAULT_NAME_TEMPLATE
) -> str:
    return template.format(registry=registry, project=project, service=service)


def name_template_problem(template, project: str) -> tuple:
    """(problem, fix) when a naming template cannot name every service's repository; ("", "") when it can.

    Only known fields; {registry} first, as the registry is where the nodes find an image (a name
    without one is Docker Hub's to them); {service}, so services do not share a repository; and the
    result, in every delivery mode, a repository with no tag or digest (kindling adds the tag)."""
    fields = ", ".join("{" + f + "}" for f in NAME_FIELDS)
    if not isinstance(template, str) or not template.strip():
        return "must be a non-empty string", f'write e.g. "{DEFAULT_NAME_TEMPLATE}"'
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"{template!r} is not a template: {exc}", "write fields in braces, e.g. {service}"
    used = [name for _, name, spec, conversion in parts if name is not None]
    unknown = [name or "{}" for name in used if name not in NAME_FIELDS]
    if unknown:
        return f"{template!r} uses unknown field(s) {', '.join(unknown)}", f"use only {fields}"
    if any(spec or conversion for _, name, spec, conversion in parts if name is not None):
        return f"{template!r}: fields take no format specification", f"write them plainly: {fields}"
    if "service" not in used:
        return (
            f"{template!r} has no {{service}}, so every service would share one repository",
            'add it, e.g. "{registry}/{service}"',
        )
    if not template.startswith("{registry}/"):
        return (
            f"{template!r} does not start with {{registry}}/: a name without a registry is read as "
            "Docker Hub's by the nodes"
        ), 'start it with {registry}/, e.g. "{registry}/{service}"'
    for registry in (LOCAL_REGISTRY, "localhost:5001"):
        try:
            ref = parse(repository(project, "service", registry, template))
        except BadReference as exc:
            return (
                f"{template!r} does not give an image name: {exc}",
                "use lowercase letters, digits, '.', '_', '-' and '/'",
            )
        if ref.tag or ref.digest or ref.registry != registry:
            return (
                f"{template!r} must name a repository (kindling adds the tag), and it gives {ref}",
                "remove the ':' or '@' part",
            )
    return "", ""


def check_tag(tag: str) -> str:
    if not isinstance(tag, str) or not TAG_RE.match(tag):
        raise BadReference(
            f"{tag!r} is not a valid image tag: use 1-128 characters of letters, digits, "
            "'_', '.' and '-', not starting with '.' or '-'"
        )
    return tag


def _tag_part(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip(".-")
    return cleaned.lower() or "unknown"


def unique_tag(service: str, user: str, git_sha: str | None, unix_seconds: int) -> str:
    """DD-TEST-001: `{service}-{user}-{git short sha}-{unix seconds}`.

    Unique per run, so parallel runs on one host never overwrite each other's images.
    """
    parts = [_tag_part(service), _tag_part(user), _tag_part(git_sha or "nogit"), str(int(unix_seconds))]
    tag = "-".join(parts)
    if len(tag) > 128:  # keep the distinctive tail (sha and time) when a name is long
        tag = tag[-128:].lstrip(".-")
    return check_tag(tag)
