"""Structure tests of the shipped stacks (the December 2025 Kubernaut stack, demo.yaml) and their
files; the default stack (e2e.yaml, Kubernaut's HEAD) has tests/kubernaut/test_kubernaut_head.py.

Pure tests: no cluster, no container engine. They read the YAML directly
(not through the stack loader) and check the facts the stacks must keep:
schema of the stack files, manifest paths, image placeholders, secrets,
ports, the dependency graph, and the Data Storage migrations runner, which
runs here under the real busybox sh with a fake psql.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

DECEMBER = "stacks/kubernaut-2025-12.yaml"
STACK_FILES = [DECEMBER, "demo.yaml"]
K8S_VERSION = "1.29"

TOP_KEYS = {"name", "project", "engine", "source", "namespace", "cluster", "services", "test"}
CLUSTER_KEYS = {"name", "config"}
SERVICE_KEYS = {"image", "build", "manifests", "depends_on", "ready"}
BUILD_KEYS = {"containerfile", "context", "args", "coverage_args", "target", "memory"}
READY_KEYS = {"timeout"}
NAME_RE = re.compile(r"^[a-z0-9-]+$")
MEMORY_RE = re.compile(r"^[1-9][0-9]*(Ki|Mi|Gi)B$")

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}

AIANALYSIS_GRAPH = {
    "postgresql": set(),
    "redis": set(),
    "datastorage-migrations": {"postgresql"},
    "datastorage": {"postgresql", "redis", "datastorage-migrations"},
    "holmesgpt-api": {"datastorage"},
    "aianalysis": {"datastorage", "holmesgpt-api"},
}
DEMO_GRAPH = {"store": set(), "brain": {"store"}, "controller": {"store", "brain"}}

# (Service name, port name) -> host port, as the E2E tests reach them.
AIANALYSIS_HOST_PORTS = {
    ("aianalysis-controller", "api"): 8084,
    ("aianalysis-controller", "metrics"): 9184,
    ("aianalysis-controller", "health"): 8184,
    ("holmesgpt-api", "http"): 8088,
    ("datastorage", "http"): 8091,
}
DEMO_HOST_PORTS = {("controller", "http"): 8180}

MIGRATIONS_MANIFEST = ROOT / "stacks/kubernaut-2025-12/manifests/datastorage-migrations.yaml"


# --------------------------------------------------------------------------
# helpers


class StackFile(dict):
    """A stack file's YAML, and the folder its relative paths start at."""

    folder: Path


def load_stack(name: str) -> StackFile:
    with open(ROOT / name) as f:
        stack = StackFile(yaml.safe_load(f))
    stack.folder = (ROOT / name).parent
    return stack


def load_docs(path: Path) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def local_path(value: str, folder: Path = ROOT) -> Path | None:
    """A stack-relative path as a Path in this repo; None for ${SOURCE_DIR} ones."""
    if value.startswith("${SOURCE_DIR}/"):
        return None
    if value.startswith("${STACK_DIR}/"):
        value = value[len("${STACK_DIR}/") :]
    assert "${" not in value, value
    return folder / value


def stack_docs(stack: dict) -> list[tuple[str, Path, dict]]:
    """(service, manifest path, document) for every local manifest document."""
    out = []
    for svc, spec in stack["services"].items():
        for m in spec.get("manifests", []):
            path = local_path(m, stack.folder)
            if path is not None:
                out.extend((svc, path, d) for d in load_docs(path))
    return out


def pod_spec(doc: dict) -> dict | None:
    if doc.get("kind") in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        return doc["spec"]["template"]["spec"]
    if doc.get("kind") == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if doc.get("kind") == "Pod":
        return doc["spec"]
    return None


def containers(doc: dict) -> list[dict]:
    spec = pod_spec(doc)
    if spec is None:
        return []
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


def objects(stack: dict, kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for _, _, d in stack_docs(stack) if d["kind"] == kind}


def deps_closure(stack: dict, svc: str) -> set[str]:
    seen: set[str] = set()
    todo = [svc]
    while todo:
        for dep in stack["services"][todo.pop()].get("depends_on", []):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def find_container(stack: dict, workload: str) -> dict:
    for _, _, d in stack_docs(stack):
        if d["kind"] in WORKLOAD_KINDS and d["metadata"]["name"] == workload:
            return pod_spec(d)["containers"][0]
    raise AssertionError(f"no workload {workload}")


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.fixture(params=STACK_FILES)
def stack(request) -> dict:
    return load_stack(request.param)


