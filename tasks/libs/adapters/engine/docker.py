"""docker: builds with BuildKit, which takes no ignore file on its command line and mounts no host
folder into RUN steps, so a stack with build caches or mounts needs podman."""

from pathlib import Path

from .base import Engine


class Docker(Engine):
    program = "docker"
    kind_network_variable = "KIND_EXPERIMENTAL_DOCKER_NETWORK"

    @classmethod
    def ignore_files(cls, containerfile, context):
        # BuildKit: <Dockerfile>.dockerignore beside the Dockerfile, else the context's .dockerignore.
        return [Path(f"{containerfile}.dockerignore"), Path(context) / ".dockerignore"]

    @classmethod
    def config_files(cls, env):
        """The daemon's daemon.json and the client's config.json."""
        home = Path(env.get("HOME") or "~").expanduser()
        client = Path(env.get("DOCKER_CONFIG") or home / ".docker")
        return [Path("/etc/docker/daemon.json"), client / "config.json"]

    @classmethod
    def cgroup_version(cls, info):
        reported = "v" + str(info.get("CgroupVersion") or "")
        return reported if reported in ("v1", "v2") else ""
