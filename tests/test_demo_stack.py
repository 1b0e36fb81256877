"""The demo stack (demo.yaml) end to end: real podman builds on the local busybox base,
e2e.setup and e2e.teardown against the real kind and kubectl of the test environment.

demo.yaml's cluster name and project are global on the host (podman container and
image names), so the test runs a copy in tmp with its own: manifests and Kind config
by absolute path, builds from this repository through E2E_SOURCE.
"""

import subprocess
import uuid

import yaml
from conftest import ROOT, image_exists, invoke, podman_cmd

DEMO_SERVICES = {"store", "brain", "controller"}


def demo_copy(folder, project, cluster):
    stack = yaml.safe_load((ROOT / "demo.yaml").read_text())
    stack["project"] = project
    stack["cluster"] = {"name": cluster, "config": str(ROOT / stack["cluster"]["config"])}
    for service in stack["services"].values():
        service["manifests"] = [str(ROOT / m) for m in service["manifests"]]
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
    path, namespace = demo_copy(tmp_path, project, cluster)
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

        down = invoke(["e2e.teardown"], env)
        assert down.returncode == 0, down.stdout + down.stderr
        assert cluster not in testenv.clusters()
        assert subprocess.run(["podman", "container", "exists", node]).returncode == 1
        assert not kubeconfig.exists()
        assert project_images(project) == []
        assert image_exists(base_image)  # never an image kindling did not build
    finally:
        leftover = project_images(project)
        if leftover:
            podman_cmd("rmi", *leftover, check=False)
