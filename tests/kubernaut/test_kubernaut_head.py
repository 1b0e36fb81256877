"""The default stack (e2e.yaml): Kubernaut's AIAnalysis E2E at its HEAD (d5a4a870).

Pure tests of the scripts its run steps call (scripts/kubernaut: Kubernaut's workflow ids, mock-llm's
scenarios, the certificates' names, the migrations ConfigMap) and of the stack's graph, which must
follow the harness's order (test/infrastructure/aianalysis_e2e.go CreateAIAnalysisClusterHybrid).

Then a rehearsal on the real test environment, with no Kubernaut checkout: a Kubernaut-shaped source
folder made here holds only what the stack takes from the checkout (minimal CRDs of the same names,
the Data Storage RBAC, goose migrations, workflow fixtures, and stand-in Containerfiles FROM the
local busybox that serve the probes), the stand-in images are built and saved as CI artifacts are
(`IMAGE_TAG=... invoke build --save-to`), and `e2e.setup --images-from` must complete on a real kind
cluster with a real kubelet: the real API server takes every object, the pods run, the run steps
make the certificates, the migrations ConfigMap and the seeded catalog, the order holds, and
`deploy.aianalysis` after a change redeploys aianalysis alone.
"""

import ast
import base64
import importlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, invoke, podman_cmd

from tasks.libs import imagerefs
from tasks.libs.build import gobuilds
from tasks.libs.stack.model import load_stack

SCRIPTS = ROOT / "scripts" / "kubernaut"
STACK_FILE = ROOT / "e2e.yaml"
CLUSTER = "aianalysis-e2e"
NAMESPACE = "kubernaut-system"


