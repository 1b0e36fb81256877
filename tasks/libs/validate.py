"""Offline checks of a stack's rendered manifests (`invoke stack.check`). Pure: no cluster, no engine.

The task module loads the stack and renders each manifest file with sample image
references; these functions take the rendered objects (`Item`s) and report every
problem as `FILE: KIND/NAME: problem`:

- schema: every object against the Kubernetes JSON schemas of one version, strictly
  (unknown fields are errors), with the kubernetes-validate package (passed in, so
  this module never imports it). Custom resources whose CRD is part of the stack are
  left to the API server (noted); other kinds without a schema are problems.
- images: a workload container runs a service of the stack or one of its prebuilt images.
- probes: httpGet/tcpSocket/grpc probe ports are ports the container declares.
- references: ConfigMaps and Secrets a pod uses (volumes, env valueFrom, envFrom;
  `optional: true` excepted) are defined by the stack's manifests, keys included.
- selectors: a Service's selector matches a pod template of the stack (and its named
  targetPorts are ports those pods declare); a workload's selector matches its template.
"""

from dataclasses import dataclass, field
from pathlib import Path

from . import images, render

KUBERNETES_VERSION = "1.29"
# Objects the cluster creates in every namespace, so manifests may use them without defining them.
CLUSTER_CONFIGMAPS = {"kube-root-ca.crt"}
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
PROBE_HANDLERS = ("httpGet", "tcpSocket", "grpc")
SELECTING_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}


@dataclass(frozen=True)
class Item:
    """One rendered object: the service whose manifests hold it and the file it came from."""

    service: str
    file: str  # as shown to the user
    doc: dict


@dataclass(frozen=True)
class Problem:
    file: str
    object: str  # "Kind/name"; "" for a problem of the whole file
    text: str

    def __str__(self) -> str:
        return f"{self.file}: {self.object}: {self.text}" if self.object else f"{self.file}: {self.text}"


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


def namespace_of(doc: dict) -> str:
    return (doc.get("metadata") or {}).get("namespace") or ""


def sample_refs(stack) -> dict:
    """service -> the reference the check renders with: localhost/<project>/<service>:check, or the prebuilt image."""
    return {name: images.local_ref(stack.project, name, "check") if service.built else service.image
            for name, service in stack.services.items()}


def render_file(docs: list, stack, refs: dict) -> list:
    """One manifest file's objects as they would be applied (sample references, explicit namespaces).

    A manifest may name a built service by its repository under the stack's registry too (registry mode).
    """
    return render.render(docs, project=stack.project, namespace=stack.namespace, service_refs=refs,
                         pull_policies={n: "Never" for n, s in stack.services.items() if s.built},
                         registry=getattr(stack, "registry", "") or images.LOCAL_REGISTRY)


def display_path(path, stack_folder) -> str:
    """A manifest's path relative to the stack file's folder when it is inside it, else absolute."""
    path, folder = Path(path), Path(stack_folder)
    return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)


def _shape_ok(doc: dict) -> bool:
    """Whether the parts the checks walk have the types Kubernetes gives them (else the schema check reports it)."""
    def ok(value, kind):
        return value is None or isinstance(value, kind)

    spec = doc.get("spec")
    if not ok(doc.get("metadata"), dict) or not ok(spec, dict):
        return False
    for key in ("data", "binaryData", "stringData"):
        if not ok(doc.get(key), dict):
            return False
    spec = spec or {}
    for key in ("template", "selector", "jobTemplate", "names"):
        if not ok(spec.get(key), dict):
            return False
    for key in ("ports", "versions"):
        if not ok(spec.get(key), list):
            return False
    try:
        pod = render.pod_spec(doc)
    except AttributeError:
        return False
    if pod is None:
        return True
    if not isinstance(pod, dict):
        return False
    for key in ("volumes", "initContainers", "containers", "ephemeralContainers"):
        if not ok(pod.get(key), list):
            return False
    return True


def _well_formed(items):
    return [item for item in items if isinstance(item.doc, dict) and _shape_ok(item.doc)]


# ---- custom resources ---------------------------------------------------------------------


def _group_version(api_version: str):
    group, _, version = api_version.rpartition("/")
    return group, version


def is_builtin_group(group: str) -> bool:
    """Groups Kubernetes itself serves: core (""), single-word ones (apps, batch) and *.k8s.io."""
    return "." not in group or group.endswith(".k8s.io")


