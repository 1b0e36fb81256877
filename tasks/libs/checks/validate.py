"""Offline checks of a stack's rendered manifests (`invoke stack.check`). Pure: no cluster, no engine.

The task module loads the stack and renders each manifest file with sample image
references; these functions take the rendered objects (`Item`s) and report every
problem as `FILE: KIND/NAME: problem`:

- schema: every object against the Kubernetes JSON schemas of one version, strictly
  (unknown fields are errors), with the kubernetes-validate package (passed in, so
  this module never imports it). Custom resources whose CRD is part of the stack are
  checked against that CRD's schema (tasks/libs/checks/crdschema.py); other kinds without a
  schema are problems.
- images: a workload container runs a service of the stack or one of its prebuilt images.
- probes: httpGet/tcpSocket/grpc probe ports are ports the container declares.
- references and selectors (tasks/libs/checks/crossrefs.py): ConfigMaps and Secrets a pod uses
  are defined by the stack; Service and workload selectors match pod templates.
- API server rules beyond the schema (tasks/libs/checks/apirules.py): quantities, unique names in
  pod lists, label keys/values and selectors, metadata.name formats; duplicates the API
  server only warns about become notes.
"""

from dataclasses import dataclass, field
from pathlib import Path

from .. import imagerefs, render
from . import apirules, crdschema

# The checks across objects live in crossrefs; they are part of this module's interface.
from .crossrefs import (
    check_references,
    check_selectors,
    defined_objects,
    pod_templates,
    shape_ok,
    well_formed,
)

KUBERNETES_VERSION = "1.29"  # these functions' default; stack.check passes the cluster's (nodeversion.py)
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
PROBE_HANDLERS = ("httpGet", "tcpSocket", "grpc")


@dataclass(frozen=True)
class Item:
    """One rendered object: the service whose manifests hold it and the file it came from."""

    service: str
    file: str  # as shown to the user
    doc: dict


@dataclass(frozen=True)
class Problem:
    file: str
    object: str  # "Kind/name", or where in the file ("line 23"); "" for a problem of the whole file
    text: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.file}: {self.object}: {self.text}" if self.object else f"{self.file}: {self.text}"
        return f"{text}\n  fix: {self.fix}" if self.fix else text


@dataclass
class Result:
    problems: list = field(default_factory=list)
    notes: dict = field(default_factory=dict)  # service -> [note]
    objects: dict = field(default_factory=dict)  # service -> number of objects checked

    def note(self, service, text):
        if text not in self.notes.setdefault(service, []):
            self.notes[service].append(text)


def object_label(doc: dict) -> str:
    return f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name') or '(no name)'}"


def sample_refs(stack) -> dict:
    """service -> the reference the check renders with: localhost/<project>/<service>:check (or as the
    stack's naming template says), or the prebuilt image. A service with neither (a run step) has none."""
    template = getattr(stack, "image_name", imagerefs.DEFAULT_NAME_TEMPLATE)
    return {
        name: imagerefs.local_ref(stack.project, name, "check", template=template)
        if service.built
        else service.image
        for name, service in stack.services.items()
        if service.built or service.image
    }


def render_file(docs: list, stack, refs: dict) -> list:
    """One manifest file's objects as they would be applied (sample references, explicit namespaces).

    A manifest may name a built service by its repository under the stack's registry too (registry mode).
    """
    return render.render(
        docs,
        project=stack.project,
        namespace=stack.namespace,
        service_refs=refs,
        pull_policies={n: "Never" for n, s in stack.services.items() if s.built},
        registry=getattr(stack, "registry", "") or imagerefs.LOCAL_REGISTRY,
        template=getattr(stack, "image_name", imagerefs.DEFAULT_NAME_TEMPLATE),
    )


def display_path(path, stack_folder) -> str:
    """A manifest's path relative to the stack file's folder when it is inside it, else absolute."""
    path, folder = Path(path), Path(stack_folder)
    return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)


# ---- custom resources ---------------------------------------------------------------------


def _group_version(api_version: str):
    group, _, version = api_version.rpartition("/")
    return group, version


def is_builtin_group(group: str) -> bool:
    """Groups Kubernetes itself serves: core (""), single-word ones (apps, batch) and *.k8s.io."""
    return "." not in group or group.endswith(".k8s.io")


def stack_crds(items) -> dict:
    """(group, kind) -> (CRD name, {version: its openAPIV3Schema, None when it has none}) for every
    CustomResourceDefinition of the stack."""
    found = {}
    for item in well_formed(items):
        doc = item.doc
        if doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc.get("spec") or {}
        kind = (spec.get("names") or {}).get("kind")
        if spec.get("group") and kind:
            versions = {
                v.get("name"): (v.get("schema") or {}).get("openAPIV3Schema")
                for v in spec.get("versions") or []
                if isinstance(v, dict)
            }
            found[(spec["group"], kind)] = ((doc.get("metadata") or {}).get("name", ""), versions)
    return found


# ---- (a) schema ---------------------------------------------------------------------------


def schema_problem(doc: dict, kv, version: str = KUBERNETES_VERSION):
    """The schema error of one object (text), None if it validates, or the kv.SchemaNotFoundError."""
    try:
        kv.validate(doc, version, strict=True)
    except kv.ValidationError as exc:
        where = crdschema.json_path(exc.path)
        return f"{where}: {exc.message}" if where else exc.message
    except kv.SchemaNotFoundError as exc:
        return exc
    return None


