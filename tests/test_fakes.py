"""Behaviour tests of the kind/kubectl fakes in tests/fakes (real podman for node containers)."""
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import threading
import uuid
from pathlib import Path

import pytest
import yaml

FAKES = Path(__file__).resolve().parent / "fakes"
KIND, KUBECTL = str(FAKES / "kind"), str(FAKES / "kubectl")
NODE_IMAGE = "localhost/kindling-fake/node:1"
CONF = '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n'

needs_podman = pytest.mark.skipif(shutil.which("podman") is None, reason="needs podman")


def busybox():
    return next(p for p in (shutil.which("busybox"), "/bin/busybox") if p and os.path.exists(p))


@pytest.fixture(scope="session")
def podman_conf(tmp_path_factory):
    """containers.conf for this machine; removes the fake node image at the end if we built it."""
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONF)
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    had_node_image = shutil.which("podman") and subprocess.run(
        ["podman", "image", "exists", NODE_IMAGE], env=env).returncode == 0
    yield str(conf)
    if shutil.which("podman") and not had_node_image:
        subprocess.run(["podman", "rmi", NODE_IMAGE], env=env, capture_output=True)


class Fakes:
    def __init__(self, tmp, conf):
        self.state = tmp / "state"
        self.state.mkdir(exist_ok=True)
        self.kubeconfig = str(tmp / "kubeconfig")
        self.env = {**os.environ, "KINDLING_FAKE_STATE": str(self.state), "CONTAINERS_CONF": conf,
                    "KIND_EXPERIMENTAL_PROVIDER": "podman"}
        self.env.pop("KUBECONFIG", None)
        self.tag = uuid.uuid4().hex[:8]
        self.images = []

    def run(self, tool, *args, env=None, input=None):
        return subprocess.run([tool, *args], env={**self.env, **(env or {})}, input=input,
                              capture_output=True, text=True, timeout=120)

    def kind(self, *args, **kw):
        return self.run(KIND, *args, **kw)

    def kubectl(self, *args, **kw):
        return self.run(KUBECTL, "--kubeconfig", self.kubeconfig, *args, **kw)

    def podman(self, *args):
        return subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True)

    def create(self, name=None):
        name = name or f"t{self.tag}"
        p = self.kind("create", "cluster", "--name", name, "--kubeconfig", self.kubeconfig)
        assert p.returncode == 0, p.stderr
        return name

    def apply(self, docs, *extra):
        return self.kubectl("apply", "-f", "-", *extra, input=yaml.safe_dump_all(docs))

    def scenario(self, **data):
        (self.state / "scenario.json").write_text(json.dumps(data))

    def calls(self):
        return [json.loads(x) for x in (self.state / "calls.jsonl").read_text().splitlines()]

    def build_image(self, ref, tmp):
        ctx = tmp / f"ctx-{uuid.uuid4().hex[:6]}"
        ctx.mkdir()
        shutil.copy(busybox(), ctx / "busybox")
        (ctx / "Containerfile").write_text("FROM scratch\nCOPY busybox /bin/busybox\n")
        p = self.podman("build", "-q", "-t", ref, str(ctx))
        assert p.returncode == 0, p.stderr
        self.images.append(ref)

    def save(self, ref, path, fmt="docker-archive"):
        p = self.podman("save", "--format", fmt, "-o", str(path), ref)
        assert p.returncode == 0, p.stderr
        return str(path)


@pytest.fixture
def fk(tmp_path, podman_conf):
    f = Fakes(tmp_path, podman_conf)
    yield f
    clusters = f.state / "clusters"
    for c in (clusters.iterdir() if clusters.exists() else []):
        f.kind("delete", "cluster", "--name", c.name, "--kubeconfig", f.kubeconfig)
    if f.images and shutil.which("podman"):
        f.podman("rmi", "-f", *f.images)


def deployment(name, image, ns="apps", policy=None, **podspec):
    ctr = {"name": name, "image": image, **({"imagePullPolicy": policy} if policy else {})}
    ctr.update(podspec.pop("container", {}))
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [ctr], **podspec}}}}


