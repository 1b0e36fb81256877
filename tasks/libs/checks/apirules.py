"""What the API server rejects that the OpenAPI schemas let through (part of `invoke stack.check`). Pure.

The schemas type a quantity as "string or number", a label as any string and a
name as any string; the API server then parses and validates them and refuses the
object. These checks follow that code:

- quantities: k8s.io/apimachinery pkg/api/resource/quantity.go (ParseQuantity), and
  requests <= limits, non-negative (pkg/apis/core/validation/validation.go
  validateResourceRequirements, ValidateNonnegativeQuantity);
- unique names: validation.go validateContainers / validateInitContainers (container
  names across both lists), validateContainerPorts (port names), ValidateVolumes
  (volume names), ValidateVolumeMounts (mountPath unique, name a volume of the pod);
- labels and selectors: apimachinery pkg/apis/meta/v1/validation ValidateLabels,
  ValidateLabelSelector, with pkg/api/validate/content IsLabelKey / IsLabelValue;
- metadata.name: apimachinery NameIsDNSSubdomain / NameIsDNSLabel / NameIsDNS1035Label
  as each kind's validation picks them, and RBAC's IsPathSegmentName.

Duplicates the API server accepts with a warning (env names, containerPort+protocol:
pkg/api/pod/warnings.go) are returned as warnings, never as problems.
"""

import math
import re
from decimal import Decimal

from .. import render

# ---- quantities -----------------------------------------------------------------------------

# quantity.go parseQuantityString: a sign, digits, a '.' and digits (each part optional:
# "1.", ".5", even "." parse), then suffix characters and an optional signed number; the
# suffix must then be one quantity.go's suffixer knows (or e/E and an exponent).
_QUANTITY_RE = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?([eEinumkKMGTP]*[+-]?[0-9]*)")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_EXPONENT_RE = re.compile(r"[eE][+-]?[0-9]+")
QUANTITY_HELP = (
    "a number with an optional suffix: Ki Mi Gi Ti Pi Ei (powers of 1024), m k M G T P E "
    '(powers of 1000) or an exponent (e.g. "512Mi", "500m", "1e3")'
)


