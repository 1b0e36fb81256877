"""What the real test environment shows that hand-written stand-ins got wrong or never had.

Each test runs the real tool against the real thing: kubectl against the real API server
of a kind cluster made from the test node image, kind against real podman, crictl against
the node's real containerd. Only pod execution is simulated (the test kubelet), and these
tests read what the API server and containerd say, never the simulator's own word.
"""

import json
import os
import signal
import subprocess
import time
import uuid

import pytest
import yaml
from conftest import podman_cmd

SETTLE = 120


@pytest.fixture
def ns(shared_cluster, testenv):
    """A namespace of the shared cluster for one test; deleted afterwards (without waiting)."""
    name = f"fid-{uuid.uuid4().hex[:8]}"
    testenv.kubectl(shared_cluster.kubeconfig, "create", "namespace", name)
    yield name
    testenv.kubectl(shared_cluster.kubeconfig, "delete", "namespace", name, "--wait=false", check=False)


def apply(testenv, cluster, ns, docs, *extra, check=False):
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "apply", "-n", ns, "-f", "-", *extra],
        input=yaml.safe_dump_all(docs),
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


def deployment(name, image, replicas=2):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image, "imagePullPolicy": "Never"}]},
            },
        },
    }


def wait_for(predicate, what, timeout=SETTLE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_server_version_is_the_pinned_one(shared_cluster, testenv):
    version = json.loads(testenv.kubectl(shared_cluster.kubeconfig, "version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.36.3"
    assert version["clientVersion"]["gitVersion"] == "v1.36.3"


def test_reapply_after_scale_to_zero_says_configured_and_restores_replicas(shared_cluster, testenv, ns):
    """kubectl's client-side apply patches from the last-applied copy and the live object
    (k8s.io/kubectl pkg/cmd/apply): a live change the manifest does not make is undone."""
    docs = [deployment("web", "registry.k8s.io/pause:3.10")]
    first = apply(testenv, shared_cluster, ns, docs, check=True)
    assert "deployment.apps/web created" in first.stdout
    testenv.kubectl(shared_cluster.kubeconfig, "scale", "deployment/web", "--replicas=0", "-n", ns)
    again = apply(testenv, shared_cluster, ns, docs, check=True)
    assert "deployment.apps/web configured" in again.stdout, again.stdout
    live = testenv.kubectl_json(shared_cluster.kubeconfig, "get", "deployment", "web", "-n", ns)
    assert live["spec"]["replicas"] == 2
    unchanged = apply(testenv, shared_cluster, ns, docs, check=True)
    assert "deployment.apps/web unchanged" in unchanged.stdout


def test_a_custom_resource_in_the_same_call_as_its_crd_is_rejected(shared_cluster, testenv, ns):
    group = f"t{uuid.uuid4().hex[:6]}.kindling.test"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }
    widget = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"}}
    try:
        result = apply(testenv, shared_cluster, ns, [crd, widget])
        assert result.returncode != 0
        assert 'no matches for kind "Widget"' in result.stderr, result.stderr
        assert "ensure CRDs are installed first" in result.stderr
    finally:
        testenv.kubectl(
            shared_cluster.kubeconfig, "delete", "crd", f"widgets.{group}", "--wait=false", check=False
        )


def test_a_changed_job_template_is_rejected_as_immutable(shared_cluster, testenv, ns):
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate"},
        "spec": {
            "template": {
                "metadata": {"annotations": {"kindling.test/run-seconds": "600"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "localhost/x/m:1"}]},
            }
        },
    }
    apply(testenv, shared_cluster, ns, [job], check=True)
    job["spec"]["template"]["spec"]["containers"][0]["image"] = "localhost/x/m:2"
    result = apply(testenv, shared_cluster, ns, [job])
    assert result.returncode != 0
    assert "field is immutable" in result.stderr and "spec.template" in result.stderr, result.stderr


def test_an_unknown_field_is_rejected_by_strict_validation(shared_cluster, testenv, ns):
    doc = deployment("strict", "registry.k8s.io/pause:3.10")
    doc["spec"]["template"]["spec"]["containers"][0]["imagePulPolicy"] = "Never"  # misspelt
    result = apply(testenv, shared_cluster, ns, [doc])
    assert result.returncode != 0
    assert 'unknown field "spec.template.spec.containers[0].imagePulPolicy"' in result.stderr, result.stderr