NS = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}
CRD = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
       "metadata": {"name": "aianalyses.kubernaut.ai"},
       "spec": {"group": "kubernaut.ai", "scope": "Namespaced",
                "names": {"kind": "AIAnalysis", "plural": "aianalyses", "singular": "aianalysis"},
                "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                              "schema": {"openAPIV3Schema": {"type": "object"}}}]}}
CR = {"apiVersion": "kubernaut.ai/v1alpha1", "kind": "AIAnalysis", "metadata": {"name": "x", "namespace": "apps"}}


# ---------------------------------------------------------------- no podman needed

def test_state_folder_is_required(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "KINDLING_FAKE_STATE"}
    for tool in (KIND, KUBECTL):
        p = subprocess.run([tool, "version"], env=env, capture_output=True, text=True)
        assert p.returncode == 2
        assert p.stderr.strip() == f"fake {Path(tool).name}: KINDLING_FAKE_STATE is not set"


def test_versions_and_call_log(tmp_path):
    f = Fakes(tmp_path, "/nonexistent")
    assert f.kind("version").stdout == "kind v0.20.0 go1.20.4 linux/amd64\n"
    p = f.run(KUBECTL, "version", "--client", "-o", "json", env={"KIND_EXPERIMENTAL_PROVIDER": ""})
    assert json.loads(p.stdout)["clientVersion"]["gitVersion"] == "v1.29.0"
    assert f.run(KUBECTL, "frobnicate").stderr.startswith('error: unknown command "frobnicate" for "kubectl"')
    calls = f.calls()
    assert [c["tool"] for c in calls] == ["kind", "kubectl", "kubectl"]
    assert [c["rc"] for c in calls] == [0, 0, 1]
    assert calls[0]["argv"] == ["version"] and calls[0]["provider"] == "podman" and calls[1]["provider"] == ""
    assert all(c["start"] <= c["end"] for c in calls)


def test_provider_must_be_podman(tmp_path):
    f = Fakes(tmp_path, "/nonexistent")
    p = f.kind("create", "cluster", "--name", "x", "--kubeconfig", f.kubeconfig,
               env={"KIND_EXPERIMENTAL_PROVIDER": ""})
    assert p.returncode == 1
    assert "Cannot connect to the Docker daemon" in p.stderr and p.stderr.startswith("ERROR: failed to create cluster")
    assert not (f.state / "clusters").exists() and not os.path.exists(f.kubeconfig)
    assert f.calls()[-1]["provider"] == "" and f.calls()[-1]["rc"] == 1


def test_kubectl_connection_errors(tmp_path):
    f = Fakes(tmp_path, "/nonexistent")
    p = f.kubectl("get", "pods")
    assert p.returncode == 1 and p.stderr.strip() == f"error: stat {f.kubeconfig}: no such file or directory"
    Path(f.kubeconfig).write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kind-gone",
        "clusters": [{"name": "kind-gone", "cluster": {"server": "https://127.0.0.1:1"}}],
        "contexts": [{"name": "kind-gone", "context": {"cluster": "kind-gone", "user": "kind-gone"}}], "users": []}))
    p = f.kubectl("get", "pods")
    assert p.stderr.strip() == ("The connection to the server 127.0.0.1:1 was refused - did you specify the right "
                                "host or port?")
    assert f.kubectl("--context", "nope", "get", "pods").stderr.strip() == 'error: context "nope" does not exist'


# ---------------------------------------------------------------- with podman

