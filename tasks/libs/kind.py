"""A Kind cluster: idempotent ensure/create/load/delete, its own kubeconfig file.

kind must be told the provider on every call: on a host with both Docker and
Podman it silently picks Docker otherwise ("no nodes found"; kind docs,
"Using Podman": KIND_EXPERIMENTAL_PROVIDER=podman).
"""

import os
import re
import time

from . import images, render
from .errors import CommandFailed, KindlingError
from .procs import Runner

# Podman-provider failures that go away on a retry: the podman service restarting
# ("server probably quit", exit 125) and port or network races while nodes start.
TRANSIENT_CREATE_ERRORS = re.compile(
    r"exit status 125|server probably quit|address already in use|"
    r"could not find a log line|failed to init node|context deadline exceeded", re.I)


class KindCluster:
    def __init__(self, name, kubeconfig, runner: Runner, engine: str = "podman", wait="60s",
                 create_attempts=3, retry_delay=2.0):
        self.name = name
        self.kubeconfig = kubeconfig
        self.runner = runner
        self.engine = engine
        self.wait = wait
        self.create_attempts = create_attempts
        self.retry_delay = retry_delay

    @property
    def env(self) -> dict:
        return {"KIND_EXPERIMENTAL_PROVIDER": self.engine} if self.engine == "podman" else {}

    def _kind(self, *args, **options):
        return self.runner.run(["kind", *args], env=self.env, **options)

    def exists(self) -> bool:
        out = self._kind("get", "clusters", mutating=False).stdout
        return self.name in out.split()

    def create(self, config=None, log_path=None, timeout=None) -> None:
        argv = ["create", "cluster", "--name", self.name, "--kubeconfig", str(self.kubeconfig),
                "--wait", self.wait]
        if config:
            argv += ["--config", str(config)]
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, self.create_attempts + 1):
            try:
                self._kind(*argv, log_path=log_path, timeout=timeout)
                break
            except CommandFailed as exc:
                # Nodes left by a creation that was killed halfway: `get clusters` did not list the
                # cluster, yet create finds its nodes. Removing them is what `kind delete` is for.
                leftover = "already exist for a cluster" in (exc.tail or "")
                transient = TRANSIENT_CREATE_ERRORS.search(exc.tail or "") or leftover
                if not transient or attempt == self.create_attempts:
                    raise
                # A half-created cluster would make the retry fail with "already exist".
                self._kind("delete", "cluster", "--name", self.name, check=False, log_path=log_path)
                time.sleep(self.retry_delay * attempt)
        self._protect_kubeconfig()

    def ensure(self, config=None, log_path=None, timeout=None) -> str:
        """Create the cluster unless it exists; always leave a kubeconfig file. Returns what happened."""
        if self.exists():
            if not self.runner.dry_run and not self.kubeconfig.exists():
                self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
                self._kind("export", "kubeconfig", "--name", self.name, "--kubeconfig", str(self.kubeconfig))
                self._protect_kubeconfig()
            return "exists"
        self.create(config, log_path, timeout)
        return "created"

    def _protect_kubeconfig(self):
        if self.kubeconfig.exists():
            os.chmod(self.kubeconfig, 0o600)

    def delete(self, log_path=None) -> None:
        self._kind("delete", "cluster", "--name", self.name, "--kubeconfig", str(self.kubeconfig),
                   log_path=log_path)

    def nodes(self) -> list:
        return self._kind("get", "nodes", "--name", self.name, mutating=False).stdout.split()

    def load_archive(self, tar_path, log_path=None, timeout=None) -> None:
        self._kind("load", "image-archive", str(tar_path), "--name", self.name,
                   log_path=log_path, timeout=timeout)

    def node_images(self, engine) -> dict:
        """node name -> set of normalised image names the node's containerd holds.

        kind's docs ("Loading an Image Into Your Cluster") check a node with
        `docker exec <node> crictl images`; the JSON form lists repoTags.
        """
        result = {}
        for node in self.nodes():
            data = engine.exec_json(node, ["crictl", "images", "-o", "json"])
            names = set()
            for image in data.get("images", []):
                for tag in image.get("repoTags") or []:
                    try:
                        names.add(images.normalize(tag))
                    except images.BadReference:
                        continue
            result[node] = names
        return result

    def has_image(self, engine, ref) -> bool:
        wanted = images.normalize(ref)
        holdings = self.node_images(engine)
        return bool(holdings) and all(wanted in names for names in holdings.values())

    def verify_loaded(self, engine, ref) -> None:
        wanted = images.normalize(ref)
        missing = [node for node, names in self.node_images(engine).items() if wanted not in names]
        if missing:
            raise KindlingError(
                f"kind reported success loading {ref}, but node(s) {', '.join(missing)} do not hold "
                f"{wanted}: the manifests would fail with ErrImageNeverPull. Check that the archive "
                "was saved from this exact reference (podman save -o TAR REF).")

    def export_logs(self, folder, log_path=None) -> None:
        self._kind("export", "logs", str(folder), "--name", self.name, log_path=log_path, check=False)


class LocalRegistry:
    """A registry container beside Kind, as kind's "Local Registry" guide sets it up."""

    def __init__(self, runner: Runner, engine: str = "podman", name="kind-registry", port=5001,
                 image="docker.io/library/registry:2", network="kind"):
        self.runner, self.engine, self.name, self.port = runner, engine, name, int(port)
        self.image, self.network = image, network

    @property
    def host(self) -> str:
        return f"localhost:{self.port}"

    def _run(self, *args, **options):
        return self.runner.run([self.engine, *args], **options)

    def ensure(self, log_path=None) -> str:
        state = self._run("inspect", "-f", "{{.State.Running}}", self.name, check=False, mutating=False)
        if state.exit_code == 0 and state.stdout.strip() == "true":
            return "running"
        if state.exit_code == 0:
            self._run("start", self.name, log_path=log_path)
            return "started"
        self._run("run", "-d", "--restart=always", "-p", f"127.0.0.1:{self.port}:5000", "--network", "bridge",
                  "--name", self.name, self.image, log_path=log_path)
        return "created"

    def connect(self, nodes, log_path=None) -> None:
        """Point each node's containerd at the registry, and put the registry on the cluster's network."""
        folder = f"/etc/containerd/certs.d/{self.host}"
        hosts = render.registry_hosts_toml(self.name)
        for node in nodes:
            self._run("exec", node, "mkdir", "-p", folder, log_path=log_path)
            self._run("exec", "-i", node, "cp", "/dev/stdin", f"{folder}/hosts.toml", input=hosts,
                      log_path=log_path)
        networks = self._run("inspect", "-f", "{{json .NetworkSettings.Networks}}", self.name, check=False,
                             mutating=False).stdout
        if f'"{self.network}"' not in networks:
            self._run("network", "connect", self.network, self.name, log_path=log_path)
