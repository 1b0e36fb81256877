"""What the real test environment shows that hand-written stand-ins got wrong or never had.

Each test runs the real tool against the real thing: kubectl against the real API server
of a kind cluster made from the test node image, kind against real podman, crictl against
the node's real containerd, the real kubelet running real containers. These tests read what
the API server, containerd and the containers themselves say.
"""

import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import test_crdschema
from conftest import free_port, podman_cmd

from tasks.libs import render
from tasks.libs.checks import crdschema

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
        input=render.dump(docs),  # as kindling writes what it applies
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


def test_the_shared_cluster_has_a_control_plane_and_a_worker_ready_with_the_system_pods(
    shared_cluster, testenv
):
    """Real nodes: each kubelet registered and Ready, kube-proxy and the CNI daemon on each node,
    CoreDNS and the storage provisioner running."""
    nodes = testenv.kubectl_json(shared_cluster.kubeconfig, "get", "nodes")["items"]
    roles = {n["metadata"]["name"]: "control-plane" in str(n["metadata"].get("labels", {})) for n in nodes}
    assert roles == {shared_cluster.node: True, shared_cluster.worker: False}
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", node["metadata"]["name"]
        assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.36.3"

    def system_pods_running():
        pods = testenv.kubectl_json(shared_cluster.kubeconfig, "get", "pods", "-A")["items"]
        running = [
            (p["metadata"]["name"], p["spec"].get("nodeName"))
            for p in pods
            if p["status"]["phase"] == "Running"
        ]
        per_node = {
            prefix: {node for name, node in running if name.startswith(prefix)}
            for prefix in ("kube-proxy-", "kindnet-")
        }
        if (
            all(per_node[prefix] == set(roles) for prefix in per_node)
            and any(name.startswith("coredns-") for name, _ in running)
            and any(name.startswith("local-path-provisioner-") for name, _ in running)
        ):
            return True
        return None

    wait_for(system_pods_running, "kube-proxy and the CNI on each node, CoreDNS and the provisioner")


def test_the_kubelets_host_wide_sysctls_stay_in_the_node(shared_cluster, host_sysctls):
    """Two real kubelets ran, yet the host's values are as the session found them; each node sees
    the kubelet's own (vm.overcommit_memory=1, kernel.panic=10, kernel.panic_on_oops=1)."""
    for name, value in host_sysctls.items():
        assert (Path("/proc/sys") / name).read_text() == value, name
    wanted = {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}
    for node in shared_cluster.nodes:
        for name, value in wanted.items():
            assert podman_cmd("exec", node, "cat", f"/proc/sys/{name}").stdout.strip() == value, (node, name)


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


def widget_crd(group: str, schema: dict) -> dict:
    """A namespaced CRD of kind Widget in `group`, one version v1 with this openAPIV3Schema."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}
            ],
        },
    }


def test_a_custom_resource_in_the_same_call_as_its_crd_is_rejected(shared_cluster, testenv, ns):
    group = f"t{uuid.uuid4().hex[:6]}.kindling.test"
    crd = widget_crd(group, {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
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


def test_stack_check_judges_custom_resources_as_the_api_server_does(shared_cluster, testenv, ns):
    """Each case of test_crdschema.py, against a CRD of that schema installed in the real API server:
    stack.check's offline verdict and `kubectl apply --dry-run=server` (strict validation) agree."""
    group = f"t{uuid.uuid4().hex[:6]}.kindling.test"
    crd = widget_crd(group, test_crdschema.WIDGET_SCHEMA)
    kubeconfig = shared_cluster.kubeconfig
    try:
        apply(testenv, shared_cluster, ns, [crd], check=True)
        testenv.kubectl(
            kubeconfig, "wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=60s"
        )
        disagreements = []
        for case, doc, expected in test_crdschema.CASES:
            doc = {**doc, "apiVersion": f"{group}/v1"}
            ours = crdschema.problems(doc, test_crdschema.WIDGET_SCHEMA)
            assert (ours == []) == (expected is None), (case, ours)
            server = apply(testenv, shared_cluster, ns, [doc], "--dry-run=server")
            if (server.returncode == 0) != (ours == []):
                disagreements.append((case, ours, server.stdout + server.stderr))
        assert disagreements == []
    finally:
        testenv.kubectl(kubeconfig, "delete", "crd", f"widgets.{group}", "--wait=false", check=False)


def test_strings_kindling_writes_are_strings_to_kubectl(shared_cluster, testenv, ns):
    """kubectl reads YAML with go-yaml v2, which takes n, Y and 1e3 unquoted as a boolean and a
    float: each value goes through render.dump and comes back from the API server as written."""
    values = ["n", "N", "y", "Y", "yes", "off", "1e3", "5.", "-1.5", "0x1F", "0755", "1_000", "~", ""]
    data = {f"k{i}": value for i, value in enumerate(values)}
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "strings"}, "data": data}
    apply(testenv, shared_cluster, ns, [configmap], check=True)
    live = testenv.kubectl_json(shared_cluster.kubeconfig, "get", "configmap", "strings", "-n", ns)
    assert live["data"] == data