def _script(name):
    """A module of scripts/kubernaut (they import each other by plain name, as python3 runs them)."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return importlib.import_module(name)


workflowid = _script("workflowid")
seed = _script("seed")
certs = _script("certs")
migrations = _script("migrations")
kube = _script("kube")

# The harness's order: what each service waits for (aianalysis_e2e.go: TLS and the signing
# certificate, then PostgreSQL, Redis and migrations, then Data Storage; seeding; then mock-llm,
# the Agent and the controller together; the enrichment fixtures once all are ready).
HARNESS_GRAPH = {
    "postgresql": set(),
    "redis": set(),
    "certs": set(),
    "migrations": set(),
    "db-migrate": {"postgresql", "migrations"},
    "datastorage": {"postgresql", "redis", "db-migrate", "certs"},
    "seed": {"datastorage"},
    "mock-llm": {"seed"},
    "kubernautagent": {"seed", "certs"},
    "aianalysis": {"seed", "certs"},
    "enrichment-fixtures": {"mock-llm", "kubernautagent", "aianalysis"},
}

# Kubernaut's CRDs (group kubernaut.ai, v1alpha1, namespaced) by plural: only their names are
# needed here, the rehearsal's CRDs accept any content.
CRD_KINDS = {
    "actiontypes": "ActionType",
    "agentsessions": "AgentSession",
    "aianalyses": "AIAnalysis",
    "effectivenessassessments": "EffectivenessAssessment",
    "investigationsessions": "InvestigationSession",
    "notificationrequests": "NotificationRequest",
    "remediationapprovalrequests": "RemediationApprovalRequest",
    "remediationrequests": "RemediationRequest",
    "remediationworkflows": "RemediationWorkflow",
    "signalprocessings": "SignalProcessing",
    "workflowexecutions": "WorkflowExecution",
}


def raw_stack() -> dict:
    return yaml.safe_load(STACK_FILE.read_text())


def closure(name: str) -> set:
    """The service and everything it depends on, as HARNESS_GRAPH says."""
    found, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(HARNESS_GRAPH[current])
    return found


def prebuilt_images() -> set:
    """The images the node pulls: the prebuilt services' and the enrichment fixtures'."""
    fixtures = yaml.safe_load_all((ROOT / "manifests/aianalysis/enrichment-fixtures.yaml").read_text())
    found = {c["image"] for doc in fixtures for c in pod_containers(doc)}
    return found | {spec["image"] for spec in raw_stack()["services"].values() if "image" in spec}


def pod_containers(doc: dict) -> list:
    spec = doc["spec"].get("template", {}).get("spec", doc["spec"]) if doc.get("spec") else {}
    return spec.get("containers", [])


# ------------------------------------------------------------------------------------------------
# Kubernaut's workflow ids (workflowid.py): Go's encoding/json of the RemediationWorkflow struct


def sample_workflow(**spec_changes) -> dict:
    spec = {
        "version": "1.0.0",
        "description": {"what": "Restart <the> pod & wait", "whenToUse": "always"},
        "actionType": "RestartPod",
        "labels": {
            "severity": ["critical"],
            "environment": ["production"],
            "component": ["v1/Pod"],
            "priority": "P1",
        },
        "execution": {"engine": "job", "bundle": "quay.io/example/restart:v1"},
        "parameters": [{"name": "NAMESPACE", "type": "string", "required": True, "description": "Target"}],
    }
    spec.update(spec_changes)
    return {
        "apiVersion": "kubernaut.ai/v1alpha1",
        "kind": "RemediationWorkflow",
        "metadata": {"name": "restart-pod-v1", "namespace": "ns", "uid": "1234", "resourceVersion": "7"},
        "spec": spec,
        "status": {"workflowId": "old"},
    }


def test_clean_content_follows_the_go_struct_not_the_input_order():
    workflow = sample_workflow()
    shuffled = {**workflow, "spec": dict(reversed(list(workflow["spec"].items())))}
    content = workflowid.clean_content(shuffled)
    assert content == workflowid.clean_content(workflow)
    keys = list(json.loads(content)["spec"])
    assert keys == ["version", "description", "actionType", "labels", "execution", "parameters"]
    # Runtime metadata and status never count: only apiVersion, kind, metadata.name and spec.
    assert list(json.loads(content)) == ["apiVersion", "kind", "metadata", "spec"]
    assert json.loads(content)["metadata"] == {"name": "restart-pod-v1"}


def test_clean_content_writes_what_go_writes():
    content = workflowid.clean_content(sample_workflow())
    # Go's HTML escaping inside strings, compact separators, omitempty fields left out.
    assert '"what":"Restart \\u003cthe\\u003e pod \\u0026 wait"' in content
    assert '"whenNotToUse"' not in content and '"cluster"' not in content
    assert '"required":true' in content and ", " not in content


def test_omitempty_pointers_are_written_when_zero():
    parameter = {
        "name": "N",
        "type": "integer",
        "required": False,
        "description": "",
        "minimum": 0,
        "maximum": 300.0,
        "default": False,
        "enum": [],
    }
    content = workflowid.clean_content(sample_workflow(parameters=[parameter]))
    written = json.loads(content)["spec"]["parameters"][0]
    # *float64 and *JSON are omitted only when absent; an empty []string is omitted.
    assert written == {
        "name": "N",
        "type": "integer",
        "required": False,
        "description": "",
        "minimum": 0,
        "maximum": 300,
        "default": False,
    }
    assert '"maximum":300,' in content  # a float64 of 300 is written as Go writes it


def test_a_nil_slice_is_null_and_an_empty_pointer_struct_is_kept():
    workflow = sample_workflow(dependencies={})
    del workflow["spec"]["parameters"]
    spec = json.loads(workflowid.clean_content(workflow))["spec"]
    assert spec["parameters"] is None  # no omitempty: Go writes null
    assert spec["dependencies"] == {}  # a non-nil pointer to an empty struct


@pytest.mark.parametrize(
    "value, text",
    [
        (0, "0"),
        (300, "300"),
        (0.5, "0.5"),
        (1e-7, "1e-7"),
        (1.234e-05, "0.00001234"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (-2.5, "-2.5"),
    ],
)
def test_go_float(value, text):
    assert workflowid.go_float(value) == text


def test_raw_json_values_are_compacted_with_sorted_keys():
    assert workflowid.go_raw_json({"b": [1, "x&y"], "a": None}) == '{"a":null,"b":[1,"x\\u0026y"]}'


def test_workflow_id_is_a_uuid5_of_the_content_hash():
    digest = workflowid.content_hash(sample_workflow())
    assert len(digest) == 64
    ident = uuid.UUID(workflowid.workflow_id(digest))
    assert ident.version == 5
    assert ident == uuid.uuid5(uuid.UUID("6ba7b810-9dad-51d0-80b7-00c04fd430c8"), digest)
    changed = sample_workflow(version="1.0.1")
    assert workflowid.content_hash(changed) != digest


# Kubernaut's own Go, from a checkout: the ids above are checked against what it computes. No
# checkout is part of the test environment, so this runs where one is given, and is skipped elsewhere.
KUBERNAUT_CHECKOUT = os.environ.get("KUBERNAUT_CHECKOUT", "")
WORKFLOW_ID_MAIN = """\
package main

import (
\t"fmt"
\t"os"

\trwv1alpha1 "github.com/jordigilh/kubernaut/api/remediationworkflow/v1alpha1"
\t"github.com/jordigilh/kubernaut/pkg/shared/contenthash"
\t"sigs.k8s.io/yaml"
)

