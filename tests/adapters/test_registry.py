"""Registry mode, existing clusters, CI artifacts and kind's local-registry pattern: real
registries (Debian's docker-registry on loopback, and as a container beside Kind), real kind
and kubectl, and nodes whose containerd really pulls."""

import json
import socket
import threading
import uuid

import yaml
from conftest import free_port, image_exists, invoke, podman_cmd, remove_registry_images

from tasks.libs import samples


class CountingProxy:
    """A loopback TCP proxy in front of the registry that counts the bytes clients send."""

    def __init__(self, target):
        self.target_port = int(target.rsplit(":", 1)[1])
        self.sent = 0
        self.lock = threading.Lock()
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.host = f"localhost:{self.server.getsockname()[1]}"
        self.stopping = False

    def __enter__(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.stopping = True
        self.server.close()

    def _accept(self):
        while not self.stopping:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source, sink, count):
        try:
            while data := source.recv(65536):
                if count:
                    with self.lock:
                        self.sent += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def env_for(maker_path, tools, tmp_path, **extra):
    return {
        **tools.env,
        "E2E_STACK": str(maker_path),
        "KINDLING_HOME": str(tmp_path / "home"),
        "KINDLING_MIN_FREE_DISK": "50MiB",
        **extra,
    }


def test_registry_mode_pushes_and_the_node_pulls_with_if_not_present(
    stack_maker, tools, testenv, shared_cluster, kind_registry, tmp_path
):
    namespace = stack_maker.project
    path = stack_maker.write(
        {"a": {}, "b": {"depends_on": ["a"]}}, cluster=shared_cluster.name, namespace=namespace
    )
    env = env_for(path, tools, tmp_path, IMAGE_REGISTRY=kind_registry.host, IMAGE_REGISTRY_TLS_VERIFY="false")
    try:
        result = invoke(["e2e.setup"], env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert {f"{stack_maker.project}/a", f"{stack_maker.project}/b"} <= set(kind_registry.catalog())
        assert not [c for c in tools.calls("kind") if c["argv"][:1] == ["load"]]  # no kind load
        kubeconfig = tmp_path / "home" / "clusters" / shared_cluster.name / "kubeconfig"
        for deployment in testenv.kubectl_json(kubeconfig, "get", "deployments", "-n", namespace)["items"]:
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            assert container["image"].startswith(f"{kind_registry.host}/{stack_maker.project}/")
            assert container["imagePullPolicy"] == "IfNotPresent"
            assert deployment["status"].get("availableReplicas") == 1
        # The node's containerd pulled them through hosts.toml: real crictl lists them.
        held = testenv.cluster_images(shared_cluster.nodes)
        images = json.loads(next((tmp_path / "home" / "runs").glob("*/images.json")).read_text())
        assert images["a"]["ref"] in held and images["b"]["ref"] in held
        events = testenv.kubectl_json(kubeconfig, "get", "events", "-n", namespace)["items"]
        assert any(e["reason"] == "Pulled" and "Successfully pulled image" in e["message"] for e in events)
    finally:
        testenv.kubectl(
            shared_cluster.kubeconfig, "delete", "namespace", namespace, "--wait=false", check=False
        )
        remove_registry_images(kind_registry.host, stack_maker.project)


def test_a_repush_of_an_unchanged_image_sends_no_layer(stack_maker, registry, base_image, tmp_path):
    ref = f"{registry.host}/{stack_maker.project}/a:1"
    context = tmp_path / "context"
    context.mkdir()
    (context / "unique.txt").write_text(stack_maker.project * 1000)  # an image of this test's own
    (context / "Containerfile").write_text(f"FROM {base_image}\nCOPY unique.txt /unique.txt\n")
    podman_cmd("build", "-t", ref, str(context))
    try:
        podman_cmd("push", "--tls-verify=false", ref)
        served = registry.digest(f"{stack_maker.project}/a", "1")
        podman_cmd("rmi", ref)
        podman_cmd("pull", "--tls-verify=false", ref)
        assert podman_cmd("image", "inspect", ref, "--format", "{{.Digest}}").stdout.strip() == served
        # Count the bytes on the wire through a proxy: the second push sends no layer.
        before = registry.blobs()
        with CountingProxy(registry.host) as proxy:
            fresh = f"{proxy.host}/{stack_maker.project}/fresh:1"
            podman_cmd("tag", ref, fresh)
            podman_cmd("push", "--tls-verify=false", fresh)
            first = proxy.sent
            podman_cmd("push", "--tls-verify=false", fresh)
            second = proxy.sent - first
            podman_cmd("rmi", fresh)
        layer_bytes = sum(
            p.stat().st_size
            for p in (registry.storage / "docker" / "registry" / "v2" / "blobs").rglob("data")
        )
        assert registry.blobs() == before  # same blobs: "fresh" is the same image
        assert second < 20_000 < layer_bytes <= first + 20_000, (first, second, layer_bytes)
    finally:
        remove_registry_images(registry.host, stack_maker.project)


def test_existing_cluster_keeps_the_cluster_and_deletes_only_what_was_applied(
    stack_maker, tools, testenv, shared_cluster, kind_registry, tmp_path
):
    namespace = stack_maker.project
    path = stack_maker.write({"a": {"configmap": True}}, namespace=namespace)
    # Objects that name a namespace of their own are applied and deleted there (no -n forced).
    elsewhere = f"{namespace}-fixtures"
    manifest = path.parent / "manifests" / "a.yaml"
    manifest.write_text(
        manifest.read_text()
        + f"---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {elsewhere}}}\n"
        + f"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: fixture, namespace: {elsewhere}}}\n"
    )
    env = env_for(path, tools, tmp_path, IMAGE_REGISTRY_TLS_VERIFY="false")
    kubeconfig = shared_cluster.kubeconfig

    def hold(finalizers, check=True):
        patch = json.dumps({"metadata": {"finalizers": finalizers}})
        argv = ["patch", "configmap", "a-config", "-n", namespace, "--type=merge", "-p", patch]
        testenv.kubectl(kubeconfig, *argv, check=check)

    try:
        setup = invoke(["e2e.setup", "--registry", kind_registry.host, "--kubeconfig", str(kubeconfig)], env)
        assert setup.returncode == 0, setup.stdout + setup.stderr
        assert not [c for c in tools.calls("kind") if c["argv"][:2] == ["create", "cluster"]]
        assert testenv.kubectl_json(kubeconfig, "get", "configmap", "fixture", "-n", elsewhere)
        other = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "someone-elses", "namespace": namespace},
        }
        subprocess_apply(kubeconfig, other)
        # An object a finalizer holds must not stop the rest of the teardown.
        hold(["kindling.test/hold"])
        down = invoke(
            ["e2e.teardown", "--registry", kind_registry.host, "--kubeconfig", str(kubeconfig)], env
        )
        assert down.returncode == 0, down.stdout + down.stderr
        lines = down.stdout.splitlines()
        assert (
            f"deleted Deployment/a in {namespace}" in lines and f"deleted Service/a in {namespace}" in lines
        )
        assert any(
            f"could not delete ConfigMap/a-config in {namespace}: held by finalizers kindling.test/hold"
            in line
            for line in lines
        ), down.stdout
        # Reverse apply order: the workload went before the configuration it uses.
        assert lines.index(f"deleted Deployment/a in {namespace}") < lines.index(
            f"deleted Service/a in {namespace}"
        )
        assert shared_cluster.name in testenv.clusters()
        names = {
            i["metadata"]["name"]
            for i in testenv.kubectl_json(kubeconfig, "get", "configmaps", "-n", namespace)["items"]
        }
        assert "someone-elses" in names
        assert testenv.kubectl_json(kubeconfig, "get", "deployments", "-n", namespace)["items"] == []
        assert f"deleted ConfigMap/fixture in {elsewhere}" in lines
        left = testenv.kubectl_json(kubeconfig, "get", "configmaps", "-n", elsewhere)["items"]
        assert "fixture" not in {c["metadata"]["name"] for c in left}
    finally:
        hold(None, check=False)
        for created in (namespace, elsewhere):
            testenv.kubectl(kubeconfig, "delete", "namespace", created, "--wait=false", check=False)
        remove_registry_images(kind_registry.host, stack_maker.project)


