"""Custom resources checked offline against the openAPIV3Schema of their CRD, as the API server
checks them when kubectl applies them.

A CRD's schema is a structural OpenAPI v3 schema (apiextensions.k8s.io/v1). The API server
(k8s.io/apiextensions-apiserver, pkg/apiserver/validation) validates a custom resource against it
after pruning the fields the schema does not declare; kubectl's default `--validate=strict` asks
for strict field validation, so a pruned field is an error ("unknown field"), not silently
dropped. `to_json_schema` rewrites the structural schema into a JSON schema (draft 4, whose
boolean exclusiveMinimum OpenAPI v3 shares) that says the same:

- an object schema with `properties` or none, and neither `additionalProperties` nor
  `x-kubernetes-preserve-unknown-fields: true`, takes no other fields;
- `nullable: true` lets the value be null; a null a field without it holds is dropped before
  validation, as the API server prunes it (so a required field given null is missing);
- `x-kubernetes-int-or-string: true` takes an integer or a string;
- `x-kubernetes-embedded-resource: true` takes apiVersion, kind and metadata beside its
  properties;
- at the top, apiVersion, kind and metadata are always allowed: metadata is ObjectMeta, which
  the CRD may only narrow (name, generateName).

Left to the API server, and said so: CEL rules (`x-kubernetes-validations`), `format`, and the
list-type uniqueness of `x-kubernetes-list-type: set/map`.
"""

import copy

# Keywords under which a structural schema's own fields are declared; value validations (allOf,
# anyOf, oneOf, not) may not declare fields, so strictness is never added inside them.
_STRUCTURE = ("properties", "items", "additionalProperties")
_TOP_FIELDS = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}}


def to_json_schema(schema: dict) -> dict:
    """The JSON schema (draft 4) that accepts what the API server accepts under this structural
    schema, with strict field validation."""
    converted = _convert(copy.deepcopy(schema) if isinstance(schema, dict) else {})
    converted.setdefault("type", "object")
    properties = converted.setdefault("properties", {})
    for name, field_schema in _TOP_FIELDS.items():
        properties.setdefault(name, field_schema)
    metadata = properties.get("metadata") or {}
    # ObjectMeta's other fields are never pruned: the CRD's metadata schema only narrows some.
    metadata.pop("additionalProperties", None)
    properties["metadata"] = {**metadata, "type": "object"}
    return converted


def _convert(schema: dict) -> dict:
    for key in _STRUCTURE:
        value = schema.get(key)
        if key == "properties" and isinstance(value, dict):
            schema[key] = {name: _convert(sub) for name, sub in value.items() if isinstance(sub, dict)}
        elif isinstance(value, dict):
            schema[key] = _convert(value)
    if schema.pop("x-kubernetes-int-or-string", False):
        schema.setdefault("type", ["integer", "string"])
    if schema.get("type") == "object" or "properties" in schema:
        if schema.get("x-kubernetes-embedded-resource"):
            properties = schema.setdefault("properties", {})
            for name, field_schema in {**_TOP_FIELDS, "metadata": {"type": "object"}}.items():
                properties.setdefault(name, field_schema)
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    if schema.pop("nullable", False):
        if isinstance(schema.get("type"), str):
            schema["type"] = [schema["type"], "null"]
        if isinstance(schema.get("enum"), list):
            schema["enum"] = [*schema["enum"], None]
    # jsonschema would check some formats the API server reads differently (date-time, byte):
    # formats are left to the API server rather than judged two ways.
    schema.pop("format", None)
    return schema


def left_to_api_server(schema) -> list:
    """What the schema asks that this check does not: ["CEL rules", ...] (empty when nothing)."""
    found = set()

    def walk(node):
        if isinstance(node, dict):
            if node.get("x-kubernetes-validations"):
                found.add("CEL rules (x-kubernetes-validations)")
            if "format" in node:
                found.add("formats")
            if node.get("x-kubernetes-list-type") in ("set", "map"):
                found.add("list uniqueness (x-kubernetes-list-type)")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return sorted(found)


def problems(doc: dict, schema: dict) -> list:
    """Each way the custom resource breaks its CRD's schema: "spec.field: what is wrong", in field
    order. jsonschema comes with kubernetes-validate, which stack.check needs anyway."""
    import jsonschema

    validator = jsonschema.Draft4Validator(to_json_schema(schema))
    found = []
    doc = _without_pruned_nulls(copy.deepcopy(doc), schema)
    for error in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        where = json_path(error.absolute_path)
        text = error.message
        if error.validator == "additionalProperties" and error.validator_value is False:
            unknown = sorted(set(error.instance) - set(error.schema.get("properties") or {}))
            text = (
                f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: the "
                "CRD's schema does not declare it, and the API server rejects it under kubectl's "
                "strict validation"
            )
        found.append(f"{where}: {text}" if where else text)
    return found


def _without_pruned_nulls(value, schema):
    """The object with each null a non-nullable field holds removed, as the API server removes it
    before defaulting and validation (the CRD documentation's "Defaulting and Nullable")."""
    if not isinstance(value, dict) or not isinstance(schema, dict):
        return value
    properties = schema.get("properties") or {}
    for key in list(value):
        field_schema = properties.get(key, schema.get("additionalProperties"))
        field_schema = field_schema if isinstance(field_schema, dict) else {}
        if value[key] is None and not field_schema.get("nullable"):
            del value[key]
        elif isinstance(value[key], list) and isinstance(field_schema.get("items"), dict):
            for item in value[key]:
                _without_pruned_nulls(item, field_schema["items"])
        else:
            _without_pruned_nulls(value[key], field_schema)
    return value


def json_path(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