func main() {
\tfor _, path := range os.Args[1:] {
\t\tdata, err := os.ReadFile(path)
\t\tif err != nil {
\t\t\tpanic(err)
\t\t}
\t\tvar rw rwv1alpha1.RemediationWorkflow
\t\tif err := yaml.Unmarshal(data, &rw); err != nil {
\t\t\tpanic(err)
\t\t}
\t\tclean, err := contenthash.MarshalCleanCRDContent(&rw)
\t\tif err != nil {
\t\t\tpanic(err)
\t\t}
\t\tfmt.Println(path, contenthash.DeterministicUUID(contenthash.ComputeContentHash(string(clean))))
\t}
}
"""


@pytest.mark.skipif(not KUBERNAUT_CHECKOUT, reason="KUBERNAUT_CHECKOUT names no Kubernaut checkout")
def test_workflow_ids_are_the_ones_kubernauts_own_go_computes(tmp_path):
    """Every workflow fixture of the checkout, through its pkg/shared/contenthash compiled from the
    checkout itself. The program is laid over the checkout with `go build -overlay` and the module is
    read-only, so not one file of the checkout is written."""
    checkout = Path(KUBERNAUT_CHECKOUT)
    main = tmp_path / "main.go"
    main.write_text(WORKFLOW_ID_MAIN)
    overlay = tmp_path / "overlay.json"
    package = checkout / f"zz_kindling_workflowid_{uuid.uuid4().hex[:6]}"
    overlay.write_text(json.dumps({"Replace": {str(package / "main.go"): str(main)}}))
    program = tmp_path / "workflowid"
    subprocess.run(
        ["go", "build", "-mod=readonly", "-overlay", str(overlay), "-o", str(program), f"./{package.name}"],
        cwd=checkout,
        check=True,
        capture_output=True,
        timeout=900,
    )
    fixtures = sorted(checkout.glob("test/fixtures/workflows/*/workflow-schema.yaml"))
    assert fixtures, f"{checkout} holds no test/fixtures/workflows/*/workflow-schema.yaml"
    out = subprocess.run([str(program), *map(str, fixtures)], check=True, capture_output=True, text=True)
    from_go = dict(line.split() for line in out.stdout.splitlines())
    ours = {
        str(path): workflowid.workflow_id(workflowid.content_hash(yaml.safe_load(path.read_text())))
        for path in fixtures
    }
    assert ours == from_go
    assert not package.exists()


@pytest.mark.skipif(not KUBERNAUT_CHECKOUT, reason="KUBERNAUT_CHECKOUT names no Kubernaut checkout")
def test_stack_check_rejects_a_workflow_that_breaks_kubernauts_own_crd(tmp_path):
    """stack.check validates the seeded RemediationWorkflows against the checkout's own CRD
    (crdschema.py): a copy of the checkout with one fixture broken (an unknown field, a string
    where the CRD wants an object) is refused, naming the file and both fields; the checkout as it
    is passes."""
    checkout = Path(KUBERNAUT_CHECKOUT)
    env = {"E2E_STACK": str(STACK_FILE), "KINDLING_NODE_IMAGE": "kindest/node:v1.36.1"}
    assert invoke(["stack.check"], {**env, "E2E_SOURCE": str(checkout)}).returncode == 0
    copy = tmp_path / "kubernaut"
    subprocess.run(["cp", "-a", f"{checkout}/.", str(copy)], check=True, timeout=300)
    fixture = copy / "test/fixtures/workflows/generic-restart/workflow-schema.yaml"
    workflow = yaml.safe_load(fixture.read_text())
    workflow["spec"]["description"] = "restarts a pod"  # the CRD wants {what, whenToUse, ...}
    workflow["spec"]["restartPolicy"] = "Always"  # no such field in the CRD
    fixture.write_text(yaml.safe_dump(workflow, sort_keys=False))
    result = invoke(["stack.check"], {**env, "E2E_SOURCE": str(copy)})
    assert result.returncode == 1, result.stdout + result.stderr
    problems = result.stderr
    assert "generic-restart/workflow-schema.yaml" in problems
    assert "spec.description: 'restarts a pod' is not of type 'object'" in problems, problems
    assert "spec: unknown field 'restartPolicy'" in problems, problems


# ------------------------------------------------------------------------------------------------
# mock-llm's scenarios (seed.py)


def test_scenarios_key_every_workflow_per_environment_production_last():
    ids = {"b-v1": "id-b", "a-v1": "id-a"}
    keys = [k for k, _ in seed.scenario_keys(ids, ["staging", "production", "test"])]
    assert keys == [
        "a-v1:staging",
        "a-v1:test",
        "b-v1:staging",
        "b-v1:test",
        "a-v1:production",
        "b-v1:production",
    ]


def test_scenarios_template_is_filled_completely():
    template = (SCRIPTS / "mock-llm-scenarios.yaml").read_text()
    ids = {"oomkill-increase-memory-v1": "id-oom", "generic-restart-v1": "id-generic"}
    rendered = seed.render_scenarios(template, "ns-x", ids, ["staging", "production"])
    assert "${" not in rendered
    loaded = yaml.safe_load(rendered)
    assert loaded["scenarios"]["oomkill-increase-memory-v1:production"] == {"workflow_id": "id-oom"}
    assert loaded["scenarios"]["generic-restart-v1:staging"] == {"workflow_id": "id-generic"}
    assert loaded["scenarios"]["injection_configmap_read"]["tool_call"]["arguments"]["namespace"] == "ns-x"
    selects = [
        s for s in loaded["keyword_scenarios"] if s["tool_call"]["name"] == "kubernaut_select_workflow"
    ]
    assert selects and all(s["tool_call"]["arguments"]["workflow_id"] == "id-oom" for s in selects)
    # resolveWorkflowUUID's fallback: a workflow that was not seeded keeps its name.
    assert "oomkill-increase-memory-v1" in seed.render_scenarios(template, "ns", {}, ["test"])


# ------------------------------------------------------------------------------------------------
# certificates and migrations (certs.py, migrations.py)


def test_leaf_certificates_name_the_service_as_the_harness_does():
    text = certs.leaf_extensions("data-storage-service", "kubernaut-system")
    sans = text.split("subjectAltName = ")[1].strip().split(",")
    assert sans == [
        "DNS:localhost",
        "DNS:data-storage-service",
        "DNS:data-storage-service.kubernaut-system",
        "DNS:data-storage-service.kubernaut-system.svc",
        "DNS:data-storage-service.kubernaut-system.svc.cluster.local",
        "IP:127.0.0.1",
    ]
    assert "extendedKeyUsage = serverAuth" in text


def test_certs_refuses_a_service_without_its_secret():
    assert certs.parse_services(["a=b", "c=d"]) == {"a": "b", "c": "d"}
    with pytest.raises(kube.StepError, match="SERVICE=SECRET"):
        certs.parse_services(["data-storage-service"])


def test_migrations_are_the_folders_own_sql_files(tmp_path):
    (tmp_path / "002_b.sql").write_text("-- +goose Up\nSELECT 2;\n")
    (tmp_path / "001_a.sql").write_text("-- +goose Up\nSELECT 1;\n")
    (tmp_path / "README.md").write_text("not a migration")
    (tmp_path / "archived").mkdir()
    (tmp_path / "archived" / "000_old.sql").write_text("SELECT 0;")
    data = migrations.migrations(tmp_path)
    assert list(data) == ["001_a.sql", "002_b.sql"]
    assert data["001_a.sql"].endswith("SELECT 1;\n")


def test_migrations_refuse_what_a_configmap_cannot_hold(tmp_path):
    with pytest.raises(kube.StepError, match="no .sql file"):
        migrations.migrations(tmp_path)
    (tmp_path / "001 bad name.sql").write_text("x")
    with pytest.raises(kube.StepError, match="cannot be a ConfigMap key"):
        migrations.migrations(tmp_path)
    (tmp_path / "001 bad name.sql").unlink()
    (tmp_path / "001_big.sql").write_text("x" * (migrations.MAX_BYTES + 1))
    with pytest.raises(kube.StepError, match="exceed"):
        migrations.migrations(tmp_path)


# ------------------------------------------------------------------------------------------------
# the stack file


def test_the_graph_is_the_harness_order():
    services = raw_stack()["services"]
    assert {name: set(spec.get("depends_on", [])) for name, spec in services.items()} == HARNESS_GRAPH


def test_images_are_named_as_kubernaut_ci_artifacts(tmp_path):
    source = make_source(tmp_path / "kubernaut", "localhost/unused:base", "t")
    (tmp_path / "go" / "pkg" / "mod").mkdir(parents=True)
    stack = load_stack(STACK_FILE, env={**os.environ, "E2E_SOURCE": str(source), "HOME": str(tmp_path)})
    built = sorted(name for name, service in stack.services.items() if service.built)
    assert built == ["aianalysis", "datastorage", "db-migrate", "kubernautagent", "mock-llm"]
    for name in built:
        assert imagerefs.repository(stack.project, name, template=stack.image_name) == f"localhost/{name}"
    # GOARCH from the host, as the harness passes --build-arg GOARCH=<host>.
    for name in ("datastorage", "kubernautagent", "aianalysis", "mock-llm"):
        goarch = stack.services[name].build.args["GOARCH"]
        assert goarch in ("amd64", "arm64", "386", "arm", "ppc64le", "s390x", "riscv64")
        assert [m.target for m in stack.services[name].build.mounts] == ["/go/pkg/mod"]
    assert stack.services["datastorage"].build.mounts[0].source == tmp_path / "go" / "pkg" / "mod"


def test_coverage_mode_covers_what_the_aianalysis_harness_covers():
    """aianalysis_e2e.go: Data Storage and AIAnalysis built with -cover, Data Storage run as root
    (coverageSecurityContextYAMLFixture), the Agent given GOCOVERDIR and the mount although its
    image is built without -cover (DeployKubernautAgentOnly); mock-llm untouched."""
    services = load_stack(STACK_FILE, env={"HOME": "/nonexistent"}, check_files=False).services
    instrumented = sorted(n for n, s in services.items() if s.built and s.build.coverage_args)
    assert instrumented == ["aianalysis", "datastorage"]
    assert all(services[n].build.coverage_args == {"GOFLAGS": "-cover"} for n in instrumented)
    mounted = sorted(n for n, s in services.items() if s.coverage.mount)
    assert mounted == ["aianalysis", "datastorage", "kubernautagent"]
    as_root = {
        n: s.coverage.pod_security_context for n, s in services.items() if s.coverage.pod_security_context
    }
    assert as_root == {"datastorage": {"runAsUser": 0, "runAsGroup": 0}}


def test_the_offline_profile_loads_prebuilt_images_and_builds_mock_llm_without_go_mod_download():
    """E2E_PROFILE=offline: what the node would pull is loaded from the host, and mock-llm's own
    Containerfile compiles the package Kubernaut's go.Dockerfile compiles, with the same bases (so
    base_images maps them alike) and no `go mod download` (which fetches every module go.mod
    requires)."""
    env = {"HOME": "/nonexistent"}
    plain = load_stack(STACK_FILE, env=env, check_files=False).services
    offline = load_stack(STACK_FILE, env=env, check_files=False, profile_names=("offline",)).services
    assert sorted(n for n, s in offline.items() if s.load) == ["enrichment-fixtures", "postgresql", "redis"]
    assert not any(s.load for s in plain.values())
    changed = {n for n in plain if plain[n] != offline[n]}
    assert changed == {"enrichment-fixtures", "postgresql", "redis", "mock-llm"}
    ours = offline["mock-llm"].build
    assert ours.containerfile == ROOT / "dockerfiles/kubernaut/mock-llm.Containerfile"
    assert ours.caches == plain["mock-llm"].build.caches and ours.args == plain["mock-llm"].build.args
    text = ours.containerfile.read_text()
    builds = gobuilds.go_builds(text, dict(ours.args), {"TARGETARCH": "amd64"})
    assert [b.packages for b in builds] == [("./test/services/mock-llm/cmd/mock-llm",)]
    assert "go mod download" not in "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    )
    froms = [line.split()[1] for line in text.splitlines() if line.startswith("ARG ") and "_IMAGE=" in line]
    assert [f.split("=", 1)[1] for f in froms] == [
        "registry.access.redhat.com/ubi10/go-toolset:1.26",
        "registry.access.redhat.com/ubi10/ubi-minimal:latest",
    ]


def test_every_file_of_the_stack_is_used():
    """Each manifest under manifests/aianalysis/ and each script is named by e2e.yaml (the suite
    by its `test:`)."""
    named = set()
    for spec in raw_stack()["services"].values():
        named |= {m for m in spec.get("manifests", []) if not m.startswith("${")}
        named |= {str(a) for a in (spec.get("run") or {}).get("command", [])}
    named |= {str(a).removeprefix("${STACK_DIR}/") for a in raw_stack()["test"]["command"]}
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "manifests/aianalysis").glob("*.yaml")}
    scripts = {p.relative_to(ROOT).as_posix() for p in SCRIPTS.glob("*") if p.suffix in (".py", ".yaml")}
    imported = {"scripts/kubernaut/kube.py", "scripts/kubernaut/workflowid.py"}  # by the scripts
    assert shipped | scripts - imported <= named


def test_the_scripts_need_only_the_standard_library():
    local = {p.stem for p in SCRIPTS.glob("*.py")}
    for path in SCRIPTS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module] if isinstance(node, ast.ImportFrom) else [])
            )
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top in local, f"{path.name} imports {name}"


def test_the_kind_config_pins_the_checkouts_node_image():
    (config,) = yaml.safe_load_all((ROOT / "manifests/kind/aianalysis.yaml").read_text())
    (node,) = config["nodes"]
    assert node["image"].startswith("kindest/node:v1.36.1@sha256:")
    assert "extraMounts" not in node  # see the file's header: kindling mounts /coverdata itself
    node_ports = {
        p["nodePort"]
        for path in (ROOT / "manifests/aianalysis").glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["kind"] == "Service"
        for p in doc["spec"]["ports"]
        if "nodePort" in p
    }
    assert {m["containerPort"] for m in node["extraPortMappings"]} <= node_ports


# ------------------------------------------------------------------------------------------------
# the rehearsal: a Kubernaut-shaped source folder

ANY_OBJECT = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def crd(plural: str) -> dict:
    kind = CRD_KINDS[plural]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kubernaut.ai"},
        "spec": {
            "group": "kubernaut.ai",
            "scope": "Namespaced",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": ANY_OBJECT},
                }
            ],
        },
    }


def data_storage_rbac() -> list:
    """What deploy/data-storage/service-rbac.yaml defines: a ServiceAccount, its ClusterRole, the binding."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "data-storage-sa", "namespace": NAMESPACE},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "data-storage-auth-middleware"},
            "rules": [
                {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "data-storage-auth-middleware"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "data-storage-auth-middleware",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "data-storage-sa", "namespace": NAMESPACE}],
        },
    ]