def subprocess_apply(kubeconfig, doc):
    import subprocess

    subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "apply", "-f", "-"],
        input=json.dumps(doc),
        text=True,
        check=True,
        capture_output=True,
    )


def test_context_without_registry_is_refused(stack_maker, tools, tmp_path):
    path = stack_maker.write({"a": {}})
    result = invoke(["e2e.setup", "--context", "kind-x"], env_for(path, tools, tmp_path))
    assert result.returncode == 1 and "also give --registry" in result.stderr


def test_ci_artifacts_are_used_and_never_removed(stack_maker, tools, testenv, shared_cluster, tmp_path):
    namespace = stack_maker.project
    path = stack_maker.write(
        {"a": {}, "b": {"depends_on": ["a"]}}, cluster=shared_cluster.name, namespace=namespace
    )
    artifacts = tmp_path / "artifacts"
    builder = env_for(path, tools, tmp_path, IMAGE_TAG="ci1", KINDLING_HOME=str(tmp_path / "ci-home"))
    built = invoke(["build", "--parallel", "--save-to", str(artifacts)], builder)
    assert built.returncode == 0, built.stderr
    assert sorted(p.name for p in artifacts.glob("*.tar")) == ["a.tar", "b.tar"]
    stack_maker.cleanup()  # a fresh E2E job: nothing in the image store
    job = env_for(path, tools, tmp_path, IMAGE_TAG="ci1")
    try:
        result = invoke(["e2e.setup", "--images-from", str(artifacts), "--output", "json"], job)
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(result.stdout)
        outcomes = {s["id"]: s["outcome"] for s in report["steps"]}
        assert outcomes["image:a"] == outcomes["image:b"] == "present"
        refs = [f"localhost/{stack_maker.project}/{s}:ci1" for s in "ab"]
        for node in shared_cluster.nodes:  # loaded into every node
            assert set(refs) <= testenv.node_images(node), node
        # Teardown of a stack on the shared cluster would delete it: only the images are checked here.
        down = invoke(["e2e.teardown", "--dry-run"], job)
        assert down.returncode == 0, down.stderr
        assert not [line for line in down.stdout.splitlines() if "podman rmi" in line and "ci1" in line]
        assert all(image_exists(ref) for ref in refs)  # not built by this run: kept
    finally:
        testenv.kubectl(
            shared_cluster.kubeconfig, "delete", "namespace", namespace, "--wait=false", check=False
        )


