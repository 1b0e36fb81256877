"""Shared test set-up: real podman configured for this kind of machine, generated stacks,
and the kind/kubectl fakes first on PATH."""

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tasks.libs import samples
from tasks.libs.engine import Engine
from tasks.libs.errors import KindlingError
from tasks.libs.procs import Runner

ROOT = Path(__file__).resolve().parents[1]
FAKES = ROOT / "tests" / "fakes"
IN_CI = os.environ.get("CI", "").lower() == "true"

# Test set-up only (never forced on users): on these machines builds need runc (crun
# fails with "cgroups in hybrid mode not supported") and `podman run` needs the
# default ulimits dropped.
CONTAINERS_CONF = """\
[containers]
default_ulimits = []
[engine]
runtime = "runc"
"""


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


@pytest.fixture(scope="session")
def base_image(podman):
    """A local FROM-scratch base with a static busybox at /bin/busybox (no registry reachable).

    Kept after the session, like a layer cache: removing it while another session builds
    on it would break that session.
    """
    return samples.ensure_base_image(Engine(Runner()))


class StackMaker:
    """Writes a generated stack (see tasks.libs.samples) with a project name of its own."""

    def __init__(self, folder: Path, base_image: str):
        self.folder = folder
        self.base_image = base_image
        self.project = f"kt{uuid.uuid4().hex[:8]}"

    def write(self, services: dict, name="teststack") -> Path:
        return samples.write_stack(self.folder, services, name=name, project=self.project,
                                   base_image=self.base_image, namespace="testns")

    def images(self):
        out = podman_cmd("images", "--format", "{{.Repository}}:{{.Tag}}",
                         "--filter", f"reference=localhost/{self.project}/*").stdout.split()
        return sorted(out)

    def cleanup(self):
        refs = self.images()
        if refs:
            podman_cmd("rmi", *refs, check=False)  # untag: -f would remove an image ID other tags share


@pytest.fixture
def stack_maker(tmp_path, base_image):
    maker = StackMaker(tmp_path / "stack", base_image)
    yield maker
    maker.cleanup()


@pytest.fixture
def fake_tools(tmp_path):
    """kind and kubectl stand-ins first on PATH, with their own state folder."""
    state = tmp_path / "fake-state"
    state.mkdir()
    env = {"PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}", "KINDLING_FAKE_STATE": str(state),
           "KINDLING_LOCK_DIR": str(tmp_path / "locks")}  # cluster locks stay inside the test
    yield FakeTools(state, env)
    # Remove node containers of clusters a test left behind.
    for cluster in (state / "clusters").glob("*") if (state / "clusters").exists() else []:
        subprocess.run([str(FAKES / "kind"), "delete", "cluster", "--name", cluster.name],
                       env={**os.environ, **env, "KIND_EXPERIMENTAL_PROVIDER": "podman"},
                       capture_output=True)


class FakeTools:
    def __init__(self, state: Path, env: dict):
        self.state = state
        self.env = env

    def scenario(self, **data):
        (self.state / "scenario.json").write_text(json.dumps(data))

    def calls(self, tool=None):
        path = self.state / "calls.jsonl"
        if not path.exists():
            return []
        calls = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [c for c in calls if tool is None or c["tool"] == tool]


def invoke(args, env=None, cwd=None, timeout=600):
    """Run `invoke` as a user would, against this project's tasks."""
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args],
                          capture_output=True, text=True, env=full_env, cwd=cwd or ROOT, timeout=timeout)


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
            f"http://{self.host}/v2/{path}/manifests/{tag}", method="HEAD",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                               "application/vnd.docker.distribution.manifest.v2+json"})
        with urllib.request.urlopen(request) as response:
            return response.headers["Docker-Content-Digest"]

    def blobs(self):
        """(count, bytes) of the blobs the registry stores."""
        files = [p for p in (self.storage / "docker" / "registry" / "v2" / "blobs").rglob("data")]
        return len(files), sum(p.stat().st_size for p in files)