def fixture_workflow(folder: str) -> dict:
    """A RemediationWorkflow named as the harness's fixture is (<folder>-v1), with the values whose
    JSON is easy to get wrong: escaped characters, a zero minimum, a raw default."""
    return {
        "apiVersion": "kubernaut.ai/v1alpha1",
        "kind": "RemediationWorkflow",
        "metadata": {"name": f"{folder}-v1"},
        "spec": {
            "version": "1.0.0",
            "description": {"what": f"Stand-in <{folder}> & more", "whenToUse": "in tests"},
            "actionType": "RestartPod",
            "labels": {
                "severity": ["critical"],
                "environment": ["production", "staging", "test"],
                "component": ["apps/v1/Deployment"],
                "priority": "P1",
            },
            "execution": {"engine": "job", "bundle": "quay.io/example/job:v1"},
            "parameters": [
                {
                    "name": "GRACE",
                    "type": "integer",
                    "required": False,
                    "description": "seconds",
                    "minimum": 0,
                    "maximum": 300,
                    "default": 30,
                }
            ],
        },
    }


# The commands Kubernaut's images and manifests run besides the service itself (probes, the
# migration Job): stand-ins that answer as a healthy system would, since nothing here speaks
# PostgreSQL or Redis.
STANDIN_TOOLS = ("pg_isready", "redis-cli", "goose", "psql")


