"""Helm charts and kustomizations as deploy sources: the stack schema (pure), rendering with the
real helm and kubectl of the test environment, doctor's checks, and setup, redeploy and teardown
on a real kind cluster."""

import json
import os
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import invoke

from tasks.libs import deploysources
from tasks.libs.checks import preflight
from tasks.libs.checks.checkresult import FAIL, OK
from tasks.libs.deploysources.helm import Helm
from tasks.libs.deploysources.kustomize import Kustomize
from tasks.libs.errors import KindlingError, StackError
from tasks.libs.procs.runner import Runner
from tasks.libs.stack.model import load_stack

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  labels: {release-namespace: {{ .Release.Namespace }}}
spec:
  replicas: {{ .Values.replicas }}
  selector: {matchLabels: {app: {{ .Release.Name }}}}
  template:
    metadata: {labels: {app: {{ .Release.Name }}}}
    spec:
      containers:
        - name: app
          image: {{ .Values.image }}
          ports: [{containerPort: 8080}]
          env:
            - {name: GREETING, value: {{ .Values.greeting | quote }}}
            - {name: FLAG_KIND, value: {{ kindOf .Values.flag | quote }}}
            - {name: LIST, value: {{ .Values.list | quote }}}
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: {{ .Release.Name }}}
spec:
  selector: {app: {{ .Release.Name }}}
  ports: [{port: 8080}]
"""
SECRET = """\
apiVersion: v1
kind: Secret
metadata: {name: {{ .Release.Name }}-auth}
stringData: {password: {{ .Values.auth.password | quote }}}
"""
TEST_HOOK = """\
apiVersion: v1
kind: Pod
metadata:
  name: {{ .Release.Name }}-smoke
  annotations: {"helm.sh/hook": test}
spec:
  containers: [{name: smoke, image: {{ .Values.image }}}]
"""
CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object}}
"""


def write_chart(folder: Path, image="api", crd=False) -> Path:
    """A tiny local chart: a Deployment, a Service and a Secret templated from values, and a test hook."""
    (folder / "templates").mkdir(parents=True)
    (folder / "Chart.yaml").write_text("apiVersion: v2\nname: tiny\nversion: 0.1.0\n")
    (folder / "values.yaml").write_text(
        yaml.safe_dump(
            {
                "replicas": 1,
                "image": image,
                "greeting": "hello",
                "flag": False,
                "list": "",
                "auth": {"password": ""},
            }
        )
    )
    templates = {"deployment": DEPLOYMENT, "service": SERVICE, "secret": SECRET, "test": TEST_HOOK}
    for name, text in templates.items():
        (folder / "templates" / f"{name}.yaml").write_text(text)
    if crd:
        (folder / "crds").mkdir()
        (folder / "crds" / "widget.yaml").write_text(CRD)
    return folder


def write_kustomization(folder: Path, image="web") -> Path:
    """A base (Deployment and Service) and an overlay that patches the Deployment; returns the overlay."""
    base, overlay = folder / "base", folder / "overlay"
    base.mkdir(parents=True)
    overlay.mkdir()
    (base / "kustomization.yaml").write_text("resources: [app.yaml]\n")
    (base / "app.yaml").write_text(
        yaml.safe_dump_all(
            [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "web"},
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {
                            "metadata": {"labels": {"app": "web"}},
                            "spec": {
                                "containers": [
                                    {"name": "web", "image": image, "ports": [{"containerPort": 8080}]}
                                ]
                            },
                        },
                    },
                },
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": "web"},
                    "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080}]},
                },
            ]
        )
    )
    (overlay / "kustomization.yaml").write_text(
        textwrap.dedent("""\
        resources: [../base]
        patches:
          - target: {kind: Deployment, name: web}
            patch: |
              - op: add
                path: /spec/template/metadata/labels/tier
                value: front
              - op: add
                path: /spec/template/spec/containers/0/env
                value: [{name: MODE, value: overlay}]
        """)
    )
    return overlay


# ---- the stack schema (pure) ------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    write_chart(tmp_path / "charts" / "api")
    (tmp_path / "values-dev.yaml").write_text("greeting: dev\n")
    write_kustomization(tmp_path / "kz")
    (tmp_path / "src").mkdir()
    return tmp_path


