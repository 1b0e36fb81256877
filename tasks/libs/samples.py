"""Generated sample stacks of tiny busybox services, for the benchmarks and the tests.

No public registry is needed: the base image is made FROM scratch with the host's
static busybox (Debian: busybox-static), and each service's build has a RUN step
that sleeps for the time it is given, standing in for a compiler.
"""

import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import yaml

from .adapters.engine import Engine
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


# What a sample service runs: the image's own CMD (CONTAINERFILE), given explicitly where the image
# is a prebuilt one (the bare busybox base).
SERVE = ["/bin/busybox", "httpd", "-f", "-p", "8080"]


def _command(spec: dict) -> list | None:
    """The container's command for the behaviour a spec asks of the real kubelet, or None for the
    image's own (busybox httpd on 8080). A fault is a real process: `exit=N` and `crashloop` exit
    (N, or 1) after `run_seconds`; a Job runs `run_seconds` and exits 0; a server starts serving after
    `run_seconds` (a slow start); `log` is printed first."""
    fault = str(spec.get("fault") or "")
    code = None
    if fault == "crashloop":
        code = 1
    elif fault.startswith("exit="):
        code = int(fault.split("=", 1)[1])
    if spec.get("image") and code is None and not spec.get("job") and not spec.get("log"):
        return SERVE  # a prebuilt image: the busybox base has no command of its own
    if code is None and not spec.get("job") and not spec.get("log") and spec.get("run_seconds") is None:
        return None
    script = []
    if spec.get("log"):
        script.append(f"echo {shlex.quote(str(spec['log']))}")
    if spec.get("run_seconds") is not None:
        script.append(f"sleep {float(spec['run_seconds'])}")
    if code is not None:
        script.append(f"exit {code}")
    elif not spec.get("job"):
        script.append("exec /bin/busybox httpd -f -p 8080")
    return ["/bin/busybox", "sh", "-c", "; ".join(script) or "true"]


def manifests(service: str, spec: dict) -> list:
    """A Deployment and a Service (and a mounted ConfigMap if spec['configmap']); a Job if spec['job'].
    spec['fault'] is acted out by a real container: `crashloop` and `exit=N` exit, `never-ready`
    serves but fails its readiness probe."""
    docs = []
    container = {"name": service, "image": service, "ports": [{"containerPort": 8080}]}
    pod = {"containers": [container]}
    command = _command(spec)
    if command:
        container["command"] = command
    if spec.get("run_seconds") is not None and not spec.get("fault") and not spec.get("job"):
        # A slow start: ready once the server listens, as the kubelet's TCP probe sees it.
        container["readinessProbe"] = {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    if spec.get("fault") and not spec.get("job"):
        # Never ready: a path busybox httpd does not serve (404), or no server at all for a
        # crashing container, so it does not count as ready between its start and its exit.
        container["readinessProbe"] = {
            "httpGet": {"path": "/kindling-never-ready", "port": 8080},
            "periodSeconds": 1,
        }
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
        container["volumeMounts"] = [{"name": "config", "mountPath": "/etc/config"}]
    if spec.get("job"):
        pod["restartPolicy"] = "Never"
        docs.append(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": service},
                "spec": {"backoffLimit": 0, "template": {"spec": pod}},
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
                "template": {"metadata": {"labels": {"app": service}}, "spec": pod},
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
    "version": text, "fault": "crashloop" | "exit=N" | "never-ready", "run_seconds": 1, "log": text,
    "load": bool (prebuilt: load into Kind)}
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
def local_registry(folder: Path, listen: str = "127.0.0.1"):
    """Debian's docker-registry (the CNCF distribution registry) on a loopback port;
    yields (host, storage). listen="0.0.0.0" also serves the host's other addresses, such as
    the one a kind node reaches the host by."""

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
        f"http:\n  addr: {listen}:{port}\n"
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
