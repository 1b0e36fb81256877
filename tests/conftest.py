"""Shared test set-up: real podman configured for this kind of machine, generated stacks,
and the real test environment (kind, kubectl and a kind node image built from Go modules)."""

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tasks.libs import samples
from tasks.libs.adapters.engine import Podman
from tasks.libs.errors import KindlingError
from tasks.libs.procs.runner import Runner

ROOT = Path(__file__).resolve().parents[1]
WRAP = ROOT / "tests" / "testenv" / "wrap"
TESTENV_SCRIPT = ROOT / "scripts" / "testenv.sh"
IN_CI = os.environ.get("CI", "").lower() == "true"

# Test set-up only (never forced on users): on these machines builds need runc (crun
# fails with "cgroups in hybrid mode not supported") and `podman run` needs the
# default ulimits dropped.
CONTAINERS_CONF = """\
[containers]
default_ulimits = []
log_driver = "k8s-file"
[engine]
runtime = "runc"
"""


def pytest_collection_modifyitems(config, items):
    """Mark each test by what it stands on, from the fixtures it asks for (their closure): `podman`
    for real podman, `testenv` for the Go-built kind, kubectl and node image as well. The rest is the
    fast lane (`scripts/test.sh --fast`: -m "not podman")."""
    for item in items:
        if "podman" in item.fixturenames:
            item.add_marker(pytest.mark.podman)
        if "testenv" in item.fixturenames:
            item.add_marker(pytest.mark.testenv)


@pytest.fixture(scope="session")
def podman(tmp_path_factory):
    """Real podman, or a failure under CI (where it must exist) and a skip elsewhere."""
    missing = [tool for tool in ("podman",) if shutil.which(tool) is None]
    try:
        samples.busybox_binary()
    except KindlingError:
        missing.append("busybox (Debian: busybox-static)")
    if missing:
        message = f"needs {', '.join(missing)}"
        if IN_CI:
            pytest.fail(message + " (CI=true: install it in .ci/run)")
        pytest.skip(message)
    if not os.environ.get("CONTAINERS_CONF"):
        conf = tmp_path_factory.mktemp("podman") / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        os.environ["CONTAINERS_CONF"] = str(conf)
    return shutil.which("podman")


def podman_cmd(*args, check=True):
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check)


def image_exists(ref):
    return podman_cmd("image", "exists", ref, check=False).returncode == 0


def remove_registry_images(host, project):
    """Untag the images of a project tagged for a registry (the registry keeps what was pushed)."""
    refs = podman_cmd(
        "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", f"reference={host}/{project}/*"
    ).stdout.split()
    if refs:
        podman_cmd("rmi", *refs, check=False)  # untag: -f would remove an image ID other tags share


@pytest.fixture(scope="session")
def base_image(podman):
    """A local FROM-scratch base with a static busybox at /bin/busybox (no registry reachable).

    Kept after the session, like a layer cache: removing it while another session builds
    on it would break that session.
    """
    return samples.ensure_base_image(Podman(Runner()))


class StackMaker:
    """Writes a generated stack (see tasks.libs.samples) with a project name of its own."""

    def __init__(self, folder: Path, base_image: str):
        self.folder = folder
        self.base_image = base_image
        self.project = f"kt{uuid.uuid4().hex[:8]}"

    def write(self, services: dict, name="teststack", cluster=None, namespace="testns") -> Path:
        return samples.write_stack(
            self.folder,
            services,
            name=name,
            project=self.project,
            base_image=self.base_image,
            namespace=namespace,
            cluster=cluster,
        )

    def images(self):
        out = podman_cmd(
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "--filter",
            f"reference=localhost/{self.project}/*",
        ).stdout.split()
        return sorted(out)

    def cleanup(self):
        refs = self.images()
        if refs:
            podman_cmd("rmi", *refs, check=False)  # untag: -f would remove an image ID other tags share
        # podman 4.3 can take the shared sample base away with these: after test_baseimages (a build
        # whose FROMs were mapped to the base, and a second name of the base) the base had gone, and
        # every later build FROM it failed. The tests after this one need it back.
        samples.ensure_base_image(Podman(Runner()))