def standin_containerfile(base_image: str, label: str) -> str:
    """A stand-in for a Kubernaut image, run by the real kubelet: busybox serving the probe paths
    (/health, /healthz, /readyz) on the ports the manifests probe and publish (8080, 8081, and the
    API and metrics ports 8443 and 9090, which the Kind config maps to the host), whatever
    arguments the manifest gives, and the tools the probes and the migration Job call. It runs
    as a non-root user, as the manifests' runAsNonRoot asks."""
    tools = " ".join(STANDIN_TOOLS)
    script = (
        "/bin/busybox --install -s /bin && mkdir -p /www /usr/local/bin && "
        "for p in health healthz readyz; do echo ok > /www/$p; done && "
        f"for t in {tools}; do "
        "printf '#!/bin/sh\\necho stand-in $(basename $0) answers\\n' "
        "> /usr/local/bin/$t; done && "
        "printf '#!/bin/sh\\nfor p in 8080 8081 8443 9090; do httpd -p $p -h /www; done\\n"
        "exec sleep 2147483647\\n' "
        "> /usr/local/bin/standin && chmod 0755 /usr/local/bin/*"
    )
    return (
        f"FROM {base_image}\n"
        f"LABEL io.kindling.test.standin={label}\n"
        f'RUN ["/bin/busybox", "sh", "-c", "{script}"]\n'
        "ENV PATH=/usr/local/bin:/bin\n"
        "USER 65532:65532\n"
        'ENTRYPOINT ["/usr/local/bin/standin"]\n'
    )


