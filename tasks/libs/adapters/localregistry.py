"""kind's local registry: a registry container beside the cluster, as kind's "Local Registry" guide
sets it up (site/static/examples/kind-with-registry.sh), for `--load-via registry`."""

from .. import render
from ..procs.runner import Runner


class LocalRegistry:
    """A registry container beside Kind, as kind's "Local Registry" guide sets it up
    (site/static/examples/kind-with-registry.sh)."""

    # The guide's container name, host port and image.
    DEFAULT_NAME, DEFAULT_PORT, DEFAULT_IMAGE = "kind-registry", 5001, "docker.io/library/registry:3"

    def __init__(
        self,
        runner: Runner,
        engine: str = "podman",
        name=DEFAULT_NAME,
        port=DEFAULT_PORT,
        image=DEFAULT_IMAGE,
        network="kind",
    ):
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
        self._run(
            "run",
            "-d",
            "--restart=always",
            "-p",
            f"127.0.0.1:{self.port}:5000",
            "--network",
            "bridge",
            "--name",
            self.name,
            self.image,
            log_path=log_path,
        )
        return "created"

    def connect(self, nodes, log_path=None) -> None:
        """Point each node's containerd at the registry, and put the registry on the cluster's network."""
        folder = f"/etc/containerd/certs.d/{self.host}"
        hosts = render.registry_hosts_toml(self.name)
        for node in nodes:
            self._run("exec", node, "mkdir", "-p", folder, log_path=log_path)
            self._run(
                "exec", "-i", node, "cp", "/dev/stdin", f"{folder}/hosts.toml", input=hosts, log_path=log_path
            )
        networks = self._run(
            "inspect", "-f", "{{json .NetworkSettings.Networks}}", self.name, check=False, mutating=False
        ).stdout
        if f'"{self.network}"' not in networks:
            self._run("network", "connect", self.network, self.name, log_path=log_path)