def stack_crds(items) -> dict:
    """(group, kind) -> (CRD name, versions) for every CustomResourceDefinition of the stack."""
    found = {}
    for item in _well_formed(items):
        doc = item.doc
        if doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc.get("spec") or {}
        kind = (spec.get("names") or {}).get("kind")
        if spec.get("group") and kind:
            versions = [v.get("name") for v in spec.get("versions") or [] if isinstance(v, dict)]
            found[(spec["group"], kind)] = ((doc.get("metadata") or {}).get("name", ""), versions)
    return found


# ---- (a) schema ---------------------------------------------------------------------------


def _json_path(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def schema_problem(doc: dict, kv, version: str = KUBERNETES_VERSION):
    """The schema error of one object (text), None if it validates, or the kv.SchemaNotFoundError."""
    try:
        kv.validate(doc, version, strict=True)
    except kv.ValidationError as exc:
        where = _json_path(exc.path)
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
            return [f"CustomResourceDefinition {crd_name} of the stack has no version {group_version!r} "
                    f"(it has: {', '.join(versions) or 'none'})"]
        result.note(item.service, f"custom resources not schema-checked (their CRD is part of the stack): "
                                  f"{kind} ({crd_name})")
        return []
    problem = schema_problem(doc, kv, version)
    if problem is None:
        return []
    if isinstance(problem, str):
        return [problem]
    if not is_builtin_group(group) and unchecked_files:
        result.note(item.service, f"{kind} ({api_version}) not schema-checked: its CRD may be in "
                                  f"{', '.join(unchecked_files)} (not checked)")
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
            normalized = images.normalize(image)
        except images.BadReference as exc:
            problems.append(f'container "{name}": {exc}')
            continue
        if normalized not in allowed:
            choices = f"a service ({', '.join(services)})" if services else "a service"
            if prebuilt:
                choices += f" or a prebuilt image of the stack ({', '.join(prebuilt)})"
            problems.append(f'container "{name}": image "{image}" is not an image of the stack: '
                            f"name {choices}")
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
                            problems.append(f"{where} {port} is not a port the container declares ({declared})")
                    elif isinstance(port, str):
                        if port.isdigit():
                            problems.append(f'{where} "{port}" is a string: write the number {port} '
                                            "or a port name")
                        elif port not in names:
                            problems.append(f'{where} "{port}" is not a port the container declares ({declared})')
    return problems


# ---- (d) ConfigMaps and Secrets -----------------------------------------------------------


def defined_objects(items) -> dict:
    """(kind, namespace, name) -> set of keys, for every ConfigMap and Secret of the stack."""
    found = {}
    for item in _well_formed(items):
        doc = item.doc
        kind = doc.get("kind")
        if kind == "ConfigMap":
            keys = set(doc.get("data") or {}) | set(doc.get("binaryData") or {})
        elif kind == "Secret":
            keys = set(doc.get("data") or {}) | set(doc.get("stringData") or {})
        else:
            continue
        found[(kind, namespace_of(doc), (doc.get("metadata") or {}).get("name"))] = keys
    return found


def pod_references(spec: dict) -> list:
    """(where, kind, name, [keys]) of every non-optional ConfigMap/Secret reference in a pod spec."""
    refs = []

    def add(where, kind, source, name_key):
        if not isinstance(source, dict) or source.get("optional") is True:
            return
        keys = [i.get("key") for i in source.get("items") or [] if isinstance(i, dict) and i.get("key")]
        if "key" in source:
            keys.append(source["key"])
        refs.append((where, kind, source.get(name_key), keys))

    for volume in spec.get("volumes") or []:
        if not isinstance(volume, dict):
            continue
        where = f'volume "{volume.get("name", "?")}"'
        add(where, "ConfigMap", volume.get("configMap"), "name")
        add(where, "Secret", volume.get("secret"), "secretName")
        for source in (volume.get("projected") or {}).get("sources") or []:
            if isinstance(source, dict):
                add(where, "ConfigMap", source.get("configMap"), "name")
                add(where, "Secret", source.get("secret"), "name")
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            if not isinstance(container, dict):
                continue
            name = container.get("name", "?")
            for env in container.get("env") or []:
                value_from = (env or {}).get("valueFrom") if isinstance(env, dict) else None
                if isinstance(value_from, dict):
                    where = f'container "{name}" env {env.get("name", "?")}'
                    add(where, "ConfigMap", value_from.get("configMapKeyRef"), "name")
                    add(where, "Secret", value_from.get("secretKeyRef"), "name")
            for env_from in container.get("envFrom") or []:
                if isinstance(env_from, dict):
                    where = f'container "{name}" envFrom'
                    add(where, "ConfigMap", env_from.get("configMapRef"), "name")
                    add(where, "Secret", env_from.get("secretRef"), "name")
    return refs


def check_references(item: Item, defined: dict) -> list:
    spec = render.pod_spec(item.doc)
    if not isinstance(spec, dict):
        return []
    namespace = namespace_of(item.doc)
    problems = []
    for where, kind, name, keys in pod_references(spec):
        if kind == "ConfigMap" and name in CLUSTER_CONFIGMAPS:
            continue
        found = defined.get((kind, namespace, name))
        if found is None:
            problems.append(f'{where} references {kind} "{name}", which no manifest of the stack defines '
                            f"(namespace {namespace}); define it, or mark the reference `optional: true`")
            continue
        for key in keys:
            if key not in found:
                problems.append(f'{where} references key "{key}" of {kind} "{name}", which has no such key '
                                f"(keys: {', '.join(sorted(found)) or 'none'})")
    return problems


# ---- (e) selectors ------------------------------------------------------------------------


def pod_templates(items) -> list:
    """(namespace, labels, declared port names) of every pod template (or Pod) of the stack."""
    found = []
    for item in _well_formed(items):
        doc = item.doc
        kind, spec = doc.get("kind"), doc.get("spec") or {}
        if kind == "Pod":
            metadata = doc.get("metadata") or {}
        elif kind == "CronJob":
            metadata = (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("metadata")
        elif render.pod_spec(doc) is not None:
            metadata = (spec.get("template") or {}).get("metadata")
        else:
            continue
        names = {p.get("name") for c in render.containers(doc) for p in c.get("ports") or []
                 if isinstance(p, dict) and p.get("name")}
        found.append((namespace_of(doc), dict((metadata or {}).get("labels") or {}), names))
    return found


def _labels_text(labels: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def check_selectors(item: Item, templates: list) -> list:
    doc = item.doc
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    problems = []
    if kind in SELECTING_WORKLOADS:
        match_labels = (spec.get("selector") or {}).get("matchLabels") or {}
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if match_labels and not match_labels.items() <= labels.items():
            problems.append(f"spec.selector {_labels_text(match_labels)} does not match the pod template's "
                            f"labels ({_labels_text(labels) or 'none'})")
    if kind != "Service" or spec.get("type") == "ExternalName":
        return problems
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not selector:
        return problems  # endpoints managed by hand
    namespace = namespace_of(doc)
    matched = [t for t in templates if t[0] == namespace and selector.items() <= t[1].items()]
    if not matched:
        return problems + [f"selector {_labels_text(selector)} matches no pod template of the stack "
                           f"(namespace {namespace})"]
    port_names = set().union(*(t[2] for t in matched))
    for port in spec.get("ports") or []:
        target = port.get("targetPort") if isinstance(port, dict) else None
        if isinstance(target, str) and not target.isdigit() and target not in port_names:
            problems.append(f'port {port.get("name") or port.get("port")}: targetPort "{target}" is not a port '
                            f"name the selected pods declare ({', '.join(sorted(port_names)) or 'none'})")
    return problems


# ---- all of them --------------------------------------------------------------------------


def check(items, *, kv, refs: dict, prebuilt=(), version: str = KUBERNETES_VERSION, unchecked_files=(),
          file_problems=()) -> Result:
    """Run every check over the stack's rendered objects.

    refs: service -> sample reference (sample_refs); prebuilt: names of prebuilt services;
    unchecked_files: manifests that could not be read (under a missing source);
    file_problems: Problems found while reading files, listed first.
    """
    result = Result(problems=list(file_problems))
    crds = stack_crds(items)
    defined = defined_objects(items)
    templates = pod_templates(items)
    allowed = {images.normalize(ref) for ref in refs.values()}
    prebuilt_images = [refs[n] for n in prebuilt]
    for item in items:
        result.objects[item.service] = result.objects.get(item.service, 0) + 1
        texts = check_schema(item, result, kv, version, crds, unchecked_files)
        checks = (lambda: check_images(item, allowed, list(refs), prebuilt_images),
                  lambda: check_probes(item),
                  lambda: check_references(item, defined),
                  lambda: check_selectors(item, templates))
        shape_ok, crashed = _shape_ok(item.doc), False
        for run in checks if shape_ok else ():
            try:
                texts += run()
            except (AttributeError, TypeError, ValueError):
                crashed = True  # a field of an unexpected type deep inside
        if not texts and (crashed or not shape_ok):
            texts.append("a field has the wrong type (a mapping or list where another type is given)")
        result.problems += [Problem(item.file, object_label(item.doc), text) for text in texts]
    return result