def quantity_value(value) -> Decimal | None:
    """The value of a quantity (a YAML number or a string), or None when the API server cannot parse it."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return Decimal(str(value)) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    match = _QUANTITY_RE.fullmatch(value)
    if not value or not match:
        return None
    sign, whole, fraction, suffix = match.groups()
    number = Decimal(f"{sign}{whole or 0}.{fraction or 0}")
    if suffix in _BINARY:
        return Decimal(number) * _BINARY[suffix]
    if suffix in _DECIMAL:
        return Decimal(number) * _DECIMAL[suffix]
    if _EXPONENT_RE.fullmatch(suffix):
        try:
            return Decimal(number) * Decimal(10) ** int(suffix[1:])
        except ArithmeticError:  # decimal's InvalidOperation and Overflow: an exponent out of any range
            return None
    return None


def check_quantities(where: str, values, problems: list) -> dict:
    """Check a map of resource name -> quantity; returns the parsed values of the good ones."""
    parsed = {}
    for name, value in (values or {}).items():
        amount = quantity_value(value)
        if amount is None:
            problems.append(f'{where}.{name} "{value}" is not a Kubernetes quantity: {QUANTITY_HELP}')
        elif amount < 0:
            problems.append(f'{where}.{name} "{value}" is negative; a resource amount must be 0 or more')
        else:
            parsed[name] = amount
    return parsed


def check_resources(where: str, resources, problems: list) -> None:
    """requests and limits of one container (validation.go validateResourceRequirements)."""
    if not isinstance(resources, dict):
        return
    limits = check_quantities(f"{where}resources.limits", resources.get("limits"), problems)
    requests = check_quantities(f"{where}resources.requests", resources.get("requests"), problems)
    for name, amount in requests.items():
        if name in limits and amount > limits[name]:
            problems.append(
                f'{where}resources.requests.{name} "{resources["requests"][name]}" is more than '
                f'its limit "{resources["limits"][name]}"; the API server needs requests <= '
                "limits"
            )


# ---- names, labels and selectors ------------------------------------------------------------

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN_RE = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_DNS_LABEL_RE = re.compile(_DNS_LABEL)
_DNS1035_LABEL_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL_NAME_RE = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")

NAME_RULES = {
    "subdomain": (
        "a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', starting and ending with a "
        "letter or digit, at most 253 characters"
    ),
    "label": (
        "a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or "
        "digit, at most 63 characters"
    ),
    "dns1035": (
        "a DNS-1035 label: lowercase letters, digits and '-', starting with a letter and ending with "
        "a letter or digit, at most 63 characters"
    ),
    "path segment": "a name that is not '.' or '..' and has no '/' or '%'",
}
SUBDOMAIN_KINDS = {
    "ConfigMap",
    "Secret",
    "Pod",
    "Deployment",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "ServiceAccount",
    "PersistentVolumeClaim",
    "PersistentVolume",
    "Ingress",
    "IngressClass",
    "NetworkPolicy",
    "PriorityClass",
    "LimitRange",
    "ResourceQuota",
    "Endpoints",
}
LABEL_KINDS = {"Namespace", "StatefulSet"}  # ValidateNamespaceName, apps' ValidateStatefulSetName
RBAC_KINDS = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
# Kinds whose spec.selector is a metav1.LabelSelector (a Service's is a plain label map).
LABEL_SELECTOR_KINDS = {
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "PersistentVolumeClaim",
}
CRONJOB_NAME_MAX = 52  # batch validation: the Jobs it creates append 11 characters, and Job names are labels
# Service names: DNS-1035 labels, or DNS-1123 labels since Kubernetes 1.36 (KEP-5311,
# RelaxedServiceNameValidation beta and on by default: validation.go ValidateServiceCreate).
RELAXED_SERVICE_NAMES_MINOR = 36


def name_rule(kind: str, version: str) -> str | None:
    if kind == "Service":
        minor = int(version.split(".")[1]) if re.fullmatch(r"1\.[0-9]+", version or "") else 0
        return "label" if minor >= RELAXED_SERVICE_NAMES_MINOR else "dns1035"
    if kind in LABEL_KINDS:
        return "label"
    if kind in RBAC_KINDS:
        return "path segment"
    return "subdomain" if kind in SUBDOMAIN_KINDS else None


def name_matches(name: str, rule: str) -> bool:
    if rule == "path segment":
        return name not in (".", "..") and "/" not in name and "%" not in name
    pattern, limit = {
        "subdomain": (_DNS_SUBDOMAIN_RE, 253),
        "label": (_DNS_LABEL_RE, 63),
        "dns1035": (_DNS1035_LABEL_RE, 63),
    }[rule]
    return len(name) <= limit and pattern.fullmatch(name) is not None


def suggested_name(name: str) -> str:
    """A DNS-1123 label close to name: lowercase, other characters turned into '-'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63].strip("-") or "name"


def check_name(doc: dict, version: str) -> list:
    name = (doc.get("metadata") or {}).get("name")
    rule = name_rule(doc.get("kind"), version)
    if not isinstance(name, str) or not name or rule is None:
        return []
    if not name_matches(name, rule):
        fix = f'; rename it, e.g. "{suggested_name(name)}"' if rule != "path segment" else ""
        return [f'metadata.name "{name}" is not {NAME_RULES[rule]}{fix}']
    if doc.get("kind") == "CronJob" and len(name) > CRONJOB_NAME_MAX:
        return [
            f'metadata.name "{name}" has {len(name)} characters; a CronJob name may have at most '
            f"{CRONJOB_NAME_MAX} (its Jobs add 11)"
        ]
    return []


