"""The demo stack (demo.yaml) end to end: real podman builds on the local busybox base,
e2e.setup, e2e.run with the demo's own suite and e2e.teardown against the real kind, kubelet
and kubectl of the test environment: the services really serve, on the host's port.

demo.yaml's cluster name, project and host port are global on the host (podman container and
image names, a listening port), so the test runs a copy in tmp with its own: manifests and
Kind config by absolute path, builds from this repository through E2E_SOURCE.
"""

import subprocess
import urllib.request
import uuid

import yaml
from conftest import ROOT, free_port, image_exists, invoke, podman_cmd

DEMO_SERVICES = {"store", "brain", "controller"}


def demo_copy(folder, project, cluster, host_port):
    stack = yaml.safe_load((ROOT / "demo.yaml").read_text())
    stack["project"] = project
    kind_config = yaml.safe_load((ROOT / stack["cluster"]["config"]).read_text())
    kind_config["name"] = cluster
    for node in kind_config["nodes"]:
        for mapping in node.get("extraPortMappings", []):
            mapping["hostPort"] = host_port
    (folder / "kind.yaml").write_text(yaml.safe_dump(kind_config))
    stack["cluster"] = {"name": cluster, "config": str(folder / "kind.yaml")}
    for service in stack["services"].values():
        service["manifests"] = [str(ROOT / m) for m in service["manifests"]]
    stack["test"]["command"] = [c.replace("${STACK_DIR}", str(ROOT)) for c in stack["test"]["command"]]
    path = folder / "demo.yaml"
    path.write_text(yaml.safe_dump(stack, sort_keys=False))
    return path, stack["namespace"]


def project_images(project):
    out = podman_cmd(
        "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", f"reference=localhost/{project}/*"
    ).stdout.split()
    return sorted(out)


def test_demo_stack_builds_deploys_and_tears_down(base_image, tools, testenv, tmp_path):
    project = f"kd{uuid.uuid4().hex[:8]}"
    cluster = f"{project}-demo"
    port = free_port()
    path, namespace = demo_copy(tmp_path, project, cluster, port)
    home = tmp_path / "home"
    env = {
        **tools.env,
        "E2E_STACK": str(path),
        "E2E_SOURCE": str(ROOT),
        "BASE_IMAGE": base_image,
        "KINDLING_HOME": str(home),
        "KINDLING_MIN_FREE_DISK": "50MiB",
        "KINDLING_LOCK_DIR": str(tmp_path),
    }
    kubeconfig = home / "clusters" / cluster / "kubeconfig"
    node = f"{cluster}-control-plane"
    try:
        result = invoke(["e2e.setup"], env)
        assert result.returncode == 0, result.stdout + result.stderr

        held = testenv.node_images(node)  # real crictl in the node
        deployments = testenv.kubectl_json(kubeconfig, "get", "deployments", "-n", namespace)["items"]
        assert {d["metadata"]["name"] for d in deployments} == DEMO_SERVICES
        deployed = {}
        for deployment in deployments:
            name = deployment["metadata"]["name"]
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            ref = container["image"]
            assert ref.startswith(f"localhost/{project}/{name}:"), ref
            assert ref in held, (ref, held)
            assert container["imagePullPolicy"] == "Never"
            status = deployment["status"]
            assert status["readyReplicas"] == status["updatedReplicas"] == deployment["spec"]["replicas"], (
                status
            )
            assert {c["type"]: c["status"] for c in status["conditions"]}["Available"] == "True"
            deployed[name] = ref
        # Exactly the three images this run built, and nothing else under the project.
        assert project_images(project) == sorted(deployed.values())
        for name in DEMO_SERVICES:
            assert f"\n{name} " in result.stdout  # the per-service summary
        # A process in the controller's pod answers on the host port (NodePort, kube-proxy).
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as response:
            assert response.read() == b"ok\n"
        # e2e.run as a user runs it: the environment is up (nothing to redo), the demo's own suite
        # passes against it, then the teardown.
        run = invoke(["e2e.run"], env)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Ran 5 tests" in run.stdout + run.stderr and "\nOK" in run.stdout + run.stderr
        assert cluster not in testenv.clusters()
        assert subprocess.run(["podman", "container", "exists", node]).returncode == 1
        assert not kubeconfig.exists()
        assert project_images(project) == []
        assert image_exists(base_image)  # never an image kindling did not build
    finally:
        leftover = project_images(project)
        if leftover:
            podman_cmd("rmi", *leftover, check=False)
