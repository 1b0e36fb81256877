"""Generated sample stacks of tiny busybox services, for the benchmarks and the tests.

No public registry is needed: the base image is made FROM scratch with the host's
static busybox (Debian: busybox-static), and each service's build has a RUN step
that sleeps for the time it is given, standing in for a compiler.
"""

import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import yaml

from .engine import Engine
from .errors import KindlingError

BASE_IMAGE = "localhost/kindling-sample/base:busybox"


def busybox_binary() -> str:
    for candidate in (shutil.which("busybox"), "/bin/busybox", "/usr/bin/busybox"):
        if candidate and Path(candidate).exists():
            return candidate
    raise KindlingError("no busybox binary: install a static one (Debian: apt-get install busybox-static)")


def ensure_base_image(engine: Engine, ref: str = BASE_IMAGE) -> str:
    if engine.image_exists(ref):
        return ref
    with tempfile.TemporaryDirectory() as folder:
        context = Path(folder)
        shutil.copy(busybox_binary(), context / "busybox")
        (context / "Containerfile").write_text("FROM scratch\nCOPY busybox /bin/busybox\n")
        engine.build(ref, context / "Containerfile", context)
    return ref


CONTAINERFILE = """\
ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
COPY version.txt /version.txt
RUN ["/bin/busybox", "sh", "-c", "{step} && /bin/busybox echo {service} > /name"]
CMD ["/bin/busybox", "httpd", "-f", "-p", "8080"]
"""


# Pod annotations the test environment's simulated kubelet reads
# (tests/testenv/kubernetes/kubelet): a fault to act out, how long a container runs.
FAULT_ANNOTATION = "kindling.test/fault"
RUN_SECONDS_ANNOTATION = "kindling.test/run-seconds"


def manifests(service: str, spec: dict) -> list:
    """A Deployment and a Service (and a mounted ConfigMap if spec['configmap']); a Job if spec['job'].
    spec['fault'] (crashloop, never-ready, exit=N) is acted out by the test environment's kubelet."""
    docs = []
    pod = {"containers": [{"name": service, "image": service, "ports": [{"containerPort": 8080}]}]}
    annotations = {}
    if spec.get("fault"):
        annotations[FAULT_ANNOTATION] = str(spec["fault"])
        if not spec.get("job"):
            # A crashing server that never answers its probe: without one, the container would
            # count as ready in the moment between its start and its crash.
            pod["containers"][0]["readinessProbe"] = {
                "httpGet": {"path": "/", "port": 8080},
                "initialDelaySeconds": 30,
                "periodSeconds": 5,
            }
    if spec.get("run_seconds") is not None:
        annotations[RUN_SECONDS_ANNOTATION] = str(spec["run_seconds"])
    template_metadata = {"annotations": annotations} if annotations else {}
    if spec.get("configmap"):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"{service}-config"},
                "data": {"config.yaml": "port: 8080\n"},
            }
        )
        pod["volumes"] = [{"name": "config", "configMap": {"name": f"{service}-config"}}]
        pod["containers"][0]["volumeMounts"] = [{"name": "config", "mountPath": "/etc/config"}]
    if spec.get("job"):
        pod["restartPolicy"] = "Never"
        docs.append(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": service},
                "spec": {"backoffLimit": 0, "template": {"metadata": template_metadata, "spec": pod}},
            }
        )
        return docs
    docs.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": service},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": service}},
                "template": {"metadata": {"labels": {"app": service}, **template_metadata}, "spec": pod},
            },
        }
    )
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": service},
            "spec": {"selector": {"app": service}, "ports": [{"port": 8080}]},
        }
    )
    return docs


def write_stack(
    folder: Path,
    services: dict,
    *,
    name: str,
    project: str,
    base_image: str,
    cluster: str | None = None,
    namespace: str = "sample",
) -> Path:
    """Write a stack file and its sources under folder.

    services: name -> {"sleep": seconds, "depends_on": [...], "fail": bool, "memory": "1GiB",
    "configmap": bool, "job": bool, "image": "prebuilt ref" (no build), "timeout": seconds,
    "version": text, "fault": "crashloop", "run_seconds": 1, "load": bool (prebuilt: load into Kind)}
    """
    (folder / "src").mkdir(parents=True, exist_ok=True)
    (folder / "manifests").mkdir(exist_ok=True)
    stack = {
        "name": name,
        "project": project,
        "namespace": namespace,
        "cluster": {"name": cluster or f"{project}-e2e"},
        "services": {},
    }
    for service, spec in services.items():
        manifest = folder / "manifests" / f"{service}.yaml"
        manifest.write_text(yaml.safe_dump_all(manifests(service, spec)))
        entry = {
            "manifests": [f"manifests/{service}.yaml"],
            "depends_on": spec.get("depends_on", []),
            "ready": {"timeout": spec.get("timeout", 30)},
        }
        if spec.get("image"):
            entry["image"] = spec["image"]
            if spec.get("load"):
                entry["load"] = True
        else:
            context = folder / "src" / service
            context.mkdir(exist_ok=True)
            (context / "version.txt").write_text(str(spec.get("version", "1")) + "\n")
            step = "/bin/busybox false" if spec.get("fail") else f"/bin/busybox sleep {spec.get('sleep', 0)}"
            (context / "Containerfile").write_text(CONTAINERFILE.format(step=step, service=service))
            entry["build"] = {
                "containerfile": f"src/{service}/Containerfile",
                "context": f"src/{service}",
                "args": {"BASE_IMAGE": base_image},
            }
            if spec.get("memory"):
                entry["build"]["memory"] = spec["memory"]
        stack["services"][service] = entry
    path = folder / "stack.yaml"
    path.write_text(yaml.safe_dump(stack, sort_keys=False))
    return path


@contextmanager
def local_registry(folder: Path):
    """Debian's docker-registry (the CNCF distribution registry) on a loopback port;
    yields (host, storage)."""

    binary = shutil.which("docker-registry")
    if binary is None:
        raise KindlingError(
            "a local registry needs docker-registry (Debian: apt-get install docker-registry)"
        )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    storage = folder / "registry"
    config = folder / "registry.yml"
    config.write_text(
        f"version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {storage}}}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    process = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise KindlingError("the local registry did not start")
                time.sleep(0.1)
        yield f"localhost:{port}", storage
    finally:
        process.terminate()
        process.wait(timeout=10)