def load_service(tree: Path, service_text: str, env=None, check_files=True):
    path = tree / "stack.yaml"
    path.write_text(
        "name: demo\nsource: src\nservices:\n  api:\n    image: busybox:1\n"
        + textwrap.indent(textwrap.dedent(service_text), "    ")
    )
    return load_stack(path, env=env or {}, check_files=check_files).services["api"]


def test_helm_and_kustomize_resolve_like_manifests(tree):
    api = load_service(
        tree,
        """\
        helm:
          chart: charts/api
          values: [values-dev.yaml]
          set: {image.tag: "${TAG:-dev}", replicas: 2, enabled: true, ratio: 0.5, auth.password: s3cret-value}
        """,
        env={"TAG": "v7"},
    )
    helm = api.deploy_source
    assert helm.key == "helm" and helm.chart == tree / "charts" / "api"
    assert helm.release == "api"  # the service's name when none is given
    assert helm.values == (tree / "values-dev.yaml",)
    assert helm.set_values == {
        "image.tag": "v7",
        "replicas": 2,
        "enabled": True,
        "ratio": 0.5,
        "auth.password": "s3cret-value",
    }
    assert helm.secrets() == ["s3cret-value"]
    assert deploysources.origins(api) == (tree / "charts" / "api",)
    assert deploysources.files(api, "services.api") == [
        ("services.api.helm.chart", tree / "charts" / "api", "folder"),
        ("services.api.helm.values[0]", tree / "values-dev.yaml", "file"),
    ]

    (tree / "src" / "deploy").mkdir()
    write_kustomization(tree / "src" / "deploy")
    web = load_service(tree, "kustomize: ${SOURCE_DIR}/deploy/overlay\nmanifests: [values-dev.yaml]\n")
    assert web.deploy_source == Kustomize(tree / "src" / "deploy" / "overlay")
    # Besides manifests: the files first, then the kustomization.
    assert deploysources.origins(web) == (tree / "values-dev.yaml", tree / "src" / "deploy" / "overlay")


def test_helm_argv_keeps_value_types_and_commas():
    helm = Helm(
        Path("/c/api"),
        "rel",
        (Path("/v/a.yaml"), Path("/v/b.yaml")),
        {"a.b": "x,y", "flag": "true", "n": 3, "on": True},
    )
    assert helm.argv("ns") == [
        "helm",
        "template",
        "rel",
        "/c/api",
        "--namespace",
        "ns",
        "--include-crds",
        "--skip-tests",
        "--values",
        "/v/a.yaml",
        "--values",
        "/v/b.yaml",
        "--set-json",
        'a.b="x,y"',
        "--set-json",
        'flag="true"',
        "--set-json",
        "n=3",
        "--set-json",
        "on=true",
    ]
    assert Kustomize(Path("/k")).argv("ns") == ["kubectl", "kustomize", "/k"]
    assert helm.secrets() == []


