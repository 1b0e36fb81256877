"""Custom resources against their CRD's schema (tasks/libs/checks/crdschema.py): each rule of structural
schemas on its own. test_fidelity.py puts the same cases to the real API server."""

import copy

import pytest

from tasks.libs.checks import crdschema

GROUP = "kindling.test"

# One schema that uses every rule crdschema rewrites; test_fidelity.py installs it as a CRD.
WIDGET_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "colour": {"type": "string", "enum": ["red", "blue"]},
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "parts": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"id": {"type": "string"}, "count": {"type": "integer"}},
                    },
                },
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "properties": {"data": {"type": "string"}},
                },
                "created": {"type": "string", "format": "date-time"},
            },
        },
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
    },
}


def widget(**spec):
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "labels": {"any": "label"}, "annotations": {"a": "b"}},
        "spec": {"size": 3, **spec},
    }


def with_field(doc, path, value):
    doc = copy.deepcopy(doc)
    *parents, last = path
    target = doc
    for key in parents:
        target = target[key]
    target[last] = value
    return doc


EMBEDDED = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": "x"}

# (case id, custom resource, what its problem says; None when valid)
CASES = [
    ("minimal", widget(), None),
    (
        "every-field",
        widget(
            colour="red",
            port="http",
            note="n",
            name="abc",
            labels={"a": "b"},
            free={"anything": {"nested": [1]}},
            parts=[{"id": "p", "count": 2}],
            template=EMBEDDED,
            created="2026-12-05T00:00:00Z",
        ),
        None,
    ),
    ("int-or-string-as-int", widget(port=8080), None),
    ("nullable-null", widget(note=None), None),
    ("status", {**widget(), "status": {"phase": "Ready"}}, None),
    ("unknown-in-spec", widget(sise=3), "spec: unknown field 'sise'"),
    ("unknown-at-top", {**widget(), "specs": {}}, "unknown field 'specs'"),
    ("unknown-in-list-item", widget(parts=[{"id": "p", "cuont": 1}]), "spec.parts[0]: unknown field 'cuont'"),
    (
        "unknown-in-embedded",
        widget(template={**EMBEDDED, "extra": 1}),
        "spec.template: unknown field 'extra'",
    ),
    ("missing-required", {**widget(), "spec": {"colour": "red"}}, "spec: 'size' is a required property"),
    ("wrong-type", widget(size="three"), "spec.size: 'three' is not of type 'integer'"),
    ("below-minimum", widget(size=0), "spec.size: 0 is less than the minimum of 1"),
    ("not-in-enum", widget(colour="green"), "spec.colour: 'green' is not one of ['red', 'blue']"),
    ("int-or-string-as-bool", widget(port=True), "spec.port: True is not of type 'integer', 'string'"),
    ("not-nullable-null-is-dropped", widget(colour=None), None),
    ("required-null", {**widget(), "spec": {"size": None}}, "spec: 'size' is a required property"),
    ("pattern", widget(name="ABC"), "spec.name: 'ABC' does not match '^[a-z]+$'"),
    ("too-long", widget(name="abcdefghij"), "spec.name: 'abcdefghij' is too long"),
    ("map-value-type", widget(labels={"a": 1}), "spec.labels.a: 1 is not of type 'string'"),
]


@pytest.mark.parametrize("doc, expected", [pytest.param(d, e, id=i) for i, d, e in CASES])
def test_each_rule_of_a_structural_schema(doc, expected):
    found = crdschema.problems(doc, WIDGET_SCHEMA)
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith(expected), found


def test_every_problem_is_listed_in_field_order():
    doc = widget(size="x", colour="green", extra=1)
    found = crdschema.problems(doc, WIDGET_SCHEMA)
    assert [p.split(":")[0] for p in found] == ["spec", "spec.colour", "spec.size"]


def test_the_schema_given_is_not_changed():
    before = copy.deepcopy(WIDGET_SCHEMA)
    crdschema.problems(widget(), WIDGET_SCHEMA)
    assert WIDGET_SCHEMA == before


def test_what_is_left_to_the_api_server_is_named():
    assert crdschema.left_to_api_server(WIDGET_SCHEMA) == ["formats"]
    rules = with_field(WIDGET_SCHEMA, ["properties", "spec", "x-kubernetes-validations"], [{"rule": "true"}])
    rules = with_field(rules, ["properties", "spec", "properties", "parts", "x-kubernetes-list-type"], "set")
    assert crdschema.left_to_api_server(rules) == [
        "CEL rules (x-kubernetes-validations)",
        "formats",
        "list uniqueness (x-kubernetes-list-type)",
    ]
    assert crdschema.left_to_api_server({"type": "object"}) == []


def test_an_object_without_properties_takes_no_fields_unless_it_preserves_them():
    schema = {"type": "object", "properties": {"spec": {"type": "object"}}}
    assert crdschema.problems(widget(), schema) == [
        "spec: unknown field 'size': the CRD's schema does not declare it, and the API server "
        "rejects it under kubectl's strict validation"
    ]
    preserving = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert crdschema.problems({**widget(), "more": 1}, preserving) == []