def test_load_via_registry_runs_kinds_local_registry_pattern_for_real(stack_maker, tools, testenv, tmp_path):
    """The registry container starts while the image builds, the cluster is created with
    containerd reading certs.d, each node gets hosts.toml, the registry joins the kind network
    (only once both exist), and the node pulls the pushed image."""
    path = stack_maker.write({"a": {}})
    name, port = f"kt-kind-registry-{uuid.uuid4().hex[:6]}", free_port()
    env = env_for(
        path, tools, tmp_path, KINDLING_KIND_REGISTRY_NAME=name, KINDLING_KIND_REGISTRY_PORT=str(port)
    )
    cluster = f"{stack_maker.project}-e2e"
    kubeconfig = tmp_path / "home" / "clusters" / cluster / "kubeconfig"
    try:
        result = invoke(["e2e.setup", "--load-via", "registry"], env)
        assert result.returncode == 0, result.stdout + result.stderr
        commands = (next((tmp_path / "home").glob("runs/*/commands.log"))).read_text().splitlines()

        def first(text):
            return next(i for i, line in enumerate(commands) if text in line)

        assert first(f"podman run -d --restart=always -p 127.0.0.1:{port}:5000") < first("podman push")
        assert first(f"network connect kind {name}") > max(
            first("kind create cluster"), first(f"podman run -d --restart=always -p 127.0.0.1:{port}")
        )
        assert not [line for line in commands if "kind load" in line or "podman save" in line]
        networks = podman_cmd("inspect", "-f", "{{json .NetworkSettings.Networks}}", name).stdout
        assert '"kind"' in networks
        deployment = testenv.kubectl_json(kubeconfig, "get", "deployment", "a", "-n", "testns")
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image.startswith(f"localhost:{port}/{stack_maker.project}/a:")
        assert deployment["status"].get("availableReplicas") == 1
        assert image in testenv.node_images(f"{cluster}-control-plane")  # pulled by the node
        hosting = testenv.kubectl_json(
            kubeconfig, "get", "configmap", "local-registry-hosting", "-n", "kube-public"
        )
        assert f'host: "localhost:{port}"' in hosting["data"]["localRegistryHosting.v1"]
        assert invoke(["e2e.teardown"], env).returncode == 0
    finally:
        podman_cmd("rm", "-f", name, check=False)
        remove_registry_images(f"localhost:{port}", stack_maker.project)