@pytest.mark.parametrize(
    "service_text,field,problem,fix",
    [
        ("helm: {chart: charts/none}", "services.api.helm.chart", "does not exist", "correct the path"),
        ("helm: {chart: kz/base}", "services.api.helm.chart", "holds no Chart.yaml", "Chart.yaml"),
        (
            "helm: {chart: bitnami/redis}",
            "services.api.helm.chart",
            "local charts only",
            "helm pull bitnami/redis",
        ),
        ("helm: {chart: charts/none/x}", "services.api.helm.chart", "does not exist", "correct the path"),
        (
            "helm: {chart: 'oci://registry.example/charts/api'}",
            "services.api.helm.chart",
            "no network",
            "--untar",
        ),
        ("helm: {chart: charts/api/Chart.yaml}", "services.api.helm.chart", "is a file", "tar -xzf"),
        ("helm: {release: x}", "services.api.helm.chart", "is required", "Chart.yaml"),
        (
            "helm: {chart: charts/api, release: My_Release}",
            "services.api.helm.release",
            "not a Helm release name",
            "at most 53",
        ),
        (
            "helm: {chart: charts/api, release: " + "r" * 54 + "}",
            "services.api.helm.release",
            "not a Helm release name",
            "at most 53",
        ),
        ("helm: {chart: charts/api, release: 7}", "services.api.helm.release", "non-empty string", ""),
        ("helm: [charts/api]", "services.api.helm", "must be a mapping", ""),
        ("helm: {chart: charts/api, value: [a]}", "services.api.helm.value", "unknown key", "values"),
        ("helm: {chart: charts/api, values: {a: 1}}", "services.api.helm.values", "list of values files", ""),
        (
            "helm: {chart: charts/api, values: [nope.yaml]}",
            "services.api.helm.values[0]",
            "does not exist",
            "",
        ),
        ("helm: {chart: charts/api, set: [a=1]}", "services.api.helm.set", "mapping of KEY: value", "set:"),
        (
            "helm: {chart: charts/api, set: {ports: [80]}}",
            "services.api.helm.set.ports",
            "got list",
            "values file",
        ),
        (
            "helm: {chart: charts/api, set: {labels: {a: b}}}",
            "services.api.helm.set.labels",
            "got mapping",
            "values file",
        ),
        (
            "helm: {chart: charts/api, set: {tag: null}}",
            "services.api.helm.set.tag",
            "got null",
            "values file",
        ),
        (
            "helm: {chart: charts/api, set: {'a=b': 1}}",
            "services.api.helm.set.a=b",
            "not a Helm value key",
            "--set",
        ),
        (
            "helm: {chart: charts/api, set: {ratio: .nan}}",
            "services.api.helm.set.ratio",
            "not a number",
            "finite",
        ),
        (
            "helm: {chart: charts/api}\nkustomize: kz/overlay",
            "services.api",
            "both `helm` and `kustomize`",
            "keep one",
        ),
        ("kustomize: kz/none", "services.api.kustomize", "does not exist", "stack file's folder"),
        ("kustomize: charts/api", "services.api.kustomize", "holds no kustomization.yaml", "Kustomization"),
        ("kustomize: [kz/overlay]", "services.api.kustomize", "non-empty string", ""),
        ("kustomise: kz/overlay", "services.api.kustomise", "unknown key", "kustomize"),
    ],
)
def test_each_bad_source_names_the_field_and_the_fix(tree, service_text, field, problem, fix):
    with pytest.raises(StackError) as caught:
        load_service(tree, service_text)
    error = caught.value
    assert error.path == str(tree / "stack.yaml")
    assert error.field == field, str(error)
    assert problem in error.problem, str(error)
    assert fix in error.fix, str(error)


def test_without_file_checks_only_remote_charts_are_refused(tree):
    listed = load_service(tree, "helm: {chart: charts/absent}\n", check_files=False)
    assert listed.deploy_source.chart == tree / "charts" / "absent"
    with pytest.raises(StackError, match="local charts only"):
        load_service(tree, "helm: {chart: 'https://charts.example/api-1.0.tgz'}\n", check_files=False)


def test_kustomize_check_wants_kubectl_with_kustomize_built_in():
    assert Kustomize.tool_check(None, "v1.36.3").status == OK
    old = Kustomize.tool_check(None, "v1.13.4")
    assert old.status == FAIL and "no `kubectl kustomize`" in old.detail and "upgrade kubectl" in old.fix
    missing = Kustomize.tool_check(None, None)
    assert missing.status == FAIL and "kubernetes.io/docs/tasks/tools" in missing.fix


# ---- rendering with the real helm and kubectl (no cluster) -------------------------------------