@pytest.fixture
def e2e() -> dict:
    return load_stack(DECEMBER)


@pytest.fixture
def demo() -> dict:
    return load_stack("demo.yaml")


# --------------------------------------------------------------------------
# stack files


def test_stack_file_uses_only_known_keys(stack):
    assert set(stack) <= TOP_KEYS
    assert {"name", "cluster", "services"} <= set(stack)
    assert NAME_RE.match(stack["name"])
    assert stack.get("engine", "podman") in {"podman", "docker"}
    assert set(stack["cluster"]) == CLUSTER_KEYS
    assert stack["services"]
    for svc, spec in stack["services"].items():
        assert NAME_RE.match(svc), svc
        assert set(spec) <= SERVICE_KEYS, (svc, set(spec) - SERVICE_KEYS)
        assert ("image" in spec) != ("build" in spec), f"{svc}: exactly one of image/build"
        assert spec.get("manifests"), f"{svc}: no manifests"
        assert all(isinstance(m, str) for m in spec["manifests"])
        assert isinstance(spec.get("depends_on", []), list)
        if "ready" in spec:
            assert set(spec["ready"]) <= READY_KEYS
            assert isinstance(spec["ready"]["timeout"], int) and spec["ready"]["timeout"] > 0
        if "build" in spec:
            build = spec["build"]
            assert set(build) <= BUILD_KEYS, (svc, set(build) - BUILD_KEYS)
            assert {"containerfile", "context"} <= set(build)
            for key in ("args", "coverage_args"):
                for k, v in build.get(key, {}).items():
                    assert isinstance(k, str) and isinstance(v, str), (svc, key, k, v)
            if "memory" in build:
                assert MEMORY_RE.match(build["memory"]), build["memory"]
        else:
            assert isinstance(spec["image"], str) and "/" in spec["image"]


def test_aianalysis_stack_facts(e2e):
    assert e2e["name"] == "aianalysis-2025-12"
    assert e2e["project"] == "kubernaut"
    assert e2e["source"] == {
        "path": "../../kubernaut",
        "revision": "eb5185b732844766253a66998d72d0b11eaa73de",
    }
    assert e2e["namespace"] == "kubernaut-system"
    assert e2e["cluster"] == {"name": "aianalysis-2025-12", "config": "kubernaut-2025-12/kind.yaml"}
    svcs = e2e["services"]
    assert set(svcs) == set(AIANALYSIS_GRAPH)
    assert svcs["postgresql"]["image"] == "docker.io/library/postgres:16-alpine"
    assert svcs["redis"]["image"] == "docker.io/library/redis:7-alpine"
    builds = {k: v["build"] for k, v in svcs.items() if "build" in v}
    assert builds["datastorage"]["containerfile"] == "docker/data-storage.Dockerfile"
    assert builds["holmesgpt-api"]["containerfile"] == "holmesgpt-api/Dockerfile"
    assert builds["aianalysis"]["containerfile"] == "docker/aianalysis.Dockerfile"
    assert builds["datastorage-migrations"]["containerfile"] == (
        "${STACK_DIR}/kubernaut-2025-12/datastorage-migrations.Containerfile"
    )
    assert all(b["context"] == "." for b in builds.values())
    for go in ("datastorage", "aianalysis"):
        assert builds[go]["coverage_args"] == {"GOFLAGS": "-cover"}
    assert "coverage_args" not in builds["holmesgpt-api"]
    assert builds["holmesgpt-api"]["memory"] == "3GiB"
    assert "${SOURCE_DIR}/config/crd/bases/kubernaut.ai_aianalyses.yaml" in (svcs["aianalysis"]["manifests"])
    # Slow starters get more time; a Job's timeout covers the whole migration.
    assert svcs["holmesgpt-api"]["ready"]["timeout"] >= 240


def test_demo_stack_facts(demo):
    assert demo["name"] == "demo"
    assert demo["project"] == "kindling-demo"
    assert demo["namespace"] == "kindling-demo"
    assert demo["source"] == "."
    assert demo["cluster"] == {"name": "kindling-demo", "config": "manifests/kind/demo.yaml"}
    assert set(demo["services"]) == set(DEMO_GRAPH)
    for svc, spec in demo["services"].items():
        build = spec["build"]
        assert build["args"]["BASE_IMAGE"] == "${BASE_IMAGE:-docker.io/library/busybox:1.36}"
        assert build["args"]["SERVICE"] == svc
        assert local_path(build["containerfile"]).is_file()
        assert local_path(build["context"]).is_dir()