def source_files(stack: dict) -> dict:
    """{path under the source: what it is} for every file the stack takes from the checkout."""
    wanted = {}
    for name, spec in stack["services"].items():
        for manifest in spec.get("manifests", []):
            if manifest.startswith("${SOURCE_DIR}/"):
                wanted[manifest.removeprefix("${SOURCE_DIR}/")] = ("manifest", name)
        if "build" in spec:
            wanted[spec["build"]["containerfile"]] = ("containerfile", name)
        for arg in (spec.get("run") or {}).get("command", []):
            if str(arg).startswith("${SOURCE_DIR}/"):
                wanted[arg.removeprefix("${SOURCE_DIR}/")] = ("folder", name)
    return wanted


def make_source(folder: Path, base_image: str, marker: str) -> Path:
    for relative, (what, service) in source_files(raw_stack()).items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if what == "containerfile":
            path.write_text(standin_containerfile(base_image, f"{marker}-{service}"))
        elif what == "folder":  # the migrations
            path.mkdir(exist_ok=True)
            (path / "001_schema.sql").write_text(
                "-- +goose Up\nCREATE TABLE audit_events (id bigint);\n"
                "-- +goose Down\nDROP TABLE audit_events;\n"
            )
            (path / "002_index.sql").write_text("-- +goose Up\nCREATE INDEX i ON audit_events (id);\n")
        elif relative.startswith("config/crd/bases/kubernaut.ai_"):
            plural = relative.removeprefix("config/crd/bases/kubernaut.ai_").removesuffix(".yaml")
            path.write_text(yaml.safe_dump(crd(plural)))
        elif relative.startswith("test/fixtures/workflows/"):
            path.write_text(yaml.safe_dump(fixture_workflow(path.parent.name)))
        elif relative == "deploy/data-storage/service-rbac.yaml":
            path.write_text(yaml.safe_dump_all(data_storage_rbac()))
        else:
            raise AssertionError(f"the stack takes {relative} from the checkout: say here what it is")
    return folder


# ------------------------------------------------------------------------------------------------
# the rehearsal on the real test environment


