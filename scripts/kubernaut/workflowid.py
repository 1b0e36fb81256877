"""Kubernaut's workflow id of a RemediationWorkflow, computed as Kubernaut computes it.

Kubernaut derives a workflow's catalog id from its content alone (pkg/shared/contenthash in
the Kubernaut checkout): the JSON of apiVersion, kind, metadata.name and spec, marshalled by Go's
encoding/json from the RemediationWorkflowSpec struct (MarshalCleanCRDContent), hashed with
SHA-256 (ComputeContentHash), and the hex digest turned into a UUIDv5 in a fixed namespace
(DeterministicUUID). Go writes struct fields in declaration order and leaves `omitempty` fields
out when empty, so the spec's field order and omitempty rules below follow the struct tags of
api/remediationworkflow/v1alpha1/remediationworkflow_types.go; a field added there must be added
here. Pure functions, Python standard library only.
"""

import decimal
import hashlib
import json
import math
import uuid

# contenthash.go kubernautNamespace.
WORKFLOW_NAMESPACE = uuid.UUID("6ba7b810-9dad-51d0-80b7-00c04fd430c8")

ALWAYS, EMPTY, NIL = "always", "empty", "nil"

# Field kinds: "str", "bool", "float" (*float64), "json" (*apiextensionsv1.JSON: the raw value),
# "strs" ([]string), "strmap" (map[string]string), a struct name, or ("list", struct name).
# (json name, kind, when Go leaves it out), in the struct's declaration order: ALWAYS written,
# EMPTY (`omitempty` on a value: "", false, an empty slice or map), NIL (`omitempty` on a pointer:
# only when absent, so a 0 or {} is written).
STRUCTS = {
    "RemediationWorkflowSpec": [
        ("version", "str", ALWAYS),
        ("description", "RemediationWorkflowDescription", ALWAYS),
        ("actionType", "str", ALWAYS),
        ("labels", "RemediationWorkflowLabels", ALWAYS),
        ("customLabels", "strmap", EMPTY),
        ("detectedLabels", "json", NIL),
        ("execution", "RemediationWorkflowExecution", ALWAYS),
        ("dependencies", "RemediationWorkflowDependencies", NIL),
        ("maintainers", ("list", "RemediationWorkflowMaintainer"), EMPTY),
        ("parameters", ("list", "RemediationWorkflowParameter"), ALWAYS),
        ("rollbackParameters", ("list", "RemediationWorkflowParameter"), EMPTY),
    ],
    "RemediationWorkflowDescription": [
        ("what", "str", ALWAYS),
        ("whenToUse", "str", ALWAYS),
        ("whenNotToUse", "str", EMPTY),
        ("preconditions", "str", EMPTY),
    ],
    "RemediationWorkflowMaintainer": [
        ("name", "str", ALWAYS),
        ("email", "str", ALWAYS),
    ],
    "RemediationWorkflowLabels": [
        ("severity", "strs", ALWAYS),
        ("environment", "strs", ALWAYS),
        ("component", "strs", ALWAYS),
        ("priority", "str", ALWAYS),
        ("cluster", "strs", EMPTY),
    ],
    "RemediationWorkflowExecution": [
        ("engine", "str", EMPTY),
        ("bundle", "str", EMPTY),
        ("bundleDigest", "str", EMPTY),
        ("engineConfig", "json", NIL),
        ("serviceAccountName", "str", EMPTY),
    ],
    "RemediationWorkflowDependencies": [
        ("secrets", ("list", "RemediationWorkflowResourceDependency"), EMPTY),
        ("configMaps", ("list", "RemediationWorkflowResourceDependency"), EMPTY),
    ],
    "RemediationWorkflowResourceDependency": [
        ("name", "str", ALWAYS),
    ],
    "RemediationWorkflowParameter": [
        ("name", "str", ALWAYS),
        ("type", "str", ALWAYS),
        ("required", "bool", ALWAYS),
        ("description", "str", ALWAYS),
        ("enum", "strs", EMPTY),
        ("pattern", "str", EMPTY),
        ("minimum", "float", NIL),
        ("maximum", "float", NIL),
        ("default", "json", NIL),
        ("dependsOn", "strs", EMPTY),
    ],
}

