"""Registry mode, existing clusters and CI artifacts, against a real registry on loopback."""

import json
import os
import socket
import subprocess
import threading

from conftest import FAKES, image_exists, invoke, podman_cmd


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


def env_for(maker_path, fake_tools, tmp_path, **extra):
    return {**fake_tools.env, "E2E_STACK": str(maker_path), "KINDLING_HOME": str(tmp_path / "home"),
            "KINDLING_MIN_FREE_DISK": "50MiB", "KINDLING_LOCK_DIR": str(tmp_path / "locks"), **extra}


def kubectl_json(env, kubeconfig, *args):
    out = subprocess.run([str(FAKES / "kubectl"), "--kubeconfig", str(kubeconfig), *args, "-o", "json"],
                         capture_output=True, text=True, env={**os.environ, **env}, check=True).stdout
    return json.loads(out)


def remove_registry_images(host, project):
    refs = podman_cmd("images", "--format", "{{.Repository}}:{{.Tag}}",
                      "--filter", f"reference={host}/{project}/*").stdout.split()
    if refs:
        podman_cmd("rmi", *refs, check=False)  # untag: -f would remove an image ID other tags share


def test_registry_mode_pushes_and_deploys_with_if_not_present(stack_maker, fake_tools, registry, tmp_path):
    path = stack_maker.write({"a": {}, "b": {"depends_on": ["a"]}})
    fake_tools.scenario(remote_pull=False)
    env = env_for(path, fake_tools, tmp_path, IMAGE_REGISTRY=registry.host, IMAGE_REGISTRY_TLS_VERIFY="false")
    try:
        result = invoke(["e2e.setup"], env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert sorted(registry.catalog()) == [f"{stack_maker.project}/a", f"{stack_maker.project}/b"]
        assert not [c for c in fake_tools.calls("kind") if c["argv"][:1] == ["load"]]  # no kind load
        kubeconfig = tmp_path / "home" / "clusters" / f"{stack_maker.project}-e2e" / "kubeconfig"
        for deployment in kubectl_json(env, kubeconfig, "get", "deployments", "-n", "testns")["items"]:
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            assert container["image"].startswith(f"{registry.host}/{stack_maker.project}/")
            assert container["imagePullPolicy"] == "IfNotPresent"
        # Pull back: the same digest as the registry serves.
        images = json.loads(next((tmp_path / "home" / "runs").glob("*/images.json")).read_text())
        ref = images["a"]["ref"]
        tag = ref.rsplit(":", 1)[1]
        served = registry.digest(f"{stack_maker.project}/a", tag)
        podman_cmd("rmi", ref)
        podman_cmd("pull", "--tls-verify=false", ref)
        assert podman_cmd("image", "inspect", ref, "--format", "{{.Digest}}").stdout.strip() == served
        # A re-push of an unchanged image sends no layer: count the bytes on the wire through a proxy.
        before = registry.blobs()
        with CountingProxy(registry.host) as proxy:
            fresh = f"{proxy.host}/{stack_maker.project}/fresh:1"
            podman_cmd("tag", ref, fresh)
            podman_cmd("push", "--tls-verify=false", fresh)
            first = proxy.sent
            podman_cmd("push", "--tls-verify=false", fresh)
            second = proxy.sent - first
            podman_cmd("rmi", fresh)
        layer_bytes = sum(p.stat().st_size for p in (registry.storage / "docker" / "registry" / "v2" / "blobs")
                          .rglob("data"))
        assert registry.blobs() == before  # same blobs: "fresh" is the same image
        assert second < 20_000 < layer_bytes <= first + 20_000, (first, second, layer_bytes)
        assert invoke(["e2e.teardown"], env).returncode == 0
    finally:
        remove_registry_images(registry.host, stack_maker.project)


def test_existing_cluster_keeps_the_cluster_and_deletes_only_what_was_applied(stack_maker, fake_tools, registry,
                                                                              tmp_path):
    path = stack_maker.write({"a": {}})
    fake_tools.scenario(remote_pull=False)
    kubeconfig = tmp_path / "shared-kubeconfig"
    cluster = f"{stack_maker.project}-shared"
    kind_env = {**os.environ, **fake_tools.env, "KIND_EXPERIMENTAL_PROVIDER": "podman"}
    subprocess.run([str(FAKES / "kind"), "create", "cluster", "--name", cluster, "--kubeconfig", str(kubeconfig)],
                   env=kind_env, check=True, capture_output=True)
    env = env_for(path, fake_tools, tmp_path, IMAGE_REGISTRY_TLS_VERIFY="false")
    try:
        other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "someone-elses", "namespace": "testns"}}
        setup = invoke(["e2e.setup", "--registry", registry.host, "--kubeconfig", str(kubeconfig)], env)
        assert setup.returncode == 0, setup.stdout + setup.stderr
        assert not [c for c in fake_tools.calls("kind") if c["argv"][:2] == ["create", "cluster"]
                    and cluster not in c["argv"]]
        subprocess.run([str(FAKES / "kubectl"), "--kubeconfig", str(kubeconfig), "apply", "-f", "-"],
                       input=json.dumps(other), text=True, env={**os.environ, **env}, check=True, capture_output=True)
        down = invoke(["e2e.teardown", "--registry", registry.host, "--kubeconfig", str(kubeconfig)], env)
        assert down.returncode == 0, down.stderr
        assert "deleted Deployment/a in testns" in down.stdout
        clusters = subprocess.run([str(FAKES / "kind"), "get", "clusters"], env=kind_env, capture_output=True,
                                  text=True).stdout.split()
        assert cluster in clusters
        names = {i["metadata"]["name"] for i in kubectl_json(env, kubeconfig, "get", "configmaps", "-n", "testns")["items"]}
        assert "someone-elses" in names
        assert kubectl_json(env, kubeconfig, "get", "deployments", "-n", "testns")["items"] == []
    finally:
        subprocess.run([str(FAKES / "kind"), "delete", "cluster", "--name", cluster], env=kind_env, capture_output=True)
        remove_registry_images(registry.host, stack_maker.project)