class Rehearsal:
    def __init__(self, tmp_path: Path, testenv, base_image: str):
        self.testenv, self.base_image = testenv, base_image
        self.marker = uuid.uuid4().hex[:8]
        self.tag = f"kt-{self.marker}"
        self.source = make_source(tmp_path / "kubernaut", base_image, self.marker)
        self.home = tmp_path / "state"
        self.images = tmp_path / "images"
        user_home = tmp_path / "user"
        (user_home / "go" / "pkg" / "mod").mkdir(parents=True)  # the module cache the builds mount
        self.kubeconfig = self.home / "clusters" / CLUSTER / "kubeconfig"
        self.node = f"{CLUSTER}-control-plane"
        self.env = {
            "E2E_STACK": str(STACK_FILE),
            "E2E_SOURCE": str(self.source),
            "KINDLING_HOME": str(self.home),
            "HOME": str(user_home),
            "KINDLING_LOCK_DIR": str(tmp_path / "locks"),
            "KINDLING_MIN_FREE_DISK": "50MiB",
        }
        self.made_refs = set()

    def invoke(self, *args, timeout=900, **env):
        result = invoke(list(args), {**self.env, **env}, timeout=timeout)
        output = f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        assert result.returncode == 0, f"invoke {' '.join(args)}:\n{output}"
        return result

    def kubectl_json(self, *args):
        return self.testenv.kubectl_json(self.kubeconfig, *args)

    def last_run(self) -> dict:
        runs = sorted((self.home / "runs").glob("*/run.json"), key=lambda p: p.stat().st_mtime)
        return json.loads(runs[-1].read_text())

    def preload(self, ref: str) -> None:
        """Put an image on every node under a prebuilt image's reference, as if the node had pulled
        it (no registry is reachable here): the node's own pause for a pause image, else the
        stand-in, kind-loaded under a name of our own, then tagged with containerd's ctr."""
        nodes = [n for n in self.testenv.kind("get", "nodes", "--name", CLUSTER).stdout.split() if n]
        if ref.startswith("registry.k8s.io/pause:"):
            for node in nodes:
                podman_cmd(
                    "exec",
                    node,
                    "ctr",
                    "--namespace",
                    "k8s.io",
                    "images",
                    "tag",
                    "--force",
                    "registry.k8s.io/pause:3.10",
                    ref,
                )
            return
        local = f"localhost/kt-standin-{self.marker}/prebuilt:{uuid.uuid4().hex[:6]}"
        context = self.images.parent / "prebuilt"
        context.mkdir(exist_ok=True)
        (context / "Containerfile").write_text(
            standin_containerfile(self.base_image, f"{self.marker}-prebuilt")
        )
        podman_cmd("build", "-q", "-t", local, str(context))
        archive = self.images.parent / "prebuilt.tar"
        try:
            podman_cmd("save", "-o", str(archive), local)
            self.testenv.kind("load", "image-archive", str(archive), "--name", CLUSTER)
            for node in nodes:
                podman_cmd(
                    "exec", node, "ctr", "--namespace", "k8s.io", "images", "tag", "--force", local, ref
                )
        finally:
            archive.unlink(missing_ok=True)
            podman_cmd("rmi", local, check=False)

    def cleanup(self) -> None:
        invoke(["e2e.teardown"], self.env, timeout=600)
        self.testenv.delete_cluster(CLUSTER, self.home / "leftover-kubeconfig")
        refs = podman_cmd("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        ours = [r for r in refs if r.endswith(f":{self.tag}") or r in self.made_refs]
        if ours:
            podman_cmd("rmi", *ours, check=False)


def containers_images(deployments: list) -> dict:
    """(namespace, name) -> the image of each Deployment's first container."""
    return {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d["spec"]["template"]["spec"]["containers"][0][
            "image"
        ]
        for d in deployments
    }


def secret_pem(r: Rehearsal, name: str, key: str) -> str:
    secret = r.kubectl_json("get", "secret", name, "-n", NAMESPACE)
    return base64.b64decode(secret["data"][key]).decode()


def openssl(*args, stdin=None) -> str:
    return subprocess.run(
        ["openssl", *args], input=stdin, capture_output=True, text=True, check=True, timeout=60
    ).stdout


def assert_harness_order(run: dict) -> None:
    """Each service started once everything it depends on was done."""
    deploys = {s["subject"]: s for s in run["steps"] if s["id"].startswith("deploy:")}
    for name, needs in HARNESS_GRAPH.items():
        for dep in needs:
            assert deploys[name]["start"] >= deploys[dep]["end"], f"{name} started before {dep} was done"


def assert_rolled_out(r: Rehearsal) -> list:
    deployments = r.kubectl_json("get", "deployments", "-A")["items"]
    images_of = containers_images(deployments)
    ready = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d["status"].get("readyReplicas")
        for d in deployments
    }
    built = {
        "datastorage": "datastorage",
        "mock-llm": "mock-llm",
        "mock-llm-shadow": "mock-llm",
        "kubernaut-agent": "kubernautagent",
        "aianalysis-controller": "aianalysis",
    }
    for name, image in built.items():  # the CI artifacts' references
        assert images_of[(NAMESPACE, name)] == f"localhost/{image}:{r.tag}"
    for name in [*built, "postgresql", "redis"]:
        assert ready[(NAMESPACE, name)] == 1, name
    # The enrichment fixtures were applied (the harness does not wait for them either).
    assert {("production", "api-server"), ("staging", "worker")} <= set(ready)
    pods = {
        (p["metadata"]["namespace"], p["metadata"]["name"])
        for p in r.kubectl_json("get", "pods", "-A")["items"]
    }
    assert {("production", "failing-pod"), ("default", "test-pod")} <= pods
    assert r.kubectl_json("get", "job", "db-migrate", "-n", NAMESPACE)["status"].get("succeeded") == 1
    crds = {c["metadata"]["name"]: c for c in r.kubectl_json("get", "crd")["items"]}
    for plural in CRD_KINDS:
        conditions = {c["type"]: c["status"] for c in crds[f"{plural}.kubernaut.ai"]["status"]["conditions"]}
        assert conditions["Established"] == "True", plural
    return deployments


def assert_certificates(r: Rehearsal, folder: Path) -> None:
    """The leaves verify against the CA that the ConfigMap and the file beside the kubeconfig
    hold; the signing certificate is RSA and self-signed."""
    ca = r.kubectl_json("get", "configmap", "inter-service-ca", "-n", NAMESPACE)["data"]["ca.crt"]
    assert (r.kubeconfig.parent / "inter-service-ca.pem").read_text() == ca
    (folder / "ca.pem").write_text(ca)
    for secret, service in (
        ("datastorage-tls", "data-storage-service"),
        ("kubernautagent-tls", "kubernaut-agent"),
    ):
        leaf = folder / f"{secret}.pem"
        leaf.write_text(secret_pem(r, secret, "tls.crt"))
        openssl("verify", "-CAfile", str(folder / "ca.pem"), str(leaf))
        text = openssl("x509", "-noout", "-text", "-in", str(leaf))
        assert f"DNS:{service}.{NAMESPACE}.svc.cluster.local" in text and "IP Address:127.0.0.1" in text
        assert "BEGIN EC PRIVATE KEY" in secret_pem(r, secret, "tls.key")
    signing = openssl("x509", "-noout", "-text", stdin=secret_pem(r, "datastorage-signing", "tls.crt"))
    assert "rsaEncryption" in signing and "CN = datastorage-signing" in signing