@pytest.fixture
def stack_maker(tmp_path, base_image):
    maker = StackMaker(tmp_path / "stack", base_image)
    yield maker
    maker.cleanup()


@pytest.fixture(scope="session")
def testenv(podman):
    """The real test environment (scripts/testenv.sh): kind, kubectl, kubeadm, the control
    plane, the kubelet, crictl and helm built from Go modules, and a kind node image that runs
    real containers. Its tools go first on PATH for the whole session. Missing: a failure under CI
    (.ci/run builds it), a skip elsewhere."""
    result = subprocess.run([str(TESTENV_SCRIPT), "env"], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        message = f"the test environment is not built ({result.stderr.strip()}): run scripts/testenv.sh build"
        if IN_CI:
            pytest.fail(message + " (CI=true: .ci/run must build it)")
        pytest.skip(message)
    for name, value in re.findall(r'^export (\w+)="(.*)"$', result.stdout, re.M):
        os.environ[name] = value.replace("$PATH", os.environ.get("PATH", ""))
    return Testenv(os.environ["KINDLING_NODE_IMAGE"])


class Testenv:
    def __init__(self, node_image: str):
        self.node_image = node_image

    @staticmethod
    def kind(*args, env=None, check=True, timeout=600):
        return subprocess.run(
            ["kind", *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
            env={**os.environ, "KIND_EXPERIMENTAL_PROVIDER": "podman", **(env or {})},
        )

    def clusters(self) -> list:
        return self.kind("get", "clusters").stdout.split()

    def delete_cluster(self, name: str, kubeconfig: Path) -> None:
        self.kind("delete", "cluster", "--name", name, "--kubeconfig", str(kubeconfig), check=False)

    @staticmethod
    def kubectl(kubeconfig, *args, check=True, timeout=120):
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def kubectl_json(self, kubeconfig, *args):
        return json.loads(self.kubectl(kubeconfig, *args, "-o", "json").stdout)

    def cluster_images(self, nodes) -> set:
        """Every reference any of the nodes holds (a pod pulls onto the node it runs on)."""
        return set().union(*(self.node_images(node) for node in nodes))

    @staticmethod
    def node_images(node: str) -> set:
        """Every reference the node's containerd holds, as real crictl in the node lists them."""
        out = podman_cmd("exec", node, "crictl", "images", "-o", "json").stdout
        return {
            ref
            for image in json.loads(out)["images"]
            for ref in (image.get("repoTags") or []) + (image.get("repoDigests") or [])
        }


# From Kubernetes 1.35 the kubelet refuses cgroup v1 unless told not to (failCgroupV1); kindling
# adds this patch itself for the clusters it creates, and tests that call kind directly do the same.
CGROUP_V1_KUBELET_PATCH = "kind: KubeletConfiguration\nfailCgroupV1: false\n"


def host_cgroup_v1() -> bool:
    return not Path("/sys/fs/cgroup/cgroup.controllers").exists()


def kind_config(folder: Path, workers: int = 0) -> Path:
    """A kind config for a test cluster: a control plane, `workers` workers, and on a cgroup v1
    host the kubelet patch every 1.35+ node needs there."""
    config = {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "nodes": [{"role": "control-plane"}] + [{"role": "worker"}] * workers,
    }
    if host_cgroup_v1():
        config["kubeadmConfigPatches"] = [CGROUP_V1_KUBELET_PATCH]
    path = folder / "kind-config.yaml"
    path.write_text(json.dumps(config))
    return path


HOST_SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")


@pytest.fixture(scope="session", autouse=True)
def host_sysctls():
    """The host-wide sysctls a kubelet would set (setupKernelTunables), as the session found them
    before any node ran. The test node keeps the kubelet's values to itself (its entrypoint);
    should one leak, the session still puts the host's back at its end."""
    found = {}
    for name in HOST_SYSCTLS:
        try:
            found[name] = (Path("/proc/sys") / name).read_text()
        except OSError:
            pass
    yield found
    for name, value in found.items():
        path = Path("/proc/sys") / name
        try:
            if path.read_text() != value:
                path.write_text(value)
        except OSError:
            pass


@pytest.fixture(scope="session")
def shared_cluster(testenv, tmp_path_factory):
    """One real kind cluster, a control plane and a worker, for the tests that only need
    somewhere to deploy: each such test uses a namespace of its own. Tests that create, break or
    delete a cluster make their own."""
    name = f"kt-shared-{uuid.uuid4().hex[:6]}"
    folder = tmp_path_factory.mktemp("shared-cluster")
    kubeconfig = folder / "kubeconfig"
    try:
        testenv.kind(
            "create",
            "cluster",
            "--name",
            name,
            "--image",
            testenv.node_image,
            "--config",
            str(kind_config(folder, workers=1)),
            "--kubeconfig",
            str(kubeconfig),
            "--wait",
            "180s",
            timeout=900,
        )
        # kind's --wait covers the control plane only (waitforready.go): the worker too, here.
        testenv.kubectl(
            kubeconfig, "wait", "--for=condition=Ready", "nodes", "--all", "--timeout=180s", timeout=200
        )
        yield SharedCluster(name, kubeconfig)
    finally:
        testenv.delete_cluster(name, kubeconfig)


class SharedCluster:
    def __init__(self, name: str, kubeconfig: Path):
        self.name, self.kubeconfig = name, kubeconfig
        self.node = f"{name}-control-plane"
        self.worker = f"{name}-worker"
        self.nodes = [self.node, self.worker]


@pytest.fixture(scope="session")
def kind_registry(shared_cluster, testenv):
    """A registry container beside the shared cluster, wired as kind's local-registry guide does
    (site/static/examples/kind-with-registry.sh): on the kind network, published on a loopback
    port for pushes from the host, and named in the node's containerd hosts.toml, so the node
    really pulls from it. The image is the test environment's (Debian's docker-registry)."""
    name = f"kt-registry-{uuid.uuid4().hex[:6]}"
    port = free_port()
    podman_cmd(
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "kind",
        "-p",
        f"127.0.0.1:{port}:5000",
        os.environ["KINDLING_KIND_REGISTRY_IMAGE"],
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v2/")
        folder = f"/etc/containerd/certs.d/localhost:{port}"
        for node in shared_cluster.nodes:
            podman_cmd("exec", node, "mkdir", "-p", folder)
            subprocess.run(
                ["podman", "exec", "-i", node, "cp", "/dev/stdin", f"{folder}/hosts.toml"],
                input=f'[host."http://{name}:5000"]\n',
                text=True,
                check=True,
                capture_output=True,
            )
        yield KindRegistry(f"localhost:{port}", name)
    finally:
        podman_cmd("rm", "-f", name, check=False)


class KindRegistry:
    def __init__(self, host: str, name: str):
        self.host, self.name = host, name

    def catalog(self):
        import urllib.request

        with urllib.request.urlopen(f"http://{self.host}/v2/_catalog") as response:
            return json.load(response)["repositories"]


def default_sigint():
    """preexec_fn for a child the test interrupts: SIGINT back to its default. A shell that starts
    a command in the background ignores SIGINT for it, the child inherits that, and Python then
    never raises KeyboardInterrupt, so an interrupted run would hang instead of stopping."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, timeout=30.0) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def tools(testenv, tmp_path):
    """The real kind and kubectl behind thin wrappers (tests/testenv/wrap) that record each
    call and inject delays or failures when a test asks; clusters a test leaves are deleted."""
    state = tmp_path / "wrap-state"
    state.mkdir()
    env = {
        "PATH": f"{WRAP}{os.pathsep}{os.environ['PATH']}",
        "KINDLING_WRAP_STATE": str(state),
        "KINDLING_LOCK_DIR": str(tmp_path / "locks"),
    }  # cluster locks stay inside the test
    wrapped = Tools(state, env, testenv)
    yield wrapped
    for name in wrapped.created_clusters():
        testenv.delete_cluster(name, tmp_path / "leftover-kubeconfig")


class Tools:
    def __init__(self, state: Path, env: dict, testenv: Testenv):
        self.state, self.env, self.testenv = state, env, testenv

    def faults(self, delays=None, fail=None):
        """Ask the wrappers for delays (seconds) or failures (a count) by "tool.verb"."""
        path = self.state / "faults.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"delays": delays or {}, "fail": fail or {}}))
        os.replace(temporary, path)  # the wrappers read it while a run is going

    def calls(self, tool=None):
        path = self.state / "calls.jsonl"
        if not path.exists():
            return []
        calls = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [c for c in calls if tool is None or c["tool"] == tool]

    def created_clusters(self) -> set:
        return {
            c["argv"][c["argv"].index("--name") + 1]
            for c in self.calls("kind")
            if c["argv"][:2] == ["create", "cluster"] and "--name" in c["argv"]
        }

    def clusters(self) -> list:
        return self.testenv.clusters()


def invoke(args, env=None, cwd=None, timeout=600):
    """Run `invoke` as a user would, against this project's tasks."""
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or ROOT,
        timeout=timeout,
    )


@pytest.fixture
def registry(tmp_path, podman):
    """A real image registry (Debian's docker-registry: the CNCF distribution registry) on loopback."""
    if shutil.which("docker-registry") is None:
        if IN_CI:
            pytest.fail("docker-registry is needed (CI=true: install it in .ci/run)")
        pytest.skip("docker-registry not installed")
    with samples.local_registry(tmp_path) as (host, storage):
        yield Registry(host, storage)


class Registry:
    def __init__(self, host, storage):
        self.host, self.storage = host, storage

    def catalog(self):
        import urllib.request

        with urllib.request.urlopen(f"http://{self.host}/v2/_catalog") as response:
            return json.load(response)["repositories"]

    def digest(self, path, tag):
        import urllib.request

        request = urllib.request.Request(
            f"http://{self.host}/v2/{path}/manifests/{tag}",
            method="HEAD",
            headers={
                "Accept": "application/vnd.oci.image.manifest.v1+json, "
                "application/vnd.docker.distribution.manifest.v2+json"
            },
        )
        with urllib.request.urlopen(request) as response:
            return response.headers["Docker-Content-Digest"]

    def config_digest(self, path, tag):
        """The digest of the image config the tag's manifest names: the image's ID, which a push
        never changes."""
        import urllib.request

        request = urllib.request.Request(
            f"http://{self.host}/v2/{path}/manifests/{tag}",
            headers={
                "Accept": "application/vnd.oci.image.manifest.v1+json, "
                "application/vnd.docker.distribution.manifest.v2+json"
            },
        )
        with urllib.request.urlopen(request) as response:
            return json.load(response)["config"]["digest"]

    def blobs(self):
        """(count, bytes) of the blobs the registry stores."""
        files = [p for p in (self.storage / "docker" / "registry" / "v2" / "blobs").rglob("data")]
        return len(files), sum(p.stat().st_size for p in files)


def aianalysis_crd(selectable_fields=False) -> dict:
    """A stand-in for Kubernaut's AIAnalysis CRD: its names, and a schema that keeps any spec and status."""
    version = {
        "name": "v1alpha1",
        "served": True,
        "storage": True,
        "subresources": {"status": {}},
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            }
        },
    }
    if selectable_fields:  # a CRD field of Kubernetes 1.30 and newer
        version["selectableFields"] = [{"jsonPath": ".spec.phase"}]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "aianalyses.kubernaut.ai"},
        "spec": {
            "group": "kubernaut.ai",
            "scope": "Namespaced",
            "versions": [version],
            "names": {
                "kind": "AIAnalysis",
                "listKind": "AIAnalysisList",
                "plural": "aianalyses",
                "singular": "aianalysis",
            },
        },
    }