def test_helm_renders_values_and_set_and_masks_secret_values(testenv, tree, tmp_path):
    write_chart(tree / "charts" / "crd", crd=True)
    api = load_service(
        tree,
        """\
        helm:
          chart: charts/crd
          release: api-dev
          values: [values-dev.yaml]
          set: {flag: "true", list: "a,b", auth.password: hunter2-secret}
        """,
    )
    log, commands = tmp_path / "render.log", tmp_path / "commands.log"
    runner = Runner(command_log=commands)
    docs = deploysources.documents(api, "team-ns", runner, log_path=log)
    by_kind = {d["kind"]: d for d in docs}
    # The crds/ folder is in (--include-crds); the test hook is not (--skip-tests).
    assert sorted(by_kind) == ["CustomResourceDefinition", "Deployment", "Secret", "Service"]
    deployment = by_kind["Deployment"]
    assert deployment["metadata"]["name"] == "api-dev"
    assert deployment["metadata"]["labels"]["release-namespace"] == "team-ns"
    env = {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    # The values file wins over the chart's values; a quoted "true" stays a string; a comma is kept.
    assert env == {"GREETING": "dev", "FLAG_KIND": "string", "LIST": "a,b"}
    assert by_kind["Secret"]["stringData"]["password"] == "hunter2-secret"
    for path in (log, commands):
        text = path.read_text()
        assert "helm template api-dev" in text and "hunter2-secret" not in text and "***" in text


def test_a_failing_template_names_the_service_the_tool_and_helms_error(testenv, tree, tmp_path):
    chart = write_chart(tree / "charts" / "broken")
    (chart / "templates" / "bad.yaml").write_text(
        "kind: ConfigMap\n"
        'metadata: {name: {{ required "set db.host (password hunter2-secret)" .Values.db }}}\n'
    )
    api = load_service(tree, "helm: {chart: charts/broken, set: {db_password: hunter2-secret}}\n")
    with pytest.raises(KindlingError) as caught:
        deploysources.documents(api, "ns", Runner(), log_path=tmp_path / "render.log")
    text = str(caught.value)
    assert text.startswith(f"{chart}: service api: `helm template` failed (exit 1):")
    assert "set db.host" in text  # helm's own message, from its stderr
    assert "hunter2-secret" not in text and "***" in text


def test_kustomize_renders_the_overlay_over_its_base(testenv, tree):
    api = load_service(tree, "kustomize: kz/overlay\n")
    docs = deploysources.documents(api, "ns", Runner())
    assert sorted(d["kind"] for d in docs) == ["Deployment", "Service"]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert template["spec"]["containers"][0]["env"] == [{"name": "MODE", "value": "overlay"}]
    (tree / "kz" / "base" / "kustomization.yaml").write_text("resources: [app.yaml, missing.yaml]\n")
    failed = r"service api: `kubectl kustomize` failed \(exit 1\):(.|\n)*missing"
    with pytest.raises(KindlingError, match=failed):
        deploysources.documents(api, "ns", Runner())


def test_doctor_checks_helm_only_when_a_service_deploys_a_chart(testenv, tree, monkeypatch):
    chart_stack = load_stack(_stack_file(tree, "helm: {chart: charts/api}\n"), env={})
    plain_stack = load_stack(_stack_file(tree, "manifests: [values-dev.yaml]\n"), env={})
    assert preflight.deploy_source_checks(Runner(), plain_stack, "v1.36.3") == []
    found = preflight.deploy_source_checks(Runner(), chart_stack, "v1.36.3")
    assert [(c.name, c.status) for c in found] == [("helm", OK)], [c.line() for c in found]
    assert "needs 3.10+" in found[0].detail
    without_helm = os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "helm").exists()
    )
    monkeypatch.setenv("PATH", without_helm)
    missing = preflight.deploy_source_checks(Runner(), chart_stack, "v1.36.3")
    assert missing[0].status == FAIL and missing[0].detail == "not found on PATH"
    assert "https://helm.sh/docs/intro/install/" in missing[0].fix


def _stack_file(tree: Path, service_text: str) -> Path:
    load_service(tree, service_text)
    return tree / "stack.yaml"