@needs_podman
def test_cluster_lifecycle(fk):
    Path(fk.kubeconfig).write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "other",
        "clusters": [{"name": "other", "cluster": {"server": "https://10.0.0.1:6443"}}],
        "contexts": [{"name": "other", "context": {"cluster": "other", "user": "other"}}],
        "users": [{"name": "other", "user": {"token": "t"}}]}))
    assert fk.kind("get", "clusters").stderr.endswith("No kind clusters found.\n")
    name = fk.create()
    assert fk.kind("get", "clusters").stdout == f"{name}\n"
    assert fk.kind("get", "nodes", "--name", name).stdout == f"{name}-control-plane\n"
    kc = yaml.safe_load(Path(fk.kubeconfig).read_text())
    assert kc["current-context"] == f"kind-{name}"
    assert {c["name"] for c in kc["contexts"]} == {"other", f"kind-{name}"}
    assert stat.S_IMODE(os.stat(fk.kubeconfig).st_mode) == 0o600
    server = next(c["cluster"]["server"] for c in kc["clusters"] if c["name"] == f"kind-{name}")
    assert server.startswith("https://127.0.0.1:")
    assert server in fk.kind("get", "kubeconfig", "--name", name).stdout
    labels = fk.podman("inspect", "--format", "{{json .Config.Labels}}", f"{name}-control-plane")
    assert json.loads(labels.stdout)["io.x-k8s.kind.cluster"] == name

    dup = fk.kind("create", "cluster", "--name", name, "--kubeconfig", fk.kubeconfig)
    assert dup.returncode == 1
    assert dup.stderr.splitlines()[-1] == \
        f'ERROR: failed to create cluster: node(s) already exist for a cluster with the name "{name}"'
    assert fk.kubectl("cluster-info").stdout.startswith(f"Kubernetes control plane is running at {server}")
    other = Path(fk.kubeconfig).with_name("exported")
    assert fk.kind("export", "kubeconfig", "--name", name, "--kubeconfig", str(other)).returncode == 0
    assert yaml.safe_load(other.read_text())["current-context"] == f"kind-{name}"
    logs = Path(fk.kubeconfig).with_name("logs")
    p = fk.kind("export", "logs", str(logs), "--name", name)
    assert p.stdout == f"{logs}\n" and f'Exporting logs for cluster "{name}" to:' in p.stderr
    assert (logs / "kind-version.txt").exists() and (logs / f"{name}-control-plane" / "kubelet.log").exists()

    p = fk.kind("delete", "cluster", "--name", name, "--kubeconfig", fk.kubeconfig)
    assert p.returncode == 0 and f'Deleting cluster "{name}" ...' in p.stderr
    assert fk.podman("container", "exists", f"{name}-control-plane").returncode == 1
    kc = yaml.safe_load(Path(fk.kubeconfig).read_text())
    assert [c["name"] for c in kc["contexts"]] == ["other"] and kc["current-context"] == ""
    assert fk.kind("delete", "cluster", "--name", name, "--kubeconfig", fk.kubeconfig).returncode == 0  # idempotent
    assert fk.kind("load", "image-archive", "/dev/null", "--name", name).stderr.strip().endswith(
        f'ERROR: no nodes found for cluster "{name}"')


@needs_podman
def test_config_file_rules(fk, tmp_path):
    cfg = tmp_path / "kind.yaml"
    cfg.write_text("kind: Cluster\napiVersion: kind.sigs.k8s.io/v1alpha3\n")
    p = fk.kind("create", "cluster", "--config", str(cfg), "--kubeconfig", fk.kubeconfig)
    assert p.returncode == 1 and "unknown apiVersion: kind.sigs.k8s.io/v1alpha3" in p.stderr
    cfg.write_text("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nfeatureGate: {}\n")
    p = fk.kind("create", "cluster", "--config", str(cfg), "--kubeconfig", fk.kubeconfig)
    assert "line 3: field featureGate not found in type v1alpha4.Cluster" in p.stderr
    name = f"cfg{fk.tag}"
    cfg.write_text(f"kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nname: {name}\n"
                   "nodes: [{role: control-plane}, {role: worker}]\n")
    p = fk.kind("create", "cluster", "--config", str(cfg), "--kubeconfig", fk.kubeconfig)
    assert p.returncode == 0, p.stderr
    assert fk.kind("get", "nodes", "--name", name).stdout.split() == [f"{name}-control-plane", f"{name}-worker"]