def test_a_registry_on_the_hosts_loopback_serves_the_nodes_of_the_cluster_kindling_makes(
    stack_maker, tools, testenv, tmp_path
):
    """`IMAGE_REGISTRY=127.0.0.1:PORT`: a kind node's loopback is not the host's, so each node's
    containerd gets a hosts.toml sending 127.0.0.1:PORT to an address of the host the node
    reached, and the real kubelet pulls through it on both nodes."""
    path = stack_maker.write({"a": {}, "b": {"depends_on": ["a"]}})
    cluster = f"{stack_maker.project}-e2e"
    config = tmp_path / "kind.yaml"
    config.write_text(
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes: [{role: control-plane}, {role: worker}]\n"
    )
    stack = yaml.safe_load(path.read_text())
    stack["cluster"]["config"] = str(config)
    path.write_text(yaml.safe_dump(stack))
    kubeconfig = tmp_path / "home" / "clusters" / cluster / "kubeconfig"
    with samples.local_registry(tmp_path, listen="0.0.0.0") as (host, _):
        loopback = host.replace("localhost:", "127.0.0.1:")
        env = env_for(path, tools, tmp_path, IMAGE_REGISTRY=loopback, IMAGE_REGISTRY_TLS_VERIFY="false")
        try:
            result = invoke(["e2e.setup"], env)
            assert result.returncode == 0, result.stdout + result.stderr
            nodes = [n["metadata"]["name"] for n in testenv.kubectl_json(kubeconfig, "get", "nodes")["items"]]
            assert len(nodes) == 2
            for node in nodes:
                toml = podman_cmd(
                    "exec", node, "cat", f"/etc/containerd/certs.d/{loopback}/hosts.toml"
                ).stdout
                assert toml.startswith("# kindling:") and '[host."http://' in toml, toml
            pulled = set()
            for deployment in testenv.kubectl_json(kubeconfig, "get", "deployments", "-n", "testns")["items"]:
                image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
                assert image.startswith(f"{loopback}/{stack_maker.project}/"), image
                assert deployment["status"].get("availableReplicas") == 1
                pulled.add(image)
            held = testenv.cluster_images(nodes)
            assert pulled <= held
            events = testenv.kubectl_json(kubeconfig, "get", "events", "-n", "testns")["items"]
            assert any(
                e["reason"] == "Pulled" and "Successfully pulled image" in e["message"] for e in events
            )
            assert invoke(["e2e.teardown"], env).returncode == 0
        finally:
            remove_registry_images(loopback, stack_maker.project)
