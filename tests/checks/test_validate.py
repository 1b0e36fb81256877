"""`invoke stack.check` and the pure checks behind it (tasks/libs/checks/validate.py).

The CLI tests run the task as a user would, on the shipped stacks and on copies in tmp
whose manifests are broken on purpose: each mistake must come out as one precise
`FILE: KIND/NAME: problem` line, exit 1, no traceback. No cluster, no engine.
"""

import copy
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, aianalysis_crd, invoke

from tasks.libs.build import digest as cache
from tasks.libs.checks import validate
from tasks.libs.stack.model import load_stack

SOURCE_CRD = "${SOURCE_DIR}/config/crd/bases/kubernaut.ai_aianalyses.yaml"
# The AIAnalysis stack of December 2025, whose manifests stay as they are (e2e.yaml follows Kubernaut's HEAD).
AIANALYSIS = "stacks/kubernaut-2025-12.yaml"
MANIFESTS = "kubernaut-2025-12/manifests"
STACK_FOLDERS = {"demo.yaml": ["manifests", "dockerfiles"], AIANALYSIS: ["stacks/kubernaut-2025-12"]}

AIANALYSIS_CRD = aianalysis_crd()


@pytest.fixture(scope="module")
def kv():
    """kubernetes-validate (requirements-test.txt): required under CI, else optional."""
    if os.environ.get("CI") == "true":
        import kubernetes_validate

        return kubernetes_validate
    return pytest.importorskip("kubernetes_validate")


def check(stack_path, *args, **env):
    return invoke(["stack.check", *args], {"E2E_STACK": str(stack_path), "E2E_SOURCE": "", **env})


def problems(result) -> list:
    return [line for line in result.stderr.splitlines() if ": " in line and not line.startswith("kindling:")]


def copy_stack(tmp_path, stack_file) -> Path:
    """A copy of a shipped stack and the files it names from this repository."""
    folder = tmp_path / "stack"
    (folder / stack_file).parent.mkdir(parents=True)
    shutil.copy(ROOT / stack_file, folder / stack_file)
    for name in STACK_FOLDERS[stack_file]:
        shutil.copytree(ROOT / name, folder / name)
    return folder / stack_file