def test_context_without_registry_is_refused(stack_maker, fake_tools, tmp_path):
    path = stack_maker.write({"a": {}})
    result = invoke(["e2e.setup", "--context", "kind-x"], env_for(path, fake_tools, tmp_path))
    assert result.returncode == 1 and "also give --registry" in result.stderr


def test_ci_artifacts_are_used_and_never_removed(stack_maker, fake_tools, tmp_path):
    path = stack_maker.write({"a": {}, "b": {"depends_on": ["a"]}})
    fake_tools.scenario(remote_pull=False)
    artifacts = tmp_path / "artifacts"
    builder = env_for(path, fake_tools, tmp_path, IMAGE_TAG="ci1", KINDLING_HOME=str(tmp_path / "ci-home"))
    built = invoke(["build", "--parallel", "--save-to", str(artifacts)], builder)
    assert built.returncode == 0, built.stderr
    assert sorted(p.name for p in artifacts.glob("*.tar")) == ["a.tar", "b.tar"]
    stack_maker.cleanup()  # a fresh E2E job: nothing in the image store
    job = env_for(path, fake_tools, tmp_path, IMAGE_TAG="ci1")
    result = invoke(["e2e.setup", "--images-from", str(artifacts), "--output", "json"], job)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    outcomes = {s["id"]: s["outcome"] for s in report["steps"]}
    assert outcomes["image:a"] == outcomes["image:b"] == "present"
    refs = [f"localhost/{stack_maker.project}/{s}:ci1" for s in "ab"]
    assert invoke(["e2e.teardown"], job).returncode == 0
    assert all(image_exists(ref) for ref in refs)  # not built by this run: kept


def test_load_via_registry_wires_kinds_local_registry_pattern(stack_maker, fake_tools, tmp_path):
    path = stack_maker.write({"a": {}})
    env = env_for(path, fake_tools, tmp_path)
    result = invoke(["e2e.setup", "--load-via", "registry", "--dry-run"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    commands = [line.split("[dry-run] ", 1)[1] for line in result.stdout.splitlines() if "[dry-run] " in line]
    def first(prefix):
        return next(i for i, c in enumerate(commands) if prefix in c)
    run_registry = first("podman run -d --restart=always -p 127.0.0.1:5001:5000")
    push = first("podman push --tls-verify=false localhost:5001/")
    create = first("kind create cluster")
    hosts = first("cp /dev/stdin /etc/containerd/certs.d/localhost:5001/hosts.toml")
    connect = first("podman network connect kind kind-registry")
    deploy = max(i for i, c in enumerate(commands) if "kubectl" in c and "/rendered/a.yaml" in c)
    assert run_registry < push < deploy and create < hosts < connect < deploy
    assert not [c for c in commands if "kind load" in c or "podman save" in c]
    config_path = commands[create].split("--config ", 1)[1]
    assert 'config_path = \\"/etc/containerd/certs.d\\"' in open(config_path).read()
    rendered = next((tmp_path / "home").glob("runs/*/rendered/a.yaml")).read_text()
    assert f"image: localhost:5001/{stack_maker.project}/a:" in rendered
    assert "imagePullPolicy: IfNotPresent" in rendered