def test_demo_containerfile_needs_only_a_static_busybox(demo):
    files = {local_path(s["build"]["containerfile"]) for s in demo["services"].values()}
    for path in files:
        lines = [
            ln.strip()
            for ln in path.read_text().splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")
        ]
        assert lines[0] == "ARG BASE_IMAGE=docker.io/library/busybox:1.36"
        assert lines[1] == "FROM ${BASE_IMAGE}"
        runs = [ln for ln in lines if ln.startswith("RUN")]
        assert runs, "one cheap RUN step expected"
        for ln in runs + [ln for ln in lines if ln.startswith(("CMD", "ENTRYPOINT"))]:
            # Exec form only: the base may have no /bin/sh.
            rest = ln.partition(" ")[2]
            assert rest.startswith('["/bin/busybox"'), ln
        cmd = next(ln for ln in lines if ln.startswith("CMD"))
        assert '"httpd", "-f"' in cmd and '"-p", "8080"' in cmd and '"-h", "/www"' in cmd
        # Inside sh -c, every external command goes through /bin/busybox.
        for ln in runs:
            script = yaml.safe_load(ln[len("RUN") :])[-1]
            for part in re.split(r"&&|\|\||;|\|", script):
                word = part.strip().split(" ", 1)[0]
                assert word in {"/bin/busybox", "echo", "printf", "cd", "test", "["}, word
        for ln in lines:
            if ln.startswith(("COPY", "ADD")):
                src = ln.split()[1]
                assert (local_path(demo["services"]["store"]["build"]["context"]) / src).exists()