def edit(path: Path, change):
    """Rewrite a manifest file: change(docs) edits the list of documents in place."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    change(docs)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def find(docs, kind, name=None):
    return next(d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


def container(docs, kind, name):
    return find(docs, kind, name)["spec"]["template"]["spec"]["containers"][0]


def fake_kubernaut(folder: Path) -> Path:
    """The parts of a Kubernaut checkout the AIAnalysis stack names: three Dockerfiles, the migrations its
    own Containerfile copies, and the AIAnalysis CRD."""
    for containerfile in (
        "docker/data-storage.Dockerfile",
        "holmesgpt-api/Dockerfile",
        "docker/aianalysis.Dockerfile",
    ):
        (folder / containerfile).parent.mkdir(parents=True, exist_ok=True)
        (folder / containerfile).write_text("FROM scratch\n")
    (folder / "migrations").mkdir()
    (folder / "migrations/001_initial_schema.sql").write_text("-- +goose Up\n")
    crd = folder / "config/crd/bases/kubernaut.ai_aianalyses.yaml"
    crd.parent.mkdir(parents=True)
    crd.write_text(yaml.safe_dump(AIANALYSIS_CRD, sort_keys=False))
    return folder


# --------------------------------------------------------------------------
# the CLI on the shipped stacks


def test_demo_stack_passes(kv):
    result = check(ROOT / "demo.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    stack = load_stack(ROOT / "demo.yaml", env={})
    for service, count in (("store", 2), ("brain", 2), ("controller", 3)):
        # Each built image's inputs: by the default rule, what its context sends.
        sent = cache.context_files(stack.services[service].build.context, [ROOT / ".kindling"])
        line = f"  {service:<24} {count} object(s) ok; image inputs: {len(sent)} file(s) by rule context\n"
        assert line in result.stdout, result.stdout
    assert re.search(r"Kubernetes 1\.\d+ schemas \(the cluster's: ", result.stdout), result.stdout
    assert "does not exist" not in result.stdout


def test_aianalysis_stack_passes_without_a_kubernaut_checkout(kv, tmp_path):
    missing = tmp_path / "no-kubernaut"
    result = check(ROOT / AIANALYSIS, E2E_SOURCE=str(missing))
    assert result.returncode == 0, result.stdout + result.stderr
    notes = [line for line in result.stdout.splitlines() if "does not exist" in line]
    assert len(notes) == 1, result.stdout
    assert str(missing) in notes[0] and SOURCE_CRD in notes[0]
    assert "the builds of datastorage-migrations, datastorage, holmesgpt-api, aianalysis" in notes[0]
    for service in ("postgresql", "redis", "datastorage-migrations", "datastorage", "holmesgpt-api"):
        assert f"  {service:<24} " in result.stdout
    assert f"  {'aianalysis':<24} 9 object(s) ok; not checked: {SOURCE_CRD}" in result.stdout


def test_aianalysis_stack_with_a_checkout_checks_the_crd(kv, tmp_path):
    source = fake_kubernaut(tmp_path / "kubernaut")
    result = check(ROOT / AIANALYSIS, E2E_SOURCE=str(source))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "does not exist" not in result.stdout
    assert f"  {'aianalysis':<24} 10 object(s) ok; image inputs: " in result.stdout

    # The CRD is validated like every other object, and reported by its absolute path.
    crd = source / "config/crd/bases/kubernaut.ai_aianalyses.yaml"
    edit(crd, lambda docs: docs[0]["spec"].update(scopes="Namespaced"))
    bad = check(ROOT / AIANALYSIS, E2E_SOURCE=str(source))
    assert bad.returncode == 1
    assert problems(bad) == [
        f"{crd}: CustomResourceDefinition/aianalyses.kubernaut.ai: spec: Additional "
        "properties are not allowed ('scopes' was unexpected)"
    ]


def test_a_missing_source_does_not_excuse_missing_files_of_this_repository(kv, tmp_path):
    path = copy_stack(tmp_path, AIANALYSIS)
    (path.parent / MANIFESTS / "redis.yaml").unlink()
    result = check(path, E2E_SOURCE=str(tmp_path / "no-kubernaut"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        f"{path}: services.redis.manifests[0]: file {path.parent}/{MANIFESTS}/redis.yaml does not exist"
        in result.stderr
    )


# --------------------------------------------------------------------------
# mutated copies: one mistake, one precise line

CONTROLLER = "manifests/demo/controller.yaml"


def wrong_probe_port(docs):
    container(docs, "Deployment", "controller")["readinessProbe"]["httpGet"]["port"] = 8081


def missing_configmap(docs):
    docs.remove(find(docs, "ConfigMap", "controller-config"))


def unknown_field(docs):
    find(docs, "Deployment", "controller")["spec"]["replica"] = 1


def foreign_image(docs):
    container(docs, "Deployment", "controller")["image"] = "docker.io/library/nginx:1.25"


DEMO_MUTATIONS = {
    "probe port": (
        wrong_probe_port,
        f'{CONTROLLER}: Deployment/controller: container "controller": readinessProbe.httpGet.port '
        "8081 is not a port the container declares (declared: http=8080)",
    ),
    "missing configmap": (
        missing_configmap,
        f'{CONTROLLER}: Deployment/controller: volume "config" references ConfigMap '
        '"controller-config", which no manifest of the stack defines (namespace kindling-demo); '
        "define it, or mark the reference `optional: true`",
    ),
    "unknown field": (
        unknown_field,
        f"{CONTROLLER}: Deployment/controller: spec: Additional properties are not allowed "
        "('replica' was unexpected)",
    ),
    "image not a service": (
        foreign_image,
        f'{CONTROLLER}: Deployment/controller: container "controller": image '
        '"docker.io/library/nginx:1.25" is not an image of the stack: name a service '
        "(store, brain, controller)",
    ),
}


@pytest.mark.parametrize("mutation", DEMO_MUTATIONS)
def test_a_broken_demo_manifest_is_named_precisely(kv, tmp_path, mutation):
    change, expected = DEMO_MUTATIONS[mutation]
    path = copy_stack(tmp_path, "demo.yaml")
    edit(path.parent / CONTROLLER, change)
    result = check(path)
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert problems(result) == [expected]
    assert f"kindling: stack.check: 1 problem(s) in {path}:" in result.stderr


def test_every_problem_is_listed(kv, tmp_path):
    path = copy_stack(tmp_path, "demo.yaml")
    for change, _ in DEMO_MUTATIONS.values():
        edit(path.parent / CONTROLLER, change)
    result = check(path)
    assert result.returncode == 1
    assert sorted(problems(result)) == sorted(expected for _, expected in DEMO_MUTATIONS.values())


AIANALYSIS_MUTATIONS = {
    "secret key": (
        f"{MANIFESTS}/datastorage.yaml",
        lambda docs: container(docs, "Deployment", "datastorage")["env"][1]["valueFrom"][
            "secretKeyRef"
        ].update(key="passwd"),
        f'{MANIFESTS}/datastorage.yaml: Deployment/datastorage: container "datastorage" env '
        'DB_PASSWORD references key "passwd" of Secret "postgresql-credentials", which has no such key '
        "(keys: db-secrets.yaml, password, redis-secrets.yaml)",
    ),
    "probe port name": (
        f"{MANIFESTS}/aianalysis.yaml",
        lambda docs: container(docs, "Deployment", "aianalysis-controller")["livenessProbe"][
            "httpGet"
        ].update(port="healthz"),
        f"{MANIFESTS}/aianalysis.yaml: Deployment/aianalysis-controller: container "
        '"controller": livenessProbe.httpGet.port "healthz" is not a port the container declares '
        "(declared: api=8080, metrics=9090, health=8081)",
    ),
    "service selector": (
        f"{MANIFESTS}/redis.yaml",
        lambda docs: find(docs, "Service", "redis")["spec"].update(selector={"app": "redis-master"}),
        f"{MANIFESTS}/redis.yaml: Service/redis: selector app=redis-master matches no pod "
        "template of the stack (namespace kubernaut-system)",
    ),
    "prebuilt image": (
        f"{MANIFESTS}/postgresql.yaml",
        lambda docs: container(docs, "Deployment", "postgresql").update(image="postgres:15"),
        f'{MANIFESTS}/postgresql.yaml: Deployment/postgresql: container "postgresql": image '
        '"postgres:15" is not an image of the stack: name a service (postgresql, redis, '
        "datastorage-migrations, datastorage, holmesgpt-api, aianalysis) or a prebuilt image of "
        "the stack (docker.io/library/postgres:16-alpine, docker.io/library/redis:7-alpine)",
    ),
}


@pytest.mark.parametrize("mutation", AIANALYSIS_MUTATIONS)
def test_a_broken_aianalysis_manifest_is_named_precisely_without_a_checkout(kv, tmp_path, mutation):
    manifest, change, expected = AIANALYSIS_MUTATIONS[mutation]
    path = copy_stack(tmp_path, AIANALYSIS)
    edit(path.parent / manifest, change)
    result = check(path, E2E_SOURCE=str(tmp_path / "no-kubernaut"))
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert problems(result) == [expected]


def test_the_prebuilt_image_itself_may_be_written_out(kv, tmp_path):
    path = copy_stack(tmp_path, AIANALYSIS)
    edit(
        path.parent / MANIFESTS / "postgresql.yaml",
        lambda docs: container(docs, "Deployment", "postgresql").update(image="postgres:16-alpine"),
    )
    result = check(path, E2E_SOURCE=str(tmp_path / "no-kubernaut"))
    assert result.returncode == 0, result.stderr


def test_unreadable_manifest_is_a_problem_not_a_traceback(kv, tmp_path):
    path = copy_stack(tmp_path, "demo.yaml")
    (path.parent / "manifests/demo/store.yaml").write_text("kind: [unclosed\n")
    edit(
        path.parent / "manifests/demo/brain.yaml",
        lambda docs: find(docs, "Deployment")["spec"].update(template=["not", "a", "mapping"]),
    )
    result = check(path)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    lines = problems(result)
    assert any(line.startswith("manifests/demo/store.yaml: invalid YAML:") for line in lines), lines
    assert any(
        line.startswith("manifests/demo/brain.yaml: Deployment/brain: spec.template: ") for line in lines
    )


def test_missing_kubernetes_validate_is_a_clear_error(tmp_path):
    shadow = tmp_path / "shadow" / "kubernetes_validate"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named kubernetes_validate')\n")
    pythonpath = os.pathsep.join(filter(None, [str(shadow.parent), os.environ.get("PYTHONPATH")]))
    result = check(ROOT / "demo.yaml", PYTHONPATH=pythonpath)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "stack.check needs the kubernetes-validate package" in result.stderr
    assert "pip install kubernetes-validate" in result.stderr


def test_kubernetes_version_option(kv):
    assert check(ROOT / "demo.yaml", "--kubernetes-version", "1.30").returncode == 0
    bad = check(ROOT / "demo.yaml", "--kubernetes-version", "1.2")
    assert bad.returncode == 1 and "has no schemas for 1.2; choose one of" in bad.stderr
    worse = check(ROOT / "demo.yaml", "--kubernetes-version", "latest")
    assert worse.returncode == 1 and "is not a Kubernetes minor version" in worse.stderr


def test_every_option_has_help():
    result = invoke(["--help", "stack.check"])
    assert result.returncode == 0, result.stderr
    assert "--kubernetes-version" in result.stdout and "schemas the objects are validated" in result.stdout


# --------------------------------------------------------------------------
# the pure checks


def item(doc, service="svc", file="m.yaml"):
    doc.setdefault("metadata", {}).setdefault("namespace", "ns")
    return validate.Item(service, file, doc)


def deployment(name="api", containers=None, labels=None, volumes=None, selector=None):
    labels = {"app": name} if labels is None else labels
    spec = {
        "containers": containers
        if containers is not None
        else [
            {
                "name": name,
                "image": "localhost/p/api:check",
                "ports": [{"name": "http", "containerPort": 8080}],
            }
        ]
    }
    if volumes is not None:
        spec["volumes"] = volumes
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {
            "selector": {"matchLabels": labels if selector is None else selector},
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }


def configmap(name, **data):
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns"},
        "data": data,
    }


def test_problem_format():
    assert str(validate.Problem("m.yaml", "Service/a", "bad")) == "m.yaml: Service/a: bad"
    assert str(validate.Problem("m.yaml", "", "invalid YAML")) == "m.yaml: invalid YAML"


def test_sample_refs_and_render(tmp_path):
    path = tmp_path / "s.yaml"
    (tmp_path / "m.yaml").write_text("")
    path.write_text(
        yaml.safe_dump(
            {
                "name": "s",
                "project": "proj",
                "services": {
                    "api": {"build": {"containerfile": "m.yaml"}, "manifests": ["m.yaml"]},
                    "db": {"image": "docker.io/library/postgres:16-alpine"},
                },
            }
        )
    )
    stack = load_stack(path, env={})
    refs = validate.sample_refs(stack)
    assert refs == {"api": "localhost/proj/api:check", "db": "docker.io/library/postgres:16-alpine"}
    docs = [deployment(containers=[{"name": "a", "image": "api"}, {"name": "b", "image": "db"}])]
    del docs[0]["metadata"]["namespace"]
    (rendered,) = validate.render_file(docs, stack, refs)
    first, second = rendered["spec"]["template"]["spec"]["containers"]
    assert first == {"name": "a", "image": "localhost/proj/api:check", "imagePullPolicy": "Never"}
    assert second == {"name": "b", "image": "docker.io/library/postgres:16-alpine"}
    assert rendered["metadata"]["namespace"] == "s"


def test_display_path():
    assert validate.display_path("/a/b/m/x.yaml", "/a/b") == "m/x.yaml"
    assert validate.display_path("/src/crd.yaml", "/a/b") == "/src/crd.yaml"


@pytest.mark.parametrize(
    "port, problem",
    [
        ("http", None),
        (8080, None),
        (
            8081,
            'container "api": readinessProbe.httpGet.port 8081 is not a port the container declares '
            "(declared: http=8080)",
        ),
        (
            "metrics",
            'container "api": readinessProbe.httpGet.port "metrics" is not a port the container declares '
            "(declared: http=8080)",
        ),
        (
            "8080",
            'container "api": readinessProbe.httpGet.port "8080" is a string: write the number 8080 '
            "or a port name",
        ),
    ],
)
def test_check_probes(port, problem):
    doc = deployment()
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/", "port": port}
    }
    assert validate.check_probes(item(doc)) == ([problem] if problem else [])


def test_check_probes_tcp_startup_init_and_no_ports():
    doc = deployment(
        containers=[
            {"name": "a", "image": "x", "startupProbe": {"tcpSocket": {"port": 5432}}},
            {"name": "b", "image": "x", "livenessProbe": {"exec": {"command": ["true"]}}},
        ]
    )
    doc["spec"]["template"]["spec"]["initContainers"] = [
        {"name": "i", "image": "x", "ports": [{"containerPort": 1}], "readinessProbe": {"grpc": {"port": 2}}}
    ]
    assert validate.check_probes(item(doc)) == [
        'container "i": readinessProbe.grpc.port 2 is not a port the container declares (declared: 1)',
        'container "a": startupProbe.tcpSocket.port 5432 is not a port the container declares '
        "(it declares no ports)",
    ]


def test_check_references():
    volumes = [
        {"name": "c", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "a"}]}},
        {"name": "opt", "configMap": {"name": "absent", "optional": True}},
        {"name": "ca", "configMap": {"name": "kube-root-ca.crt"}},
        {"name": "s", "secret": {"secretName": "creds"}},
        {
            "name": "p",
            "projected": {
                "sources": [
                    {"configMap": {"name": "other"}},
                    {"secret": {"name": "creds", "items": [{"key": "nope", "path": "x"}]}},
                ]
            },
        },
    ]
    container = {
        "name": "api",
        "image": "x",
        "env": [
            {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "b"}}},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": True}}},
            {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "envFrom": [{"secretRef": {"name": "missing"}}, {"configMapRef": {"name": "cfg"}}],
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "ns"},
        "stringData": {"password": "x"},
        "data": {"user": "eA=="},
    }
    elsewhere = configmap("other")
    elsewhere["metadata"]["namespace"] = "ns2"
    items = [
        item(configmap("cfg", a="1")),
        item(secret),
        item(elsewhere),
        item(deployment(containers=[container], volumes=volumes)),
    ]
    defined = validate.defined_objects(items)
    assert defined[("Secret", "ns", "creds")] == {"password", "user"}
    assert validate.check_references(items[-1], defined) == [
        'volume "p" references ConfigMap "other", which no manifest of the stack defines (namespace ns); '
        "define it, or mark the reference `optional: true`",
        'volume "p" references key "nope" of Secret "creds", which has no such key (keys: password, user)',
        'container "api" env A references key "b" of ConfigMap "cfg", which has no such key (keys: a)',
        'container "api" envFrom references Secret "missing", which no manifest of the stack defines '
        "(namespace ns); define it, or mark the reference `optional: true`",
    ]


def test_check_selectors():
    def service(selector, namespace="ns", **spec):
        return item(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "svc", "namespace": namespace},
                "spec": {
                    "selector": selector,
                    "ports": [{"name": "web", "port": 80, "targetPort": "http"}],
                    **spec,
                },
            }
        )

    items = [item(deployment(labels={"app": "api", "tier": "web"}))]
    templates = validate.pod_templates(items)
    assert validate.check_selectors(service({"app": "api"}), templates) == []
    assert validate.check_selectors(service({"app": "api", "tier": "db"}), templates) == [
        "selector app=api,tier=db matches no pod template of the stack (namespace ns)"
    ]
    assert validate.check_selectors(service({"app": "api"}, namespace="other"), templates) == [
        "selector app=api matches no pod template of the stack (namespace other)"
    ]
    assert validate.check_selectors(service({}), templates) == []
    assert (
        validate.check_selectors(service({"x": "y"}, type="ExternalName", externalName="a.b"), templates)
        == []
    )
    named = service({"app": "api"})
    named.doc["spec"]["ports"][0]["targetPort"] = "grpc"
    assert validate.check_selectors(named, templates) == [
        'port web: targetPort "grpc" is not a port name the selected pods declare (http)'
    ]
    mismatched = item(deployment(labels={"app": "api"}, selector={"app": "apii"}))
    assert validate.check_selectors(mismatched, templates) == [
        "spec.selector app=apii does not match the pod template's labels (app=api)"
    ]


def test_check_images():
    allowed = {"localhost/p/api:check", "docker.io/library/postgres:16-alpine"}

    def run(image, **more):
        containers = [{"name": "c", **({"image": image} if image is not None else {})}]
        return validate.check_images(
            item(deployment(containers=containers)),
            allowed,
            ["api", "db"],
            ["docker.io/library/postgres:16-alpine"],
        )

    assert run("localhost/p/api:check") == []
    assert run("postgres:16-alpine") == []  # the same image as docker.io/library/postgres:16-alpine
    assert run("localhost/p/api:other") == [
        'container "c": image "localhost/p/api:other" is not an image of the '
        "stack: name a service (api, db) or a prebuilt image of the stack "
        "(docker.io/library/postgres:16-alpine)"
    ]
    assert run(None) == ['container "c" has no image']
    assert run("Bad Image")[0].startswith('container "c": ')


def cr(api_version="kubernaut.ai/v1alpha1", kind="AIAnalysis"):
    return item({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}, "spec": {}})


def test_check_schema_custom_resources(kv):
    crds = validate.stack_crds([item(dict(AIANALYSIS_CRD))])
    schema = AIANALYSIS_CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert crds == {("kubernaut.ai", "AIAnalysis"): ("aianalyses.kubernaut.ai", {"v1alpha1": schema})}
    result = validate.Result()
    assert validate.check_schema(cr(), result, kv, "1.29", crds) == []
    assert result.notes == {}
    # Checked against the CRD's own schema (each rule: test_crdschema.py).
    typo = item({**cr().doc, "spce": {}})
    assert validate.check_schema(typo, result, kv, "1.29", crds) == [
        "unknown field 'spce': the CRD's schema does not declare it, and the API server rejects it "
        "under kubectl's strict validation"
    ]
    ruled = copy.deepcopy(AIANALYSIS_CRD)
    ruled["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"] = [{"rule": "true"}]
    assert validate.check_schema(cr(), result, kv, "1.29", validate.stack_crds([item(ruled)])) == []
    assert result.notes["svc"] == [
        "AIAnalysis checked against CRD aianalyses.kubernaut.ai; left to the API server: "
        "CEL rules (x-kubernetes-validations)"
    ]
    schemaless = copy.deepcopy(AIANALYSIS_CRD)
    del schemaless["spec"]["versions"][0]["schema"]
    result = validate.Result()
    assert validate.check_schema(cr(), result, kv, "1.29", validate.stack_crds([item(schemaless)])) == []
    assert result.notes["svc"] == [
        "AIAnalysis not schema-checked: CRD aianalyses.kubernaut.ai gives no schema for it"
    ]
    assert validate.check_schema(cr("kubernaut.ai/v1"), result, kv, "1.29", crds) == [
        "CustomResourceDefinition aianalyses.kubernaut.ai of the stack has no version 'v1' (it has: v1alpha1)"
    ]
    # No CRD in the stack: the API server would refuse it ...
    assert validate.check_schema(cr(), validate.Result(), kv, "1.29", {}) == [
        "Kubernetes 1.29 has no AIAnalysis in kubernaut.ai/v1alpha1, and no CRD of the stack defines it"
    ]
    # ... unless its CRD may be in a file that could not be read.
    result = validate.Result()
    assert validate.check_schema(cr(), result, kv, "1.29", {}, [SOURCE_CRD]) == []
    assert result.notes["svc"] == [
        f"AIAnalysis (kubernaut.ai/v1alpha1) not schema-checked: its CRD may be in {SOURCE_CRD} (not checked)"
    ]
    # A misspelt built-in kind is never excused.
    assert validate.check_schema(
        cr("apps/v1", "Deploymnet"), validate.Result(), kv, "1.29", {}, [SOURCE_CRD]
    ) == ["Kubernetes 1.29 has no Deploymnet in apps/v1, and no CRD of the stack defines it"]


def test_check_schema_reports_the_field(kv):
    doc = deployment()
    doc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    assert validate.check_schema(item(doc), validate.Result(), kv, "1.29", {}) == [
        "spec.template.spec.containers[0].ports[0].containerPort: '8080' is not of type 'integer'"
    ]


def test_check_runs_everything_and_survives_malformed_objects(kv):
    broken = deployment(name="broken")
    broken["spec"]["template"]["spec"]["volumes"] = {"not": "a list"}
    items = [
        item(deployment(), file="a.yaml"),
        item(broken, file="b.yaml"),
        item(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "api"},
                "spec": {"selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": "http"}]},
            },
            service="other",
            file="c.yaml",
        ),
    ]
    result = validate.check(items, kv=kv, refs={"api": "localhost/p/api:check"})
    assert result.objects == {"svc": 2, "other": 1}
    assert [str(p) for p in result.problems] == [
        "b.yaml: Deployment/broken: spec.template.spec.volumes: {'not': 'a list'} is not of "
        "type 'array', 'null'"
    ]


# --------------------------------------------------------------------------
# what the API server rejects beyond the schema (tasks/libs/checks/apirules.py)


def api_rules(doc, version="1.29"):
    result = validate.Result()
    problems = validate.check_api_rules(item(doc), result, version)
    return problems, result.notes.get("svc", [])


def one_container(**fields):
    return deployment(containers=[{"name": "api", "image": "x", **fields}])


@pytest.mark.parametrize(
    "value",
    ["100m", "0.5", 2, 0.25, "512Mi", "1Gi", "1e3", "1E3", "1.5G", ".5", "1.", "500n", "0", "+1", "1e+3"],
)
def test_quantities_the_api_server_parses(value):
    assert api_rules(one_container(resources={"limits": {"cpu": value}})) == ([], [])


@pytest.mark.parametrize("value", ["1Gb", "1K", "1 Gi", "one", "1.5.5", "1Mi3", "e", "", True, "-100m"])
def test_quantities_the_api_server_refuses(value):
    problems, _ = api_rules(one_container(resources={"requests": {"memory": value}}))
    assert len(problems) == 1, problems
    expected = (
        f'container "api": resources.requests.memory "{value}" is negative'
        if value == "-100m"
        else f'container "api": resources.requests.memory "{value}" is not a Kubernetes quantity: '
        "a number with an optional suffix: Ki Mi Gi Ti Pi Ei"
    )
    assert problems[0].startswith(expected), problems


def test_requests_above_limits_and_storage_quantities():
    doc = one_container(
        resources={"requests": {"cpu": "1500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1024Mi"}}
    )
    assert api_rules(doc)[0] == [
        'container "api": resources.requests.cpu "1500m" is more than its limit "1"; the '
        "API server needs requests <= limits"
    ]  # 1Gi == 1024Mi is fine
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10GB"}}},
    }
    assert api_rules(claim)[0] == [
        'spec.resources.requests.storage "10GB" is not a Kubernetes quantity: a number '
        "with an optional suffix: Ki Mi Gi Ti Pi Ei (powers of 1024), m k M G T P E "
        '(powers of 1000) or an exponent (e.g. "512Mi", "500m", "1e3")'
    ]
    sized = one_container()
    sized["spec"]["template"]["spec"]["volumes"] = [{"name": "tmp", "emptyDir": {"sizeLimit": "1 Gi"}}]
    assert api_rules(sized)[0][0].startswith(
        'volume "tmp": emptyDir.sizeLimit "1 Gi" is not a Kubernetes quantity'
    )


def test_names_in_pod_lists_must_be_unique():
    doc = deployment(
        containers=[
            {
                "name": "api",
                "image": "x",
                "ports": [{"name": "http", "containerPort": 80}, {"name": "http", "containerPort": 81}],
                "volumeMounts": [
                    {"name": "data", "mountPath": "/data"},
                    {"name": "cfg", "mountPath": "/data"},
                ],
            },
            {"name": "api", "image": "y"},
        ]
    )
    spec = doc["spec"]["template"]["spec"]
    spec["initContainers"] = [{"name": "api", "image": "z"}]
    spec["volumes"] = [{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]
    problems, notes = api_rules(doc)
    assert problems == [
        'volume "data" is defined twice; volume names must be unique in a pod',
        'container name "api" is used twice; names must be unique across containers and initContainers',
        'container name "api" is used twice; names must be unique across containers and initContainers',
        'container "api": ports[1].name "http" is used twice; port names must be unique in a container',
        'container "api": volumeMounts[1].mountPath "/data" is used twice; each mount needs its own path',
        'container "api": volumeMounts[1].name "cfg" is not a volume of the pod (volumes: '
        "data); add the volume "
        "or correct the name",
    ]
    assert notes == []


def test_duplicates_the_api_server_accepts_are_notes_not_problems():
    doc = one_container(
        ports=[
            {"containerPort": 8080},
            {"containerPort": 8080, "protocol": "TCP"},
            {"containerPort": 8080, "protocol": "UDP"},
        ],
        env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}],
    )
    problems, notes = api_rules(doc)
    assert problems == []
    assert notes == [
        'm.yaml: Deployment/api: container "api": ports[1]: containerPort 8080/TCP is declared '
        "twice (the API server "
        "accepts it with a warning; kubectl apply may merge the entries)",
        'm.yaml: Deployment/api: container "api": env[1] A is defined twice; the later value '
        "wins (the API server "
        "warns that the earlier one may be dropped by kubectl apply)",
    ]


def test_statefulset_mounts_may_name_its_volume_claim_templates():
    doc = one_container(volumeMounts=[{"name": "data", "mountPath": "/var/lib/data"}])
    doc["kind"] = "StatefulSet"
    doc["spec"]["volumeClaimTemplates"] = [
        {"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}}
    ]
    assert api_rules(doc) == ([], [])
    doc["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = "1gi"
    assert api_rules(doc)[0] == [
        'spec.volumeClaimTemplates[0].spec.resources.requests.storage "1gi" is not a '
        "Kubernetes quantity: a number with an optional suffix: Ki Mi Gi Ti Pi Ei (powers "
        'of 1024), m k M G T P E (powers of 1000) or an exponent (e.g. "512Mi", "500m", '
        '"1e3")'
    ]


def test_label_keys_values_and_selectors():
    doc = deployment(labels={"app": "api"})
    doc["metadata"]["labels"] = {
        "app.kubernetes.io/name": "api",
        "example.com/": "x",
        "bad key": "v",
        "tier": "front end",
        "empty": "",
        "a" * 64: "v",
        "Example.COM/x": "v",
    }
    doc["spec"]["selector"] = {
        "matchLabels": {"app": "api"},
        "matchExpressions": [
            {"key": "tier", "operator": "In"},
            {"key": "env", "operator": "Exists", "values": ["x"]},
            {"key": "env", "operator": "Equals", "values": ["x"]},
            {"key": "env", "operator": "In", "values": ["a b"]},
        ],
    }
    problems, _ = api_rules(doc)
    name_rule = (
        "its name must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    )
    value_rule = (
        "a label value must be empty or 1-63 letters, digits, '-', '_' or '.', starting and ending with a "
        "letter or digit"
    )
    assert problems == [
        f'metadata.labels key "example.com/" is not a valid label key: {name_rule}',
        f'metadata.labels key "bad key" is not a valid label key: {name_rule}',
        f'metadata.labels["tier"] "front end" is not a valid label value: {value_rule}',
        f'metadata.labels key "{"a" * 64}" is not a valid label key: {name_rule}',
        'metadata.labels key "Example.COM/x" is not a valid label key: its prefix (before '
        "'/') must be a DNS-1123 "
        "subdomain, e.g. example.com/name",
        "spec.selector.matchExpressions[0]: operator In needs values",
        "spec.selector.matchExpressions[1]: operator Exists takes no values; remove them",
        'spec.selector.matchExpressions[2]: operator "Equals" is not one of In, NotIn, Exists, DoesNotExist',
        f'spec.selector.matchExpressions[3].values "a b" is not a valid label value: {value_rule}',
    ]
    template = deployment(labels={"app": "my app"})
    assert api_rules(template)[0] == [
        f'spec.template.metadata.labels["app"] "my app" is not a valid label value: {value_rule}',
        f'spec.selector.matchLabels["app"] "my app" is not a valid label value: {value_rule}',
    ]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "api"},
        "spec": {"selector": {"app/": "api"}, "ports": [{"port": 80}]},
    }
    assert api_rules(service)[0] == [f'spec.selector key "app/" is not a valid label key: {name_rule}']


@pytest.mark.parametrize(
    "kind,name,version,problem",
    [
        ("ConfigMap", "app.config-1", "1.29", None),
        (
            "ConfigMap",
            "App_Config",
            "1.29",
            "is not a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters; rename "
            'it, e.g. "app-config"',
        ),
        ("Deployment", "a" * 254, "1.29", "is not a DNS-1123 subdomain"),
        (
            "StatefulSet",
            "db.primary",
            "1.29",
            "is not a DNS-1123 label: lowercase letters, digits and '-', starting and "
            "ending with a letter or digit, at most 63 characters; rename it, e.g. "
            '"db-primary"',
        ),
        ("Namespace", "team-a", "1.29", None),
        ("Namespace", "Team-A", "1.29", "is not a DNS-1123 label"),
        (
            "Service",
            "1api",
            "1.29",
            "is not a DNS-1035 label: lowercase letters, digits and '-', starting with a letter",
        ),
        ("Service", "1api", "1.36", None),  # KEP-5311: DNS-1123 labels since 1.36
        ("Service", "api.v1", "1.36", "is not a DNS-1123 label"),
        ("ClusterRole", "system:kindling", "1.29", None),  # RBAC names are path segments
        ("Role", "a/b", "1.29", "is not a name that is not '.' or '..' and has no '/' or '%'"),
        (
            "CronJob",
            "c" * 53,
            "1.29",
            "has 53 characters; a CronJob name may have at most 52 (its Jobs add 11)",
        ),
        ("AIAnalysis", "Any_Name", "1.29", None),  # custom resources: left to the API server
    ],
)
def test_metadata_name_formats(kind, name, version, problem):
    doc = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}
    problems, _ = api_rules(doc, version)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith(f'metadata.name "{name}" {problem}'), problems


def test_api_rule_problems_come_out_as_lines_of_stack_check(kv):
    doc = deployment()
    doc["metadata"]["name"] = "My_API"
    doc["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"memory": "1Gb"}}
    result = validate.check([item(doc, file="api.yaml")], kv=kv, refs={"api": "localhost/p/api:check"})
    lines = [str(p) for p in result.problems]
    assert len(lines) == 2, lines
    assert lines[0].startswith(
        'api.yaml: Deployment/My_API: metadata.name "My_API" is not a DNS-1123 subdomain'
    )
    assert lines[1].startswith(
        'api.yaml: Deployment/My_API: container "api": resources.limits.memory "1Gb" is not '
        "a Kubernetes quantity"
    )