def check_schema(item: Item, result: Result, kv, version, crds: dict, unchecked_files=()) -> list:
    doc = item.doc
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not api_version or not isinstance(kind, str):
        return ["needs a string apiVersion and kind"]
    group, group_version = _group_version(api_version)
    if (group, kind) in crds:
        crd_name, versions = crds[(group, kind)]
        if group_version not in versions:
            return [
                f"CustomResourceDefinition {crd_name} of the stack has no version {group_version!r} "
                f"(it has: {', '.join(versions) or 'none'})"
            ]
        schema = versions[group_version]
        if not isinstance(schema, dict):
            result.note(item.service, f"{kind} not schema-checked: CRD {crd_name} gives no schema for it")
            return []
        left = crdschema.left_to_api_server(schema)
        if left:
            result.note(
                item.service,
                f"{kind} checked against CRD {crd_name}; left to the API server: {', '.join(left)}",
            )
        return crdschema.problems(doc, schema)
    problem = schema_problem(doc, kv, version)
    if problem is None:
        return []
    if isinstance(problem, str):
        return [problem]
    if not is_builtin_group(group) and unchecked_files:
        result.note(
            item.service,
            f"{kind} ({api_version}) not schema-checked: its CRD may be in "
            f"{', '.join(unchecked_files)} (not checked)",
        )
        return []
    return [f"Kubernetes {version} has no {kind} in {api_version}, and no CRD of the stack defines it"]


# ---- (b) images ---------------------------------------------------------------------------


def check_images(item: Item, allowed: set, services=(), prebuilt=()) -> list:
    problems = []
    for container in render.containers(item.doc):
        name = container.get("name", "?")
        image = container.get("image")
        if not image or not isinstance(image, str):
            problems.append(f'container "{name}" has no image')
            continue
        try:
            normalized = imagerefs.normalize(image)
        except imagerefs.BadReference as exc:
            problems.append(f'container "{name}": {exc}')
            continue
        if normalized not in allowed:
            choices = f"a service ({', '.join(services)})" if services else "a service"
            if prebuilt:
                choices += f" or a prebuilt image of the stack ({', '.join(prebuilt)})"
            problems.append(
                f'container "{name}": image "{image}" is not an image of the stack: name {choices}'
            )
    return problems


# ---- (c) probes ---------------------------------------------------------------------------


def _declared(container: dict) -> tuple:
    numbers, names = set(), set()
    shown = []
    for port in container.get("ports") or []:
        if not isinstance(port, dict):
            continue
        number, port_name = port.get("containerPort"), port.get("name")
        numbers.add(number)
        if port_name:
            names.add(port_name)
        shown.append(f"{port_name}={number}" if port_name else str(number))
    return numbers, names, ", ".join(shown)


def check_probes(item: Item) -> list:
    spec = render.pod_spec(item.doc) or {}
    problems = []
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            if not isinstance(container, dict):
                continue
            numbers, names, shown = _declared(container)
            declared = f"declared: {shown}" if shown else "it declares no ports"
            for probe_name in PROBES:
                probe = container.get(probe_name)
                if not isinstance(probe, dict):
                    continue
                for handler in PROBE_HANDLERS:
                    action = probe.get(handler)
                    if not isinstance(action, dict) or "port" not in action:
                        continue
                    port = action["port"]
                    where = f'container "{container.get("name", "?")}": {probe_name}.{handler}.port'
                    if isinstance(port, bool):
                        continue  # a schema problem
                    if isinstance(port, int):
                        if port not in numbers:
                            problems.append(
                                f"{where} {port} is not a port the container declares ({declared})"
                            )
                    elif isinstance(port, str):
                        if port.isdigit():
                            problems.append(
                                f'{where} "{port}" is a string: write the number {port} or a port name'
                            )
                        elif port not in names:
                            problems.append(
                                f'{where} "{port}" is not a port the container declares ({declared})'
                            )
    return problems


# ---- (f) what the API server rejects beyond the schema ------------------------------------


def check_api_rules(item: Item, result: Result, version: str = KUBERNETES_VERSION) -> list:
    problems, warnings = apirules.check(item.doc, version)
    for warning in warnings:
        result.note(item.service, f"{item.file}: {object_label(item.doc)}: {warning}")
    return problems


# ---- all of them --------------------------------------------------------------------------


def check(
    items,
    *,
    kv,
    refs: dict,
    prebuilt=(),
    version: str = KUBERNETES_VERSION,
    unchecked_files=(),
    file_problems=(),
) -> Result:
    """Run every check over the stack's rendered objects.

    refs: service -> sample reference (sample_refs); prebuilt: names of prebuilt services;
    unchecked_files: manifests that could not be read (under a missing source);
    file_problems: Problems found while reading files, listed first.
    """
    result = Result(problems=list(file_problems))
    crds = stack_crds(items)
    defined = defined_objects(items)
    templates = pod_templates(items)
    allowed = {imagerefs.normalize(ref) for ref in refs.values()}
    prebuilt_images = [refs[n] for n in prebuilt if n in refs]
    for item in items:
        result.objects[item.service] = result.objects.get(item.service, 0) + 1
        texts = check_schema(item, result, kv, version, crds, unchecked_files)
        checks = (
            lambda item=item: check_images(item, allowed, list(refs), prebuilt_images),
            lambda item=item: check_probes(item),
            lambda item=item: check_references(item, defined),
            lambda item=item: check_selectors(item, templates),
            lambda item=item: check_api_rules(item, result, version),
        )
        well_shaped, crashed = shape_ok(item.doc), False
        for run in checks if well_shaped else ():
            try:
                texts += run()
            except (AttributeError, TypeError, ValueError):
                crashed = True  # a field of an unexpected type deep inside
        if not texts and (crashed or not well_shaped):
            texts.append("a field has the wrong type (a mapping or list where another type is given)")
        result.problems += [Problem(item.file, object_label(item.doc), text) for text in texts]
    return result