def test_a_missing_image_with_pull_policy_never_fails_as_kubelet_says(shared_cluster, testenv, ns):
    """The reason and the events of pkg/kubelet/images/image_manager.go, read from the API."""
    image = f"localhost/kindling-fidelity/absent:{uuid.uuid4().hex[:6]}"
    apply(testenv, shared_cluster, ns, [deployment("absent", image, replicas=1)], check=True)

    def waiting():
        pods = testenv.kubectl_json(shared_cluster.kubeconfig, "get", "pods", "-n", ns, "-l", "app=absent")
        for pod in pods["items"]:
            for status in pod["status"].get("containerStatuses") or []:
                if (status["state"].get("waiting") or {}).get("reason") == "ErrImageNeverPull":
                    return pod, status
        return None

    pod, status = wait_for(waiting, "ErrImageNeverPull")
    assert (
        status["state"]["waiting"]["message"]
        == f'Container image "{image}" is not present with pull policy of Never'
    )
    assert pod["status"]["phase"] == "Pending"
    events = wait_for(
        lambda: [
            e
            for e in testenv.kubectl_json(
                shared_cluster.kubeconfig,
                "get",
                "events",
                "-n",
                ns,
                "--field-selector",
                f"involvedObject.name={pod['metadata']['name']}",
            )["items"]
            if e["reason"] == "ErrImageNeverPull"
        ],
        "the ErrImageNeverPull event",
    )
    assert events[0]["type"] == "Warning" and events[0]["source"]["component"] == "kubelet"


def test_a_loaded_image_is_listed_exactly_by_crictl_and_runs(
    shared_cluster, testenv, ns, base_image, tmp_path
):
    """`kind load image-archive` imports into the node's containerd (ctr images import, the
    real one); real crictl lists the exact localhost/ reference; the pod then starts."""
    ref = f"localhost/kindling-fidelity/loaded:{uuid.uuid4().hex[:6]}"
    podman_cmd("tag", base_image, ref)
    archive = tmp_path / "image.tar"
    try:
        podman_cmd("save", "-o", str(archive), ref)
        testenv.kind("load", "image-archive", str(archive), "--name", shared_cluster.name)
        held = testenv.node_images(shared_cluster.node)
        assert ref in held, held
        assert f"docker.io/{ref}" not in held  # no registry prefix invented
        apply(testenv, shared_cluster, ns, [deployment("loaded", ref, replicas=1)], check=True)
        rollout = testenv.kubectl(
            shared_cluster.kubeconfig,
            "rollout",
            "status",
            "deployment/loaded",
            "-n",
            ns,
            "--timeout=120s",
            timeout=150,
        )
        assert "successfully rolled out" in rollout.stdout
        pods = testenv.kubectl_json(shared_cluster.kubeconfig, "get", "pods", "-n", ns, "-l", "app=loaded")
        (pod,) = pods["items"]
        assert (
            pod["status"]["containerStatuses"][0]["imageID"].startswith("sha256:")
            or "@sha256:" in pod["status"]["containerStatuses"][0]["imageID"]
        )
        logs = testenv.kubectl(shared_cluster.kubeconfig, "logs", pod["metadata"]["name"], "-n", ns)
        assert logs.stdout.strip(), "kubectl logs answered with nothing"
    finally:
        podman_cmd("rmi", ref, check=False)


def test_a_half_created_cluster_is_listed_by_kind(testenv, tmp_path):
    """kind lists every cluster whose labelled node containers exist
    (pkg/cluster/internal/providers/podman/provider.go ListClusters), created or not."""
    name = f"kt-half-{uuid.uuid4().hex[:6]}"
    kubeconfig = tmp_path / "kubeconfig"
    create = subprocess.Popen(
        [
            "kind",
            "create",
            "cluster",
            "--name",
            name,
            "--image",
            testenv.node_image,
            "--kubeconfig",
            str(kubeconfig),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "KIND_EXPERIMENTAL_PROVIDER": "podman"},
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: podman_cmd("container", "exists", f"{name}-control-plane", check=False).returncode == 0,
            "the node container",
        )
        os.killpg(create.pid, signal.SIGKILL)
        create.wait(timeout=30)
        assert not kubeconfig.exists() or "server" not in kubeconfig.read_text()
        assert name in testenv.clusters()
    finally:
        if create.poll() is None:
            os.killpg(create.pid, signal.SIGKILL)
        testenv.delete_cluster(name, kubeconfig)
    assert name not in testenv.clusters()