def test_stack_check_validates_what_the_chart_and_the_kustomization_render(testenv, tree):
    if os.environ.get("CI") != "true":
        pytest.importorskip("kubernetes_validate")
    path = tree / "stack.yaml"
    path.write_text(
        textwrap.dedent("""\
        name: demo
        services:
          api:
            image: docker.io/library/busybox:1
            helm: {chart: charts/api, set: {auth.password: hunter2-secret}}
          web:
            image: docker.io/library/busybox:1.36
            kustomize: kz/overlay
        """)
    )
    template = tree / "charts" / "api" / "templates" / "deployment.yaml"
    template.write_text(template.read_text().replace("  replicas:", "  replicaz:"))
    env = {"E2E_STACK": str(path), "E2E_SOURCE": ""}
    broken = invoke(["stack.check"], env)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    lines = [line for line in broken.stderr.splitlines() if line.startswith("charts/api: ")]
    assert len(lines) == 1 and lines[0].startswith("charts/api: Deployment/api: ") and "replicaz" in lines[0]
    template.write_text(template.read_text().replace("  replicaz:", "  replicas:"))
    fixed = invoke(["stack.check"], env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    # The chart's Deployment, Service and Secret (its test hook is skipped); the overlay's two objects.
    assert "api                      3 object(s) ok" in fixed.stdout
    assert "web                      2 object(s) ok" in fixed.stdout
    assert "hunter2-secret" not in fixed.stdout + fixed.stderr


# ---- setup, redeploy and teardown on a real kind cluster -----------------------------------------


def test_chart_and_kustomization_deploy_redeploy_and_tear_down(stack_maker, tools, testenv, tmp_path):
    """A helm-sourced service (besides an extra manifest) and a kustomize-sourced one, both built by
    kindling, through e2e.setup; a values change redeploys only the chart's service; e2e.teardown."""
    folder = stack_maker.folder
    path = stack_maker.write({"api": {}, "web": {}}, namespace="testns")
    stack = yaml.safe_load(path.read_text())
    write_chart(folder / "chart")
    write_kustomization(folder / "kz")
    (folder / "values-dev.yaml").write_text("greeting: hello-dev\n")
    (folder / "manifests" / "extra.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: api-extra}\ndata: {a: b}\n"
    )
    stack["services"]["api"].update(
        manifests=["manifests/extra.yaml"],
        helm={"chart": "chart", "values": ["values-dev.yaml"], "set": {"auth.password": "hunter2-secret"}},
    )
    stack["services"]["web"].pop("manifests")
    stack["services"]["web"]["kustomize"] = "kz/overlay"
    path.write_text(yaml.safe_dump(stack, sort_keys=False))
    home, cluster = tmp_path / "home", f"{stack_maker.project}-e2e"
    env = {**tools.env, "E2E_STACK": str(path), "KINDLING_HOME": str(home), "KINDLING_MIN_FREE_DISK": "50MiB"}
    kubeconfig = home / "clusters" / cluster / "kubeconfig"
    try:
        result = invoke(["e2e.setup"], env)
        assert result.returncode == 0, result.stdout + result.stderr

        def deployment(name):
            return testenv.kubectl_json(kubeconfig, "get", "deployment", name, "-n", "testns")

        def env_of(name):
            container = deployment(name)["spec"]["template"]["spec"]["containers"][0]
            return {e["name"]: e.get("value", "") for e in container["env"]}

        api, web = deployment("api"), deployment("web")
        for name, found in (("api", api), ("web", web)):
            container = found["spec"]["template"]["spec"]["containers"][0]
            # The chart's `image: api` and the kustomization's `image: web` became the built images.
            assert container["image"].startswith(f"localhost/{stack_maker.project}/{name}:")
            assert container["imagePullPolicy"] == "Never"
            assert found["status"].get("availableReplicas") == 1, found["status"]
        assert env_of("api")["GREETING"] == "hello-dev"
        assert web["spec"]["template"]["metadata"]["labels"]["tier"] == "front"
        assert env_of("web") == {"MODE": "overlay"}
        names = {
            (i["kind"], i["metadata"]["name"])
            for i in testenv.kubectl_json(
                kubeconfig, "get", "services,configmaps,secrets,pods", "-n", "testns"
            )["items"]
        }
        wanted = {("Service", "api"), ("Service", "web"), ("ConfigMap", "api-extra"), ("Secret", "api-auth")}
        assert wanted <= names
        assert not any(name == "api-smoke" for _, name in names)  # a helm test hook is not applied
        run_folder = _newest_run(home)
        assert "hunter2-secret" not in (run_folder / "commands.log").read_text()
        assert "helm template api" in (run_folder / "commands.log").read_text()

        (folder / "values-dev.yaml").write_text("greeting: hello-again\n")
        again = invoke(["e2e.setup"], env)
        assert again.returncode == 0, again.stdout + again.stderr
        steps = json.loads((_newest_run(home) / "run.json").read_text())["steps"]
        outcomes = {s["id"]: s["outcome"] for s in steps}
        assert outcomes["deploy:api"] == "ready" and outcomes["deploy:web"] == "up to date", outcomes
        assert env_of("api")["GREETING"] == "hello-again"
        assert deployment("api")["status"].get("availableReplicas") == 1

        down = invoke(["e2e.teardown"], env)
        assert down.returncode == 0, down.stdout + down.stderr
        assert cluster not in testenv.clusters() and not kubeconfig.exists()
        assert stack_maker.images() == []
    finally:
        testenv.delete_cluster(cluster, tmp_path / "cleanup-kubeconfig")


def _newest_run(home: Path) -> Path:
    return sorted(home.glob("runs/*/run.json"), key=lambda p: p.stat().st_mtime)[-1].parent