# Go's encoding/json escapes these inside strings (HTMLEscape, and the two JavaScript line breaks).
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_string(text: str) -> str:
    """A JSON string as Go's json.Marshal writes it."""
    encoded = json.dumps(text, ensure_ascii=False)
    return "".join(_GO_ESCAPES.get(ch, ch) for ch in encoded)


def go_float(value) -> str:
    """A float64 as Go's json.Marshal writes it (encoding/json floatEncoder): the shortest digits
    that read back the same, in decimal between 1e-6 and 1e21, else with an exponent ("1e-7")."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{value} cannot be written as JSON")
    shortest = repr(value)  # Python's repr and Go's 'g'/-1 pick the same shortest digits
    if value == 0 or 1e-6 <= abs(value) < 1e21:
        text = format(decimal.Decimal(shortest), "f")
        return text[:-2] if text.endswith(".0") else text
    mantissa, exponent = shortest.split("e")
    return f"{mantissa}e{exponent[0]}{exponent[1:].lstrip('0') or '0'}"


def go_raw_json(value) -> str:
    """A raw JSON value (apiextensionsv1.JSON) compacted as json.Marshal writes it. The API server
    serves such values with sorted keys, which is what kubectl's JSON holds."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, str):
        return go_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, list):
        return "[" + ",".join(go_raw_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{go_string(k)}:{go_raw_json(value[k])}" for k in sorted(value)) + "}"
    raise TypeError(f"not a JSON value: {value!r}")


def _omitted(value, omit) -> bool:
    if omit == NIL:
        return value is None
    if omit == EMPTY:
        return value is None or value is False or value in ("", [], {})
    return False


def _encode(value, kind) -> str:
    if isinstance(kind, tuple):  # ("list", struct)
        if value is None:
            return "null"
        return "[" + ",".join(_encode(item, kind[1]) for item in value) + "]"
    if kind == "str":
        return go_string(value or "")
    if kind == "bool":
        return "true" if value else "false"
    if kind == "float":
        return go_float(value)
    if kind == "json":
        return go_raw_json(value)
    if kind == "strs":
        return "null" if value is None else "[" + ",".join(go_string(v) for v in value) + "]"
    if kind == "strmap":
        return (
            "null"
            if value is None
            else "{" + ",".join(f"{go_string(k)}:{go_string(value[k])}" for k in sorted(value)) + "}"
        )
    return _struct(value or {}, kind)


def _struct(obj: dict, name: str) -> str:
    fields = (
        f"{go_string(key)}:{_encode(obj.get(key), kind)}"
        for key, kind, omit in STRUCTS[name]
        if not _omitted(obj.get(key), omit)
    )
    return "{" + ",".join(fields) + "}"


def clean_content(workflow: dict) -> str:
    """MarshalCleanCRDContent: the workflow's apiVersion, kind, metadata.name and spec as JSON."""
    api_version = workflow.get("apiVersion") or "kubernaut.ai/v1alpha1"
    kind = workflow.get("kind") or "RemediationWorkflow"
    name = (workflow.get("metadata") or {}).get("name", "")
    return (
        f'{{"apiVersion":{go_string(api_version)},"kind":{go_string(kind)},'
        f'"metadata":{{"name":{go_string(name)}}},'
        f'"spec":{_struct(workflow.get("spec") or {}, "RemediationWorkflowSpec")}}}'
    )


def content_hash(workflow: dict) -> str:
    """ComputeContentHash of the clean content: SHA-256, hex."""
    return hashlib.sha256(clean_content(workflow).encode("utf-8")).hexdigest()


def workflow_id(digest: str) -> str:
    """DeterministicUUID: the UUIDv5 (SHA-1) of the content hash in Kubernaut's namespace."""
    return str(uuid.uuid5(WORKFLOW_NAMESPACE, digest))