def label_key_problem(key: str) -> str | None:
    """apimachinery content.IsLabelKey: [prefix/]name, prefix a DNS-1123 subdomain, name 1-63 characters."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or "/" in prefix or not name_matches(prefix, "subdomain")):
        return "its prefix (before '/') must be a DNS-1123 subdomain, e.g. example.com/name"
    if len(name) > 63 or not _LABEL_NAME_RE.fullmatch(name):
        return (
            "its name must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter "
            "or digit"
        )
    return None


def label_value_problem(value) -> str | None:
    """apimachinery content.IsLabelValue: empty, or a label name of at most 63 characters."""
    if not isinstance(value, str):
        return None  # a schema problem
    if value and (len(value) > 63 or not _LABEL_NAME_RE.fullmatch(value)):
        return (
            "a label value must be empty or 1-63 letters, digits, '-', '_' or '.', starting and ending "
            "with a letter or digit"
        )
    return None


def check_labels(where: str, labels, problems: list) -> None:
    """ValidateLabels: every key a qualified name, every value a label value."""
    if not isinstance(labels, dict):
        return
    for key, value in labels.items():
        problem = label_key_problem(str(key))
        if problem:
            problems.append(f'{where} key "{key}" is not a valid label key: {problem}')
        problem = label_value_problem(value)
        if problem:
            problems.append(f'{where}["{key}"] "{value}" is not a valid label value: {problem}')


def check_selector(where: str, selector, problems: list) -> None:
    """ValidateLabelSelector: matchLabels as labels; each matchExpression's key, operator and values."""
    if not isinstance(selector, dict):
        return
    check_labels(f"{where}.matchLabels", selector.get("matchLabels"), problems)
    for i, expression in enumerate(selector.get("matchExpressions") or []):
        if not isinstance(expression, dict):
            continue
        at = f"{where}.matchExpressions[{i}]"
        operator, values = expression.get("operator"), expression.get("values")
        if operator in ("In", "NotIn") and not values:
            problems.append(f"{at}: operator {operator} needs values")
        elif operator in ("Exists", "DoesNotExist") and values:
            problems.append(f"{at}: operator {operator} takes no values; remove them")
        elif operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            problems.append(f'{at}: operator "{operator}" is not one of In, NotIn, Exists, DoesNotExist')
        problem = label_key_problem(str(expression.get("key", "")))
        if problem:
            problems.append(f'{at}.key "{expression.get("key", "")}" is not a valid label key: {problem}')
        for value in values or []:
            problem = label_value_problem(value)
            if problem:
                problems.append(f'{at}.values "{value}" is not a valid label value: {problem}')


def templates(doc: dict) -> list:
    """(path, template) of the pod (and job) templates an object holds."""
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    if kind == "CronJob":
        job = spec.get("jobTemplate") or {}
        pod_template = (job.get("spec") or {}).get("template") or {}
        return [("spec.jobTemplate", job), ("spec.jobTemplate.spec.template", pod_template)]
    if render.pod_spec(doc) is not None and kind != "Pod":
        return [("spec.template", spec.get("template") or {})]
    return []


def check_metadata(doc: dict, version: str) -> list:
    problems = check_name(doc, version)
    check_labels("metadata.labels", (doc.get("metadata") or {}).get("labels"), problems)
    for path, template in templates(doc):
        check_labels(f"{path}.metadata.labels", (template.get("metadata") or {}).get("labels"), problems)
    spec = doc.get("spec") or {}
    if doc.get("kind") == "Service":
        check_labels("spec.selector", spec.get("selector"), problems)
    elif doc.get("kind") in LABEL_SELECTOR_KINDS and isinstance(spec.get("selector"), dict):
        check_selector("spec.selector", spec["selector"], problems)
    return problems


# ---- pods -----------------------------------------------------------------------------------


def _twice(items, key):
    """(index, value) of each item whose key repeats an earlier item's."""
    seen, repeated = set(), []
    for i, item in enumerate(items):
        value = item.get(key) if isinstance(item, dict) else None
        if value is None:
            continue
        if value in seen:
            repeated.append((i, value))
        seen.add(value)
    return repeated