def assert_seeded(r: Rehearsal) -> None:
    """The catalog is active, each workflow stamped with its content-derived id, and mock-llm's
    scenarios name those ids; the migrations ConfigMap holds the source's goose files."""
    sql = r.kubectl_json("get", "configmap", "datastorage-migrations", "-n", NAMESPACE)["data"]
    assert sorted(sql) == ["001_schema.sql", "002_index.sql"]
    action_types = r.kubectl_json("get", "actiontypes.kubernaut.ai", "-n", NAMESPACE)["items"]
    assert len(action_types) == 11
    assert all(a["status"]["catalogStatus"] == "Active" and a["status"]["registered"] for a in action_types)
    workflows = r.kubectl_json("get", "remediationworkflows.kubernaut.ai", "-n", NAMESPACE)["items"]
    assert len(workflows) == 6
    configmap = r.kubectl_json("get", "configmap", "mock-llm-scenarios", "-n", NAMESPACE)
    scenarios = yaml.safe_load(configmap["data"]["scenarios.yaml"])["scenarios"]
    for workflow in workflows:
        name = workflow["metadata"]["name"]
        # The id of the content this test wrote: what the API server kept must hash the same.
        expected = workflowid.workflow_id(workflowid.content_hash(fixture_workflow(name.removesuffix("-v1"))))
        assert workflow["status"]["workflowId"] == expected
        assert workflow["status"]["catalogStatus"] == "Active"
        for environment in ("staging", "production", "test"):
            assert scenarios[f"{name}:{environment}"] == {"workflow_id": expected}


def test_rehearsal_setup_and_partial_redeploy(testenv, base_image, tmp_path):
    if CLUSTER in testenv.clusters():
        pytest.fail(f"a kind cluster named {CLUSTER} exists already: the default stack's cluster is taken")
    r = Rehearsal(tmp_path, testenv, base_image)
    built = {"aianalysis", "datastorage", "db-migrate", "kubernautagent", "mock-llm"}
    try:
        assert "no problems" in r.invoke("stack.check", timeout=300).stdout

        # CI: build once, save the archives; the E2E job starts from the archives alone.
        r.invoke("build", "--parallel", "--save-to", str(r.images), IMAGE_TAG=r.tag)
        assert {p.stem for p in r.images.glob("*.tar")} == built
        podman_cmd("rmi", *[f"localhost/{name}:{r.tag}" for name in built])

        # The cluster first, for what this test environment lacks: the prebuilt images a node
        # would pull. PostgreSQL's claim is bound by the cluster's real local-path provisioner.
        r.invoke("cluster.create", timeout=600)
        for ref in prebuilt_images():
            r.preload(ref)

        r.invoke("e2e.setup", "--images-from", str(r.images), IMAGE_TAG=r.tag, timeout=1200)
        setup = r.last_run()
        assert setup["status"] == "ok"
        outcomes = {s["id"]: s["outcome"] for s in setup["steps"]}
        assert {outcomes[f"image:{name}"] for name in built} == {"present"}  # the archives' images, as is
        assert {outcomes[f"deploy:{name}"] for name in ("certs", "migrations", "seed")} == {"ran"}
        assert_harness_order(setup)
        # KINDLING_NODE_IMAGE replaced the kindest/node image the kind config pins.
        node_image = podman_cmd("inspect", r.node, "--format", "{{.ImageName}}").stdout.strip()
        assert node_image == testenv.node_image
        before = containers_images(assert_rolled_out(r))
        assert_certificates(r, tmp_path)
        assert_seeded(r)

        # The inner loop: a forced rebuild of the controller redeploys it alone; the pre= chain
        # finds every dependency's image by its inputs digest and each deploy up to date.
        known = set((r.home / "runs").iterdir())
        r.invoke("deploy.aianalysis", "--no-cache", timeout=900)
        steps = [
            s
            for run in sorted(set((r.home / "runs").iterdir()) - known)
            for s in json.loads((run / "run.json").read_text())["steps"]
        ]
        outcomes = {s["id"]: s["outcome"] for s in steps if s["id"] != "cluster"}
        assert outcomes.pop("image:aianalysis") == "built" and outcomes.pop("deploy:aianalysis") == "ready"
        assert outcomes.pop("load:aianalysis") in ("streamed", "loaded")
        assert {o for step, o in outcomes.items() if step.startswith("deploy:")} == {"up to date"}
        assert {o for step, o in outcomes.items() if step.startswith("image:")} == {"cached"}
        assert {step for step in outcomes if step.startswith("deploy:")} == {
            f"deploy:{name}" for name in HARNESS_GRAPH if name in closure("aianalysis") - {"aianalysis"}
        }
        after = containers_images(r.kubectl_json("get", "deployments", "-A")["items"])
        r.made_refs.add(after[(NAMESPACE, "aianalysis-controller")])
        assert {key for key in before if after[key] != before[key]} == {(NAMESPACE, "aianalysis-controller")}
    finally:
        r.cleanup()
    assert CLUSTER not in testenv.clusters()
