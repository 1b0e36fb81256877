"""Shared test set-up: real podman configured for this kind of machine, generated stacks,
and the kind/kubectl fakes first on PATH."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import yaml

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


def busybox_path():
    for candidate in (shutil.which("busybox"), "/bin/busybox", "/usr/bin/busybox"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="session")
def podman(tmp_path_factory):
    """Real podman, or a failure under CI (where it must exist) and a skip elsewhere."""
    missing = [tool for tool in ("podman",) if shutil.which(tool) is None]
    if busybox_path() is None:
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
def base_image(podman, tmp_path_factory):
    """A local FROM-scratch base with a static busybox at /bin/busybox (no registry reachable)."""
    ref = "localhost/kindling-test/base:busybox"
    if not image_exists(ref):
        context = tmp_path_factory.mktemp("base")
        shutil.copy(busybox_path(), context / "busybox")
        (context / "Containerfile").write_text("FROM scratch\nCOPY busybox /bin/busybox\n")
        podman_cmd("build", "-q", "-t", ref, "-f", str(context / "Containerfile"), str(context))
    return ref


class StackMaker:
    """Writes a stack of tiny busybox services: each build has a RUN step that sleeps."""

    def __init__(self, folder: Path, base_image: str):
        self.folder = folder
        self.base_image = base_image
        self.project = f"kt{uuid.uuid4().hex[:8]}"

    def write(self, services: dict, name="teststack", extra=None) -> Path:
        """services: name -> {"sleep": seconds, "depends_on": [...], "fail": bool, "memory": "1GiB",
        "configmap": bool}"""
        (self.folder / "src").mkdir(parents=True, exist_ok=True)
        (self.folder / "manifests").mkdir(exist_ok=True)
        stack = {"name": name, "project": self.project, "namespace": "testns",
                 "cluster": {"name": f"{self.project}-e2e"}, "services": {}}
        for service, spec in services.items():
            context = self.folder / "src" / service
            context.mkdir(exist_ok=True)
            (context / "version.txt").write_text(spec.get("version", "1") + "\n")
            step = "/bin/busybox false" if spec.get("fail") else f"/bin/busybox sleep {spec.get('sleep', 0)}"
            (context / "Containerfile").write_text(textwrap.dedent(f"""\
                ARG BASE_IMAGE
                FROM ${{BASE_IMAGE}}
                COPY version.txt /version.txt
                RUN ["/bin/busybox", "sh", "-c", "{step} && /bin/busybox echo {service} > /name"]
                CMD ["/bin/busybox", "httpd", "-f", "-p", "8080"]
                """))
            manifest = self.folder / "manifests" / f"{service}.yaml"
            manifest.write_text(yaml.safe_dump_all(self.manifest(service, spec)))
            entry = {"build": {"containerfile": f"src/{service}/Containerfile", "context": f"src/{service}",
                               "args": {"BASE_IMAGE": self.base_image}},
                     "manifests": [f"manifests/{service}.yaml"],
                     "depends_on": spec.get("depends_on", []),
                     "ready": {"timeout": spec.get("timeout", 5)}}
            if spec.get("memory"):
                entry["build"]["memory"] = spec["memory"]
            stack["services"][service] = entry
        stack.update(extra or {})
        path = self.folder / "stack.yaml"
        path.write_text(yaml.safe_dump(stack, sort_keys=False))
        return path

    @staticmethod
    def manifest(service, spec):
        docs = []
        pod = {"containers": [{"name": service, "image": service, "ports": [{"containerPort": 8080}]}]}
        if spec.get("configmap"):
            docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{service}-config"},
                         "data": {"config.yaml": "port: 8080\n"}})
            pod["volumes"] = [{"name": "config", "configMap": {"name": f"{service}-config"}}]
            pod["containers"][0]["volumeMounts"] = [{"name": "config", "mountPath": "/etc/config"}]
        docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": service},
                     "spec": {"replicas": 1, "selector": {"matchLabels": {"app": service}},
                              "template": {"metadata": {"labels": {"app": service}}, "spec": pod}}})
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": service},
                     "spec": {"selector": {"app": service}, "ports": [{"port": 8080}]}})
        return docs

    def images(self):
        out = podman_cmd("images", "--format", "{{.Repository}}:{{.Tag}}",
                         "--filter", f"reference=localhost/{self.project}/*").stdout.split()
        return sorted(out)

    def cleanup(self):
        refs = self.images()
        if refs:
            podman_cmd("rmi", "-f", *refs, check=False)


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
    env = {"PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}", "KINDLING_FAKE_STATE": str(state)}
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