def test_a_changed_job_template_is_rejected_as_immutable(shared_cluster, testenv, ns):
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate"},
        "spec": {
            "template": {
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


def test_a_loaded_image_is_on_every_node_and_runs_on_the_worker(
    shared_cluster, testenv, ns, base_image, tmp_path
):
    """`kind load image-archive` imports into each node's containerd (ctr images import, the
    real one); real crictl lists the exact localhost/ reference on both nodes; a pod pinned to
    the worker runs it, and its output comes back through `kubectl logs`."""
    ref = f"localhost/kindling-fidelity/loaded:{uuid.uuid4().hex[:6]}"
    podman_cmd("tag", base_image, ref)
    archive = tmp_path / "image.tar"
    try:
        podman_cmd("save", "-o", str(archive), ref)
        testenv.kind("load", "image-archive", str(archive), "--name", shared_cluster.name)
        for node in shared_cluster.nodes:
            held = testenv.node_images(node)
            assert ref in held, (node, held)
            assert f"docker.io/{ref}" not in held  # no registry prefix invented
        doc = deployment("loaded", ref, replicas=1)
        pod_spec = doc["spec"]["template"]["spec"]
        pod_spec["nodeSelector"] = {"kubernetes.io/hostname": shared_cluster.worker}
        pod_spec["containers"][0]["command"] = SERVE
        apply(testenv, shared_cluster, ns, [doc], check=True)
        rollout(testenv, shared_cluster, ns, "loaded")
        (pod,) = pods(testenv, shared_cluster, ns, "loaded")
        assert pod["spec"]["nodeName"] == shared_cluster.worker
        assert (
            pod["status"]["containerStatuses"][0]["imageID"].startswith("sha256:")
            or "@sha256:" in pod["status"]["containerStatuses"][0]["imageID"]
        )
        logs = testenv.kubectl(shared_cluster.kubeconfig, "logs", pod["metadata"]["name"], "-n", ns)
        assert "serving on 8080" in logs.stdout, logs.stdout
    finally:
        podman_cmd("rmi", ref, check=False)


# A container of the busybox base that serves its own files on 8080 and says so.
SERVE = [
    "/bin/busybox",
    "sh",
    "-c",
    "echo serving on 8080; echo pong > /ping; exec /bin/busybox httpd -f -p 8080 -h /",
]


@pytest.fixture(scope="module")
def busybox(shared_cluster, testenv, base_image, tmp_path_factory):
    """The busybox base under a reference of its own, loaded into every node of the shared cluster."""
    ref = f"localhost/kindling-fidelity/busybox:{uuid.uuid4().hex[:6]}"
    podman_cmd("tag", base_image, ref)
    archive = tmp_path_factory.mktemp("busybox") / "image.tar"
    try:
        podman_cmd("save", "-o", str(archive), ref)
        testenv.kind("load", "image-archive", str(archive), "--name", shared_cluster.name)
        yield ref
    finally:
        podman_cmd("rmi", ref, check=False)


def pods(testenv, cluster, ns, app):
    return testenv.kubectl_json(cluster.kubeconfig, "get", "pods", "-n", ns, "-l", f"app={app}")["items"]


def rollout(testenv, cluster, ns, name, timeout=120):
    result = testenv.kubectl(
        cluster.kubeconfig,
        "rollout",
        "status",
        f"deployment/{name}",
        "-n",
        ns,
        f"--timeout={timeout}s",
        timeout=timeout + 30,
    )
    assert "successfully rolled out" in result.stdout, result.stdout + result.stderr


def in_pod(testenv, cluster, ns, deployment, *command, check=True):
    """`kubectl exec` of a busybox command in a running pod of the deployment."""
    return testenv.kubectl(
        cluster.kubeconfig,
        "exec",
        "-n",
        ns,
        f"deployment/{deployment}",
        "--",
        "/bin/busybox",
        *command,
        check=check,
    )


def server(name, image, node=None, **container):
    doc = deployment(name, image, replicas=1)
    spec = doc["spec"]["template"]["spec"]
    spec["containers"][0].update({"command": SERVE, "ports": [{"containerPort": 8080}], **container})
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
        # kubeadm taints the control plane of a cluster with workers.
        spec["tolerations"] = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    return [doc, service]


def test_a_failing_readiness_probe_keeps_the_pod_unready(shared_cluster, testenv, ns, busybox):
    """The kubelet's prober (pkg/kubelet/prober) really calls the container: a 404 keeps the pod
    Running but not Ready, with the kubelet's `Unhealthy` event."""
    docs = server(
        "unready", busybox, readinessProbe={"httpGet": {"path": "/absent", "port": 8080}, "periodSeconds": 1}
    )
    apply(testenv, shared_cluster, ns, docs, check=True)

    def unhealthy():
        # On a loaded host the first probes may come before httpd listens, and fail with "connection
        # refused" (an Unhealthy event of its own message); the 404 follows once it serves.
        events = testenv.kubectl_json(shared_cluster.kubeconfig, "get", "events", "-n", ns)["items"]
        return [e for e in events if e["reason"] == "Unhealthy" and "statuscode: 404" in e["message"]]

    (event, *_) = wait_for(unhealthy, "the Unhealthy event of a 404")
    assert "Readiness probe failed: HTTP probe failed with statuscode: 404" in event["message"], event
    (pod,) = pods(testenv, shared_cluster, ns, "unready")
    assert pod["status"]["phase"] == "Running"
    (status,) = pod["status"]["containerStatuses"]
    assert status["ready"] is False and "running" in status["state"]


def test_exec_and_port_forward_reach_the_container(shared_cluster, testenv, ns, busybox):
    apply(testenv, shared_cluster, ns, server("reach", busybox), check=True)
    rollout(testenv, shared_cluster, ns, "reach")
    out = in_pod(testenv, shared_cluster, ns, "reach", "cat", "/ping")
    assert out.stdout == "pong\n"
    port = free_port()
    forward = subprocess.Popen(
        [
            "kubectl",
            "--kubeconfig",
            str(shared_cluster.kubeconfig),
            "port-forward",
            "-n",
            ns,
            "svc/reach",
            f"{port}:80",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "Forwarding from" in forward.stdout.readline()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=10) as response:
            assert response.read() == b"pong\n"
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_a_service_resolves_and_answers_from_a_pod_on_the_other_node(shared_cluster, testenv, ns, busybox):
    """CoreDNS resolves the Service name, and kube-proxy routes its ClusterIP to a pod on the other
    node through the CNI's routes. busybox's wget crashes in a FROM-scratch image here, so the
    client is busybox's nc."""
    docs = server("target", busybox, node=shared_cluster.node) + server(
        "client", busybox, node=shared_cluster.worker
    )
    apply(testenv, shared_cluster, ns, docs, check=True)
    rollout(testenv, shared_cluster, ns, "target")
    rollout(testenv, shared_cluster, ns, "client")
    name = f"target.{ns}.svc.cluster.local"
    lookup = in_pod(testenv, shared_cluster, ns, "client", "nslookup", name)
    service = testenv.kubectl_json(shared_cluster.kubeconfig, "get", "service", "target", "-n", ns)
    assert service["spec"]["clusterIP"] in lookup.stdout, lookup.stdout
    request = f"printf 'GET /ping HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 5 {name} 80"

    def answered():  # kube-proxy programs a new Service's rules a moment after its pods are ready
        out = in_pod(testenv, shared_cluster, ns, "client", "sh", "-c", request, check=False)
        return out if out.stdout.endswith("pong\n") else None

    answer = wait_for(answered, "the Service to answer", timeout=60)
    assert answer.stdout.endswith("pong\n"), answer.stdout


def test_a_pvc_is_bound_by_the_provisioner_and_holds_data(shared_cluster, testenv, ns, busybox):
    """kind's default StorageClass `standard`, served by rancher's local-path-provisioner: the
    claim binds once a pod uses it (WaitForFirstConsumer), and the pod writes to it."""
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}},
    }
    (doc, _) = server("writer", busybox)
    spec = doc["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    spec["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    apply(testenv, shared_cluster, ns, [claim, doc], check=True)
    rollout(testenv, shared_cluster, ns, "writer", timeout=180)
    live = testenv.kubectl_json(shared_cluster.kubeconfig, "get", "pvc", "data", "-n", ns)
    assert live["status"]["phase"] == "Bound" and live["spec"]["storageClassName"] == "standard"
    volume = testenv.kubectl_json(shared_cluster.kubeconfig, "get", "pv", live["spec"]["volumeName"])
    assert volume["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "rancher.io/local-path"
    written = in_pod(
        testenv,
        shared_cluster,
        ns,
        "writer",
        "sh",
        "-c",
        "echo kept > /data/file && /bin/busybox cat /data/file",
    )
    assert written.stdout == "kept\n"


def test_a_crashing_container_is_restarted_with_its_exit_code(shared_cluster, testenv, ns, busybox):
    """A container that exits 3 is restarted by the kubelet: its restart count grows and its last
    termination keeps the real exit code (mostly shown as terminated: Error between restarts)."""
    doc = deployment("crash", busybox, replicas=1)
    doc["spec"]["template"]["spec"]["containers"][0]["command"] = [
        "/bin/busybox",
        "sh",
        "-c",
        "echo crashing; exit 3",
    ]
    apply(testenv, shared_cluster, ns, [doc], check=True)

    def restarted_twice():
        for pod in pods(testenv, shared_cluster, ns, "crash"):
            for status in pod["status"].get("containerStatuses") or []:
                if status.get("restartCount", 0) >= 2:
                    return status
        return None

    status = wait_for(restarted_twice, "two restarts")
    last = status["lastState"]["terminated"]
    assert last["exitCode"] == 3 and last["reason"] == "Error", status
    logs = testenv.kubectl(shared_cluster.kubeconfig, "logs", "-n", ns, "deployment/crash", check=False)
    assert "crashing" in logs.stdout or "back-off" in logs.stderr or "waiting to start" in logs.stderr


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