def check_pod(doc: dict) -> tuple:
    """(problems, warnings) of the pod spec of an object (Pod, workload, Job, CronJob)."""
    spec = render.pod_spec(doc)
    if not isinstance(spec, dict):
        return [], []
    problems, warnings = [], []
    volumes = [v for v in spec.get("volumes") or [] if isinstance(v, dict)]
    for _, name in _twice(volumes, "name"):
        problems.append(f'volume "{name}" is defined twice; volume names must be unique in a pod')
    volume_names = {v.get("name") for v in volumes}
    # apps validation adds a volume per claim template (volumesToAddForTemplates)
    if doc.get("kind") == "StatefulSet":
        volume_names |= {
            ((t.get("metadata") or {}).get("name"))
            for t in (doc.get("spec") or {}).get("volumeClaimTemplates") or []
            if isinstance(t, dict)
        }
    for volume in volumes:
        if isinstance(volume.get("emptyDir"), dict) and "sizeLimit" in volume["emptyDir"]:
            check_quantities(
                f'volume "{volume.get("name")}": emptyDir',
                {"sizeLimit": volume["emptyDir"]["sizeLimit"]},
                problems,
            )
    init = [c for c in spec.get("initContainers") or [] if isinstance(c, dict)]
    regular = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    for _, name in _twice(regular + init, "name"):
        problems.append(
            f'container name "{name}" is used twice; names must be unique across containers and '
            "initContainers"
        )
    for container in init + regular:
        where = f'container "{container.get("name", "?")}": '
        ports = [p for p in container.get("ports") or [] if isinstance(p, dict)]
        for i, name in _twice(ports, "name"):
            problems.append(
                f'{where}ports[{i}].name "{name}" is used twice; port names must be unique in a container'
            )
        keys = [{"key": (p.get("containerPort"), p.get("protocol") or "TCP")} for p in ports]
        for i, (number, protocol) in _twice(keys, "key"):
            warnings.append(
                f"{where}ports[{i}]: containerPort {number}/{protocol} is declared twice (the "
                "API server accepts it with a warning; kubectl apply may merge the entries)"
            )
        env = [e for e in container.get("env") or [] if isinstance(e, dict)]
        for i, name in _twice(env, "name"):
            warnings.append(
                f"{where}env[{i}] {name} is defined twice; the later value wins (the API server "
                "warns that the earlier one may be dropped by kubectl apply)"
            )
        mounts = [m for m in container.get("volumeMounts") or [] if isinstance(m, dict)]
        for i, path in _twice(mounts, "mountPath"):
            problems.append(
                f'{where}volumeMounts[{i}].mountPath "{path}" is used twice; each mount needs its own path'
            )
        for i, mount in enumerate(mounts):
            if mount.get("name") and mount["name"] not in volume_names:
                shown = ", ".join(sorted(str(n) for n in volume_names if n)) or "none"
                problems.append(
                    f'{where}volumeMounts[{i}].name "{mount["name"]}" is not a volume of the pod '
                    f"(volumes: {shown}); add the volume or correct the name"
                )
        check_resources(where, container.get("resources"), problems)
    return problems, warnings


def check_claims(doc: dict) -> list:
    """Storage requests of a PersistentVolumeClaim and of a StatefulSet's volumeClaimTemplates."""
    problems = []
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    claims = [("spec.", spec)] if kind == "PersistentVolumeClaim" else []
    if kind == "StatefulSet":
        claims += [
            (f"spec.volumeClaimTemplates[{i}].spec.", (t or {}).get("spec") or {})
            for i, t in enumerate(spec.get("volumeClaimTemplates") or [])
            if isinstance(t, dict)
        ]
    for where, claim in claims:
        check_resources(where, claim.get("resources"), problems)
    return problems


def check(doc: dict, version: str) -> tuple:
    """(problems, warnings) of one object: names, labels, selectors, pod spec, quantities."""
    pod_problems, warnings = check_pod(doc)
    return check_metadata(doc, version) + pod_problems + check_claims(doc), warnings