def craft_archive(src, dst, repo_tags):
    """Copy a docker-archive, rewriting manifest.json RepoTags (what `docker save foo/bar:1` writes)."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read() if m.isfile() else None
            if m.name == "manifest.json":
                man = json.loads(data)
                man[0]["RepoTags"] = repo_tags
                data = json.dumps(man).encode()
                m.size = len(data)
            tout.addfile(m, io.BytesIO(data) if data is not None else None)
    return str(dst)


@needs_podman
def test_load_records_containerd_names_and_crictl_sees_them(fk, tmp_path):
    name = fk.create()
    ref = f"localhost/test/app-{fk.tag}:1"
    fk.build_image(ref, tmp_path)
    archive = fk.save(ref, tmp_path / "app.tar")
    assert fk.kind("load", "image-archive", archive, "--name", name).returncode == 0
    crafted = craft_archive(archive, tmp_path / "crafted.tar", [f"team/app-{fk.tag}:2", "nginx"])
    assert fk.kind("load", "image-archive", crafted, "--name", name).returncode == 0
    oci_ref = f"localhost/test/oci-{fk.tag}:3"
    assert fk.podman("tag", ref, oci_ref).returncode == 0
    fk.images.append(oci_ref)
    oci = fk.save(oci_ref, tmp_path / "oci.tar", fmt="oci-archive")
    assert fk.kind("load", "image-archive", oci, "--name", name).returncode == 0

    p = fk.podman("exec", f"{name}-control-plane", "crictl", "images", "-o", "json")
    assert p.returncode == 0, p.stderr
    images = json.loads(p.stdout)["images"]
    assert set(images[0]) == {"id", "repoTags", "repoDigests", "size", "uid", "username", "spec", "pinned"}
    tags = {t for i in images for t in i["repoTags"]}
    assert tags == {ref, f"docker.io/team/app-{fk.tag}:2", "docker.io/library/nginx:latest", oci_ref}
    assert all(i["id"].startswith("sha256:") and isinstance(i["size"], str) for i in images)
    table = fk.podman("exec", f"{name}-control-plane", "crictl", "images").stdout
    assert table.startswith("IMAGE") and f"localhost/test/app-{fk.tag}" in table
    node = json.loads(fk.kubectl("get", "nodes", "-o", "json").stdout)["items"][0]
    assert node["metadata"]["name"] == f"{name}-control-plane"
    assert ref in {n for i in node["status"]["images"] for n in i["names"]}

    bad = tmp_path / "bad.tar"
    bad.write_text("not a tar")
    p = fk.kind("load", "image-archive", str(bad), "--name", name)
    assert p.returncode == 1 and "ERROR: failed to load image" in p.stderr
    p = fk.kind("load", "docker-image", ref, "--name", name)
    assert p.returncode == 1 and f'ERROR: image: "{ref}" not present locally' in p.stderr


@needs_podman
def test_apply_errors_follow_the_api_server(fk):
    fk.create()
    p = fk.apply([deployment("api", "nginx:1.25"), CR, NS])
    assert p.returncode == 1
    assert p.stdout == "namespace/apps created\n"
    assert ('Error from server (NotFound): error when creating "STDIN": namespaces "apps" not found' in p.stderr)
    assert ('resource mapping not found for name: "x" namespace: "apps" from "STDIN": no matches for kind '
            '"AIAnalysis" in version "kubernaut.ai/v1alpha1"\nensure CRDs are installed first') in p.stderr
    p = fk.apply([CRD, CR])  # discovery happens before the CRD exists: the CR still fails
    assert p.returncode == 1 and "customresourcedefinition.apiextensions.k8s.io/aianalyses.kubernaut.ai created" in p.stdout
    p = fk.kubectl("wait", "--for=condition=Established", "crd/aianalyses.kubernaut.ai", "--timeout=5s")
    assert p.stdout == "customresourcedefinition.apiextensions.k8s.io/aianalyses.kubernaut.ai condition met\n"
    p = fk.apply([NS, CRD, CR, deployment("api", "nginx:1.25")])
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["namespace/apps unchanged",
                                     "customresourcedefinition.apiextensions.k8s.io/aianalyses.kubernaut.ai unchanged",
                                     "aianalysis.kubernaut.ai/x created", "deployment.apps/api created"]
    changed = deployment("api", "nginx:1.26")
    assert fk.apply([changed]).stdout == "deployment.apps/api configured\n"
    assert fk.kubectl("get", "aianalyses", "-n", "apps", "-o", "name").stdout == "aianalysis.kubernaut.ai/x\n"
    missing = fk.kubectl("get", "deploy", "nope", "-n", "apps")
    assert missing.stderr.strip() == 'Error from server (NotFound): deployments.apps "nope" not found'
    assert fk.kubectl("get", "pods", "-n", "default").stderr.strip() == "No resources found in default namespace."
    assert fk.kubectl("delete", "ns", "apps").stdout == 'namespace "apps" deleted\n'
    assert fk.kubectl("get", "deploy", "-n", "apps", "-o", "json").stdout.count('"items": []') == 1


@needs_podman
def test_image_names_decide_readiness(fk, tmp_path):
    name = fk.create()
    ref = f"localhost/test/y-{fk.tag}:1"
    fk.build_image(ref, tmp_path)
    assert fk.kind("load", "image-archive", fk.save(ref, tmp_path / "y.tar"), "--name", name).returncode == 0
    short = ref[len("localhost/"):]  # test/y-xxx:1 means docker.io/test/y-xxx:1 to containerd
    fk.apply([NS, deployment("api", short, policy="Never")])
    p = fk.kubectl("rollout", "status", "deployment/api", "-n", "apps", "--timeout=500ms")
    assert p.returncode == 1
    assert p.stdout == 'Waiting for deployment "api" rollout to finish: 0 of 1 updated replicas are available...\n'
    assert p.stderr == "error: timed out waiting for the condition\n"
    pods = json.loads(fk.kubectl("get", "pods", "-n", "apps", "-o", "json").stdout)["items"]
    assert pods[0]["metadata"]["name"].startswith("api-")
    assert pods[0]["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImageNeverPull"
    assert f'Container image "{short}" is not present with pull policy of Never' in \
        fk.kubectl("get", "events", "-n", "apps").stdout
    assert "ErrImageNeverPull" in fk.kubectl("describe", "pods", "api", "-n", "apps").stdout

    fk.apply([deployment("api", ref, policy="Never")])
    p = fk.kubectl("rollout", "status", "deployment/api", "-n", "apps", "--timeout=30s")
    assert (p.returncode, p.stdout) == (0, 'deployment "api" successfully rolled out\n')
    st = json.loads(fk.kubectl("get", "deploy", "api", "-n", "apps", "-o", "json").stdout)["status"]
    assert (st["readyReplicas"], st["availableReplicas"], st["updatedReplicas"]) == (1, 1, 1)
    pod = json.loads(fk.kubectl("get", "pods", "-n", "apps", "-o", "json").stdout)["items"][0]
    assert pod["status"]["containerStatuses"][0]["ready"] is True and "running" in pod["status"]["containerStatuses"][0]["state"]

    # no tag means :latest, which defaults imagePullPolicy to Always: a loaded image is not enough
    fk.apply([deployment("web", ref.rsplit(":", 1)[0])])
    pod = [p for p in json.loads(fk.kubectl("get", "pods", "-n", "apps", "-o", "json").stdout)["items"]
           if p["metadata"]["name"].startswith("web-")][0]
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull"
    fk.scenario(registry_images=[ref.rsplit(":", 1)[0]])
    assert fk.kubectl("rollout", "status", "deploy/web", "-n", "apps").returncode == 0


@needs_podman
def test_missing_configmap_blocks_readiness(fk):
    fk.create()
    env_ref = {"container": {"envFrom": [{"configMapRef": {"name": "api-cfg"}}]}}
    fk.apply([NS, deployment("api", "nginx:1.25", **env_ref),
              deployment("vol", "nginx:1.25", volumes=[{"name": "c", "configMap": {"name": "vol-cfg"}}])])
    table = fk.kubectl("get", "pods", "-n", "apps").stdout
    assert "CreateContainerConfigError" in table and "ContainerCreating" in table
    assert 'configmap "api-cfg" not found' in fk.kubectl("describe", "pods", "api", "-n", "apps").stdout
    p = fk.kubectl("wait", "--for=condition=Available", "deployment/api", "-n", "apps", "--timeout=200ms")
    assert p.returncode == 1 and p.stderr == "error: timed out waiting for the condition on deployments/api\n"
    logs = fk.kubectl("logs", "deployment/api", "-n", "apps")
    assert 'is waiting to start: CreateContainerConfigError' in logs.stderr
    fk.apply([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n, "namespace": "apps"}, "data": {"a": "1"}}
              for n in ("api-cfg", "vol-cfg")])
    p = fk.kubectl("wait", "--for=condition=Available", "deployment/api", "deployment/vol", "-n", "apps")
    assert p.stdout == "deployment.apps/api condition met\ndeployment.apps/vol condition met\n"
    assert "listening" in fk.kubectl("logs", "deployment/api", "-n", "apps").stdout


@needs_podman
def test_jobs_rollout_fail_and_scale(fk):
    fk.create()
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate", "namespace": "apps"},
           "spec": {"template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "m", "image": "busybox:1.36"}]}}}}
    fk.scenario(rollout_fail=["broken"])
    fk.apply([NS, job, deployment("broken", "nginx:1.25")])
    assert fk.kubectl("wait", "--for=condition=complete", "job/migrate", "-n", "apps").stdout == \
        "job.batch/migrate condition met\n"
    assert "CrashLoopBackOff" in fk.kubectl("get", "pods", "-n", "apps").stdout
    assert fk.kubectl("rollout", "status", "deploy/broken", "-n", "apps", "--timeout=100ms").returncode == 1
    assert fk.kubectl("scale", "deployment/broken", "--replicas=3", "-n", "apps").stdout == \
        "deployment.apps/broken scaled\n"
    assert len([x for x in fk.kubectl("get", "pods", "-n", "apps", "-o", "name").stdout.split() if "broken" in x]) == 3
    p = fk.kubectl("get", "deploy", "broken", "-n", "apps", "-o", "jsonpath={.spec.replicas}")
    assert p.stdout == "3"
    assert fk.apply([deployment("broken", "nginx:1.25")]).stdout == "deployment.apps/broken unchanged\n"


@needs_podman
def test_scenario_failures_and_delays(fk, tmp_path):
    fk.scenario(fail={"kind.create": 2})
    name = f"t{fk.tag}"
    args = ("create", "cluster", "--name", name, "--kubeconfig", fk.kubeconfig)
    first = fk.kind(*args)
    assert first.returncode == 1 and 'failed with error: exit status 125' in first.stderr
    assert first.stderr.splitlines()[-2].startswith('ERROR: failed to create cluster: command "podman run --name')
    assert fk.kind(*args).returncode == 1
    assert fk.kind(*args).returncode == 0
    assert json.loads((fk.state / "scenario.json").read_text())["fail"]["kind.create"] == 0

    ref = f"localhost/test/d-{fk.tag}:1"
    fk.build_image(ref, tmp_path)
    archive = fk.save(ref, tmp_path / "d.tar")
    fk.scenario(delays={"kind.load": 0.5, "kubectl.rollout": 0.3}, fail={"kubectl.rollout": 1})
    results = []
    threads = [threading.Thread(target=lambda: results.append(fk.kind("load", "image-archive", archive, "--name", name)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in results] == [0, 0]
    loads = [c for c in fk.calls() if c["argv"][:1] == ["load"]]
    assert all(c["end"] - c["start"] >= 0.5 for c in loads)
    assert max(c["start"] for c in loads) < min(c["end"] for c in loads)  # they overlapped

    fk.apply([NS, deployment("api", ref, policy="IfNotPresent")])
    p = fk.kubectl("rollout", "status", "deployment/api", "-n", "apps", "--timeout=1s")
    assert p.returncode == 1 and "timed out" in p.stderr  # the one scripted failure
    p = fk.kubectl("rollout", "status", "deployment/api", "-n", "apps", "--timeout=5s")
    assert p.returncode == 0 and p.stdout.endswith('deployment "api" successfully rolled out\n')
    last = fk.calls()[-1]
    assert last["tool"] == "kubectl" and last["end"] - last["start"] >= 0.3 and last["rc"] == 0