def test_migrations_containerfile():
    text = (ROOT / "stacks/kubernaut-2025-12/datastorage-migrations.Containerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "FROM docker.io/library/postgres:16-alpine"
    assert "COPY migrations/ /migrations/" in lines


def test_cluster_configs(stack):
    path = local_path(stack["cluster"]["config"], stack.folder)
    (cfg,) = load_docs(path)
    assert cfg["kind"] == "Cluster"
    assert cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert cfg["name"] == stack["cluster"]["name"]
    assert [n["role"] for n in cfg["nodes"]] == ["control-plane"]


# --------------------------------------------------------------------------
# manifests


def test_manifest_paths_exist_and_are_listed_once(stack):
    seen = []
    for svc, spec in stack["services"].items():
        for m in spec["manifests"]:
            path = local_path(m, stack.folder)
            if path is not None:
                assert path.is_file(), f"{svc}: {m} missing"
            seen.append(m)
    assert len(seen) == len(set(seen)), "a manifest listed by two services"


def test_every_shipped_manifest_is_used():
    used = set()
    for name in STACK_FILES:
        stack = load_stack(name)
        for spec in stack["services"].values():
            used |= {local_path(m, stack.folder) for m in spec["manifests"]} - {None}
    shipped = set((ROOT / "stacks/kubernaut-2025-12/manifests").glob("*.yaml"))
    shipped |= set((ROOT / "manifests/demo").glob("*.yaml"))
    assert shipped == used


SHIPPED_YAML = sorted(
    p for folder in ("manifests", "stacks/kubernaut-2025-12") for p in (ROOT / folder).rglob("*.yaml")
)


@pytest.mark.parametrize("path", [p.relative_to(ROOT).as_posix() for p in SHIPPED_YAML])
def test_manifest_parses(path):
    docs = load_docs(ROOT / path)
    assert docs, path
    for d in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(d) or d["kind"] == "Cluster", d
        if d["kind"] != "Cluster":
            assert NAME_RE.match(d["metadata"]["name"]), d["metadata"]["name"]


def test_no_namespace_objects_or_hardcoded_namespaces(stack):
    for _svc, path, d in stack_docs(stack):
        assert d["kind"] != "Namespace", path
        assert "namespace" not in d["metadata"], f"{path}: {d['kind']} pins a namespace"
        for subject in d.get("subjects", []):
            if subject["kind"] == "ServiceAccount":
                assert subject["namespace"] == stack["namespace"], path


def test_containers_use_service_keys_as_images(stack):
    services = stack["services"]
    for _svc, path, d in stack_docs(stack):
        for c in containers(d):
            assert c["image"] in services, f"{path}: image {c['image']!r} is no service key"
            if "build" in services[c["image"]]:
                # The tool sets imagePullPolicy: Never on built images.
                assert c.get("imagePullPolicy", "Never") == "Never", path
    for svc in services:
        own = [c for s, _, d in stack_docs(stack) if s == svc for c in containers(d)]
        assert any(c["image"] == svc for c in own), f"{svc}: no container with image: {svc}"


def test_references_resolve_within_dependencies(stack):
    """ConfigMaps, Secrets and ServiceAccounts a workload uses come from its own
    manifests or from a service it (transitively) depends on, so they exist
    when it is applied."""
    defined: dict[tuple[str, str], str] = {}
    for svc, _, d in stack_docs(stack):
        key = (d["kind"], d["metadata"]["name"])
        assert key not in defined, f"{key} defined twice"
        defined[key] = svc

    def check(svc, kind, name, key=None):
        owner = defined.get((kind, name))
        assert owner is not None, f"{svc}: {kind} {name} not shipped"
        assert owner == svc or owner in deps_closure(stack, svc), (
            f"{svc} uses {kind} {name} of {owner}, which it does not depend on"
        )
        if key is not None:
            obj = next(
                d for _, _, d in stack_docs(stack) if d["kind"] == kind and d["metadata"]["name"] == name
            )
            assert key in {**obj.get("data", {}), **obj.get("stringData", {})}, (kind, name, key)

    for svc, _, d in stack_docs(stack):
        spec = pod_spec(d)
        if spec is None:
            continue
        if "serviceAccountName" in spec:
            check(svc, "ServiceAccount", spec["serviceAccountName"])
        for v in spec.get("volumes", []):
            if "configMap" in v:
                check(svc, "ConfigMap", v["configMap"]["name"])
            if "secret" in v:
                check(svc, "Secret", v["secret"]["secretName"])
                for item in v["secret"].get("items", []):
                    check(svc, "Secret", v["secret"]["secretName"], item["key"])
        for c in containers(d):
            mounts = {m["name"] for m in c.get("volumeMounts", [])}
            assert mounts <= {v["name"] for v in spec.get("volumes", [])}
            for e in c.get("env", []):
                ref = e.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    check(svc, "Secret", ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
                if "configMapKeyRef" in ref:
                    check(svc, "ConfigMap", ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"])
    # Each Service selects the pods of some workload.
    workloads = [
        pod_labels
        for _, _, d in stack_docs(stack)
        if d["kind"] in WORKLOAD_KINDS
        for pod_labels in [d["spec"]["template"]["metadata"]["labels"]]
    ]
    for name, svc_obj in objects(stack, "Service").items():
        sel = svc_obj["spec"]["selector"]
        assert any(sel.items() <= labels.items() for labels in workloads), name


def _sensitive_values(value, key: str = "") -> list[str]:
    """Leaf values under password/token-like keys, looking inside YAML files too."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _sensitive_values(v, str(k))
    elif isinstance(value, str):
        if re.search(r"pass|token|secret|key", key, re.I) and "\n" not in value:
            out.append(value)
        try:
            inner = yaml.safe_load(value)
        except yaml.YAMLError:
            inner = None
        if isinstance(inner, dict):
            out += _sensitive_values(inner)
    return [v for v in out if v]


def test_secret_values_stay_out_of_configmaps_and_plain_env(stack):
    secret_values = set()
    for secret in objects(stack, "Secret").values():
        data = dict(secret.get("stringData", {}))
        data.update({k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()})
        secret_values |= set(_sensitive_values(data))
    if stack["name"] == "aianalysis-2025-12":
        assert secret_values, "the AIAnalysis stack keeps its DB password in a Secret"
    for cm in objects(stack, "ConfigMap").values():
        for k, text in cm.get("data", {}).items():
            for secret in secret_values:
                assert secret not in text, f"ConfigMap {cm['metadata']['name']}/{k} holds a secret"
    for _svc, path, d in stack_docs(stack):
        for c in containers(d):
            for e in c.get("env", []):
                assert e.get("value") not in secret_values, f"{path}: env {e['name']} inline"
                if re.search(r"PASSWORD|TOKEN", e["name"]):
                    assert "secretKeyRef" in e.get("valueFrom", {}), f"{path}: {e['name']}"


def test_nodeports_match_kind_config(stack):
    (cfg,) = load_docs(local_path(stack["cluster"]["config"], stack.folder))
    mappings = {
        m["containerPort"]: m["hostPort"] for n in cfg["nodes"] for m in n.get("extraPortMappings", [])
    }
    node_ports = {}
    for name, svc in objects(stack, "Service").items():
        for p in svc["spec"]["ports"]:
            if "nodePort" in p:
                assert svc["spec"].get("type") == "NodePort", name
                assert 30000 <= p["nodePort"] <= 32767
                node_ports[(name, p["name"])] = p["nodePort"]
            else:
                assert svc["spec"].get("type", "ClusterIP") == "ClusterIP", name
    assert sorted(node_ports.values()) == sorted(mappings), "nodePorts vs containerPorts"
    expected = AIANALYSIS_HOST_PORTS if stack["name"] == "aianalysis-2025-12" else DEMO_HOST_PORTS
    assert {k: mappings[v] for k, v in node_ports.items()} == expected
    assert len(set(mappings.values())) == len(mappings)


def test_dependency_graph(stack):
    expected = AIANALYSIS_GRAPH if stack["name"] == "aianalysis-2025-12" else DEMO_GRAPH
    graph = {s: set(spec.get("depends_on", [])) for s, spec in stack["services"].items()}
    assert graph == expected
    # Kahn's algorithm: every service gets an order, so the graph is acyclic.
    order, pending = [], dict(graph)
    while pending:
        ready = sorted(s for s, deps in pending.items() if deps <= set(order))
        assert ready, f"cycle among {sorted(pending)}"
        order += ready
        for s in ready:
            del pending[s]
    assert len(order) == len(graph)


# --------------------------------------------------------------------------
# AIAnalysis facts


def test_postgresql_and_redis(e2e):
    pg = find_container(e2e, "postgresql")
    env = env_of(pg)
    assert env["POSTGRES_USER"]["value"] == "slm_user"
    assert env["POSTGRES_DB"]["value"] == "action_history"
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "postgresql-credentials"
    probe = " ".join(pg["readinessProbe"]["exec"]["command"])
    assert "pg_isready" in probe and "-U slm_user -d action_history" in probe
    assert objects(e2e, "Service")["postgresql"]["spec"]["ports"][0]["port"] == 5432
    redis = find_container(e2e, "redis")
    assert "readinessProbe" in redis
    assert objects(e2e, "Service")["redis"]["spec"]["ports"][0]["port"] == 6379


def test_datastorage(e2e):
    c = find_container(e2e, "datastorage")
    env = env_of(c)
    assert env["CONFIG_PATH"]["value"] == "/etc/datastorage/config.yaml"
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert c["ports"][0]["containerPort"] == 8080
    cfg = yaml.safe_load(objects(e2e, "ConfigMap")["datastorage-config"]["data"]["config.yaml"])
    assert cfg["server"]["port"] == 8080
    db = cfg["database"]
    assert (db["host"], db["port"], db["name"], db["user"]) == (
        "postgresql",
        5432,
        "action_history",
        "slm_user",
    )
    assert "password" not in db
    assert cfg["redis"]["addr"] == "redis:6379"
    # The secrets files the config names are mounted from the Secret.
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    for section in ("database", "redis"):
        folder, _, fname = cfg[section]["secretsFile"].rpartition("/")
        assert mounts[folder] == "secrets"
    secret = objects(e2e, "Secret")["postgresql-credentials"]["stringData"]
    assert yaml.safe_load(secret["db-secrets.yaml"]) == {
        "username": "slm_user",
        "password": secret["password"],
    }
    assert "datastorage" in objects(e2e, "Service")


def test_holmesgpt_api(e2e):
    c = find_container(e2e, "holmesgpt-api")
    env = env_of(c)
    assert env["MOCK_LLM_MODE"]["value"] == "true"
    assert c["ports"][0]["containerPort"] == 8080
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    (mount,) = c["volumeMounts"]
    assert mount["mountPath"] == "/etc/holmesgpt"
    cfg = yaml.safe_load(objects(e2e, "ConfigMap")["holmesgpt-api-config"]["data"]["config.yaml"])
    assert cfg["data_storage"]["url"] == "http://datastorage:8080"


def test_aianalysis_controller(e2e):
    deploy = next(
        d
        for _, _, d in stack_docs(e2e)
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "aianalysis-controller"
    )
    spec = pod_spec(deploy)
    c = spec["containers"][0]
    assert c["image"] == "aianalysis"
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {
        "api": 8080,
        "metrics": 9090,
        "health": 8081,
    }
    probe = c["readinessProbe"]["httpGet"]
    assert probe["path"] == "/healthz" and probe["port"] in ("health", 8081)
    env = env_of(c)
    assert env["HOLMESGPT_API_URL"]["value"] == "http://holmesgpt-api:8080"
    assert env["DATASTORAGE_URL"]["value"] == "http://datastorage:8080"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v["configMap"]["name"] for v in spec["volumes"]}
    cms = objects(e2e, "ConfigMap")
    for var in ("CONFIG_PATH", "REGO_POLICY_PATH"):
        folder, _, fname = env[var]["value"].rpartition("/")
        (vol,) = [n for n, p in mounts.items() if p == folder]
        assert fname in cms[volumes[vol]]["data"], var
    policy = cms["aianalysis-policies"]["data"]["approval.rego"]
    assert re.search(r"^package \S+", policy, re.M)
    assert "require_approval" in policy
    assert spec["serviceAccountName"] == "aianalysis-controller"


def test_aianalysis_rbac(e2e):
    role = objects(e2e, "ClusterRole")["aianalysis-controller"]
    grants: dict[str, set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                grants.setdefault(f"{group}/{res}", set()).update(rule["verbs"])
    assert {"get", "list", "watch", "update", "patch"} <= grants["kubernaut.ai/aianalyses"]
    assert {"update", "patch"} <= grants["kubernaut.ai/aianalyses/status"]
    assert {"create", "patch"} <= grants["/events"]
    assert "*" not in set().union(*grants.values())
    leases = objects(e2e, "Role")["aianalysis-controller-leader-election"]
    assert any("leases" in r["resources"] for r in leases["rules"])
    crb = objects(e2e, "ClusterRoleBinding")["aianalysis-controller"]
    assert crb["roleRef"]["name"] == "aianalysis-controller"
    rb = objects(e2e, "RoleBinding")["aianalysis-controller-leader-election"]
    assert rb["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "aianalysis-controller-leader-election",
    }


def test_migrations_job(e2e):
    (job,) = objects(e2e, "Job").values()
    spec = pod_spec(job)
    assert spec["restartPolicy"] in ("Never", "OnFailure")
    c = spec["containers"][0]
    assert c["image"] == "datastorage-migrations"
    script_mount = next(m for m in c["volumeMounts"] if m["name"] == "script")
    assert c["command"][:2] == ["/bin/sh", script_mount["mountPath"] + "/migrate.sh"]
    env = env_of(c)
    assert env["PGHOST"]["value"] == "postgresql"
    assert env["PGUSER"]["value"] == "slm_user"
    assert env["PGDATABASE"]["value"] == "action_history"
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "postgresql-credentials",
        "key": "password",
    }


# --------------------------------------------------------------------------
# offline schema validation


def _kubernetes_validate():
    """kubernetes-validate (requirements-test.txt): required under CI, else optional."""
    if os.environ.get("CI") == "true":
        import kubernetes_validate

        return kubernetes_validate
    return pytest.importorskip("kubernetes_validate")


def _validation_targets():
    for path in SHIPPED_YAML:
        for i, d in enumerate(load_docs(path)):
            if d["kind"] != "Cluster":
                yield pytest.param(d, id=f"{path.relative_to(ROOT)}#{i}-{d['kind']}")


@pytest.mark.parametrize("doc", list(_validation_targets()))
def test_manifest_validates_against_kubernetes_schema(doc):
    kv = _kubernetes_validate()
    try:
        kv.validate(doc, K8S_VERSION, strict=True)
    except kv.SchemaNotFoundError:
        group = doc["apiVersion"].rpartition("/")[0]
        assert group and not group.endswith("k8s.io"), f"no schema for core kind {doc['kind']}"
        pytest.skip(f"no schema for {doc['apiVersion']} {doc['kind']}")


def test_strict_validation_catches_unknown_fields():
    kv = _kubernetes_validate()
    bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "datum": {}}
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, K8S_VERSION, strict=True)


# --------------------------------------------------------------------------
# the migrations runner under busybox sh

# Commands the runner may call (besides psql and pg_isready, faked below).
APPLETS = ["awk", "sed", "sort", "cut", "uniq", "tr", "grep", "sleep", "cat"]

FAKE_PSQL = r"""#!/bin/busybox sh
# Records each call (args + stdin) in $FAKE_PSQL_DIR; answers the
# applied-versions query from the versions recorded so far.
d=$FAKE_PSQL_DIR
n=$(( $(cat "$d/count" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$d/count"
printf '%s\n' "$*" > "$d/call$n.args"
query=
prev=
for a in "$@"; do
    [ "$prev" = "-c" ] && query=$a
    prev=$a
done
if [ -n "$query" ]; then
    printf '%s\n' "$query" > "$d/call$n.sql"
    case $query in
        SELECT*) cat "$d/applied" 2>/dev/null ;;
    esac
else
    cat > "$d/call$n.sql"
fi
sed -n 's/^INSERT INTO goose_db_version (version_id, is_applied) VALUES (\([0-9]*\), true);$/\1/p' \
    "$d/call$n.sql" >> "$d/applied"
exit "${FAKE_PSQL_EXIT:-0}"
"""

SAMPLE_UP_BODY = """\
CREATE TABLE resource_action_traces (
    id bigserial PRIMARY KEY,
    action_type text NOT NULL
);

CREATE FUNCTION set_updated() RETURNS trigger AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""

SAMPLE_GOOSE = f"""\
-- Migration 001: initial schema
-- (text before the Up annotation is not part of it)
-- +goose Up
-- +goose StatementBegin
{SAMPLE_UP_BODY}-- +goose StatementEnd
-- an ordinary comment stays
CREATE INDEX idx_rat_action ON resource_action_traces (action_type);

-- +goose Down
-- +goose StatementBegin
DROP TABLE resource_action_traces;
DROP FUNCTION set_updated();
-- +goose StatementEnd
"""

# The Up section without goose's annotation lines.
SAMPLE_UP = (
    SAMPLE_UP_BODY
    + """\
-- an ordinary comment stays
CREATE INDEX idx_rat_action ON resource_action_traces (action_type);

"""
)


@pytest.fixture(scope="module")
def busybox() -> str:
    for candidate in ("/bin/busybox", shutil.which("busybox")):
        if candidate and Path(candidate).is_file():
            return candidate
    if os.environ.get("CI") == "true":
        pytest.fail("busybox (Debian: busybox-static) is required")
    pytest.skip("busybox not installed (Debian: busybox-static)")


@pytest.fixture
def runner(tmp_path, busybox):
    """Run migrate.sh under busybox sh with a PATH of busybox applets + fakes."""
    (cm,) = [d for d in load_docs(MIGRATIONS_MANIFEST) if d["kind"] == "ConfigMap"]
    script = tmp_path / "migrate.sh"
    script.write_text(cm["data"]["migrate.sh"])
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for applet in APPLETS:
        (bindir / applet).symlink_to(busybox)
    (bindir / "psql").write_text(FAKE_PSQL.replace("/bin/busybox", busybox, 1))
    (bindir / "pg_isready").write_text(f"#!{busybox} sh\nexit 0\n")
    for fake in ("psql", "pg_isready"):
        (bindir / fake).chmod(0o755)
    calls = tmp_path / "calls"
    calls.mkdir()

    def run(*args, **env):
        full_env = {"PATH": str(bindir), "FAKE_PSQL_DIR": str(calls), "MIGRATIONS_WAIT_SECONDS": "2", **env}
        return subprocess.run(
            [busybox, "sh", str(script), *args], env=full_env, capture_output=True, text=True, timeout=60
        )

    def psql_calls():
        n = int((calls / "count").read_text()) if (calls / "count").exists() else 0
        return [
            ((calls / f"call{i}.args").read_text().split(), (calls / f"call{i}.sql").read_text())
            for i in range(1, n + 1)
        ]

    run.calls = psql_calls
    run.script = script
    return run


def test_runner_is_valid_posix_sh(runner, busybox):
    assert runner.script.read_text().startswith("#!/bin/sh\n")
    result = subprocess.run([busybox, "sh", "-n", str(runner.script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    dash = shutil.which("dash")
    if dash:
        result = subprocess.run([dash, "-n", str(runner.script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_extract_prints_exactly_the_up_section(runner, tmp_path):
    f = tmp_path / "001_initial_schema.sql"
    f.write_text(SAMPLE_GOOSE)
    result = runner("extract", str(f))
    assert result.returncode == 0, result.stderr
    assert result.stdout == SAMPLE_UP
    assert runner.calls() == []


def test_extract_handles_crlf_and_annotation_case(runner, tmp_path):
    f = tmp_path / "002_x.sql"
    f.write_bytes(b"-- +goose up\r\nSELECT 1;\r\n--  +goose   DOWN  \r\nSELECT 2;\r\n")
    result = runner("extract", str(f))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "SELECT 1;\n"


def test_extract_fails_without_up_annotation(runner, tmp_path):
    f = tmp_path / "003_plain.sql"
    f.write_text("SELECT 1;\n")
    result = runner("extract", str(f))
    assert result.returncode != 0
    assert result.stdout == ""


def _write_migrations(folder: Path) -> None:
    folder.mkdir()
    (folder / "001_initial_schema.sql").write_text(SAMPLE_GOOSE)
    (folder / "2_second.sql").write_text(
        "-- +goose Up\nALTER TABLE t ADD c int;\n-- +goose Down\nALTER TABLE t DROP c;\n"
    )
    (folder / "010_index.sql").write_text(
        "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY i ON t (c);\n"
        "-- +goose Down\nDROP INDEX i;\n"
    )
    (folder / "README.md").write_text("not a migration\n")
    (folder / "seed.sql").write_text("-- +goose Up\nSELECT 'no version';\n")


def test_apply_runs_up_sections_in_order_once(runner, tmp_path):
    migrations = tmp_path / "migrations"
    _write_migrations(migrations)
    result = runner("apply", str(migrations))
    assert result.returncode == 0, result.stderr
    calls = runner.calls()
    # 1: bookkeeping table, 2: applied versions, then one call per file
    # (plus the separate version record of the NO TRANSACTION file).
    assert "CREATE TABLE IF NOT EXISTS goose_db_version" in calls[0][1]
    assert calls[1][1].startswith("SELECT")
    applied = calls[2:]
    assert len(applied) == 4
    (args1, sql1), (args2, sql2), (args10, sql10), (_, record10) = applied
    assert "--single-transaction" in args1 and "--single-transaction" in args2
    # (trailing blank lines of a section are dropped before the version record)
    assert sql1 == SAMPLE_UP.rstrip("\n") + "\n" + (
        "INSERT INTO goose_db_version (version_id, is_applied) VALUES (1, true);\n"
    )
    assert sql2 == (
        "ALTER TABLE t ADD c int;\nINSERT INTO goose_db_version (version_id, is_applied) VALUES (2, true);\n"
    )
    assert "--single-transaction" not in args10
    assert sql10 == "CREATE INDEX CONCURRENTLY i ON t (c);\n"
    assert record10.strip() == ("INSERT INTO goose_db_version (version_id, is_applied) VALUES (10, true);")
    assert all("-v" in a and "ON_ERROR_STOP=1" in a for a, _ in calls)
    assert "seed.sql" in result.stderr  # skipped: no version prefix

    # A second run finds every version recorded and applies nothing.
    again = runner("apply", str(migrations))
    assert again.returncode == 0, again.stderr
    new_calls = runner.calls()[len(calls) :]
    assert len(new_calls) == 2
    assert "0 applied" in again.stderr


def test_apply_fails_on_a_file_without_up_and_records_nothing_for_it(runner, tmp_path):
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "001_ok.sql").write_text("-- +goose Up\nSELECT 1;\n")
    (migrations / "002_bad.sql").write_text("SELECT 2;\n")
    result = runner("apply", str(migrations))
    assert result.returncode != 0
    assert "002_bad.sql" in result.stderr
    recorded = [sql for _, sql in runner.calls()]
    assert not any("VALUES (2, true)" in sql for sql in recorded)
    assert any("VALUES (1, true)" in sql for sql in recorded)


def test_apply_stops_when_psql_fails(runner, tmp_path):
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "001_ok.sql").write_text("-- +goose Up\nSELECT 1;\n")
    result = runner("apply", str(migrations), FAKE_PSQL_EXIT="3")
    assert result.returncode != 0


def test_apply_rejects_duplicate_versions(runner, tmp_path):
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "001_a.sql").write_text("-- +goose Up\nSELECT 1;\n")
    (migrations / "1_b.sql").write_text("-- +goose Up\nSELECT 2;\n")
    result = runner("apply", str(migrations))
    assert result.returncode != 0
    assert "duplicate" in result.stderr
    assert not any("--single-transaction" in a for a, _ in runner.calls())
