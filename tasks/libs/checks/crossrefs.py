"""Checks across a stack's objects (part of `invoke stack.check`). Pure.

- references: ConfigMaps and Secrets a pod uses (volumes, env valueFrom, envFrom;
  `optional: true` excepted) are defined by the stack's manifests, keys included.
- selectors: a Service's selector matches a pod template of the stack (and its named
  targetPorts are ports those pods declare); a workload's selector matches its template.

Each check takes rendered objects (validate.Item: .doc is the object) and returns problem texts.
"""

from .. import render

# Objects the cluster creates in every namespace, so manifests may use them without defining them.
CLUSTER_CONFIGMAPS = {"kube-root-ca.crt"}
SELECTING_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}


# ---- shapes --------------------------------------------------------------------------------


def namespace_of(doc: dict) -> str:
    return (doc.get("metadata") or {}).get("namespace") or ""


def shape_ok(doc: dict) -> bool:
    """Whether the parts the checks walk have the types Kubernetes gives them (else the schema check
    reports it)."""

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


def well_formed(items):
    return [item for item in items if isinstance(item.doc, dict) and shape_ok(item.doc)]


# ---- ConfigMaps and Secrets ---------------------------------------------------------------


def defined_objects(items) -> dict:
    """(kind, namespace, name) -> set of keys, for every ConfigMap and Secret of the stack."""
    found = {}
    for item in well_formed(items):
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


def check_references(item, defined: dict) -> list:
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
            problems.append(
                f'{where} references {kind} "{name}", which no manifest of the stack defines '
                f"(namespace {namespace}); define it, or mark the reference `optional: true`"
            )
            continue
        for key in keys:
            if key not in found:
                problems.append(
                    f'{where} references key "{key}" of {kind} "{name}", which has no such key '
                    f"(keys: {', '.join(sorted(found)) or 'none'})"
                )
    return problems


# ---- selectors ----------------------------------------------------------------------------


def pod_templates(items) -> list:
    """(namespace, labels, declared port names) of every pod template (or Pod) of the stack."""
    found = []
    for item in well_formed(items):
        doc = item.doc
        kind, spec = doc.get("kind"), doc.get("spec") or {}
        if kind == "Pod":
            metadata = doc.get("metadata") or {}
        elif kind == "CronJob":
            job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
            metadata = (job_spec.get("template") or {}).get("metadata")
        elif render.pod_spec(doc) is not None:
            metadata = (spec.get("template") or {}).get("metadata")
        else:
            continue
        names = {
            p.get("name")
            for c in render.containers(doc)
            for p in c.get("ports") or []
            if isinstance(p, dict) and p.get("name")
        }
        found.append((namespace_of(doc), dict((metadata or {}).get("labels") or {}), names))
    return found


def _labels_text(labels: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def check_selectors(item, templates: list) -> list:
    doc = item.doc
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    problems = []
    if kind in SELECTING_WORKLOADS:
        match_labels = (spec.get("selector") or {}).get("matchLabels") or {}
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if match_labels and not match_labels.items() <= labels.items():
            problems.append(
                f"spec.selector {_labels_text(match_labels)} does not match the pod template's "
                f"labels ({_labels_text(labels) or 'none'})"
            )
    if kind != "Service" or spec.get("type") == "ExternalName":
        return problems
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not selector:
        return problems  # endpoints managed by hand
    namespace = namespace_of(doc)
    matched = [t for t in templates if t[0] == namespace and selector.items() <= t[1].items()]
    if not matched:
        return problems + [
            f"selector {_labels_text(selector)} matches no pod template of the stack (namespace {namespace})"
        ]
    port_names = set().union(*(t[2] for t in matched))
    for port in spec.get("ports") or []:
        target = port.get("targetPort") if isinstance(port, dict) else None
        if isinstance(target, str) and not target.isdigit() and target not in port_names:
            declared = ", ".join(sorted(port_names)) or "none"
            problems.append(
                f'port {port.get("name") or port.get("port")}: targetPort "{target}" is not a '
                f"port name the selected pods declare ({declared})"
            )
    return problems
