"""podman: kindling's default engine, and the one its tests run."""

import json
from pathlib import Path

from .base import Engine


class Podman(Engine):
    program = "podman"
    takes_ignore_file = True
    mounts_in_build = True
    info_format = "json"
    kind_network_variable = "KIND_EXPERIMENTAL_PODMAN_NETWORK"

    @classmethod
    def ignore_files(cls, containerfile, context):
        # buildah's pkg/parse/parse.go ContainerIgnoreFile.
        return [
            Path(f"{containerfile}.dockerignore"),
            Path(f"{containerfile}.containerignore"),
            Path(context) / ".containerignore",
            Path(context) / ".dockerignore",
        ]

    @classmethod
    def config_files(cls, env):
        """containers.conf(5) and containers-storage.conf(5), with their .d folders."""
        home = Path(env.get("HOME") or "~").expanduser()
        user = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
        files = []
        for folder in (Path("/usr/share/containers"), Path("/etc/containers"), user / "containers"):
            files += [folder / "containers.conf", folder / "storage.conf", folder / "containers.conf.d"]
        files += [
            Path(env[k])
            for k in ("CONTAINERS_CONF", "CONTAINERS_CONF_OVERRIDE", "CONTAINERS_STORAGE_CONF")
            if env.get(k)
        ]
        return files

    @classmethod
    def cgroup_version(cls, info):
        reported = str((info.get("host") or {}).get("cgroupVersion") or "")
        return reported if reported in ("v1", "v2") else ""

    def ignore_file_options(self, ignore_file):
        return ["--ignorefile", str(ignore_file)]

    def mount_options(self, host, path, *options):
        # U: before each RUN step, podman (buildah's runSetupVolumeMounts, run_linux.go) chowns the
        # host folder recursively to that step's user (pkg/chown ChangeHostPathOwnership), so a
        # builder running as uid 1001 can write. z: a shared SELinux label; without SELinux a no-op.
        # A read-only mount of the user's own folder gets neither: it must stay as it is.
        return ["--volume", f"{host}:{path}:{options[0] if options else 'U,z'}"]

    def image_exists(self, ref) -> bool:
        return self._run("image", "exists", ref, check=False, mutating=False).exit_code == 0

    def list_images(self):
        for _ in range(3):
            # podman lists, then inspects each image; one removed in between (another build's
            # cleanup) fails the whole listing with "image not known". Listing again is enough.
            result = self._run("images", "--format", "json", mutating=False, timeout=120, check=False)
            if result.exit_code == 0:
                break
        else:
            return None
        try:
            listed = json.loads(result.stdout or "[]")
        except ValueError:
            return None
        return [
            (tuple(i.get("Names") or ()), dict(i.get("Labels") or {}), i.get("Created") or 0) for i in listed
        ]

    def push_options(self, tls_verify):
        return [f"--tls-verify={'true' if tls_verify else 'false'}"]
