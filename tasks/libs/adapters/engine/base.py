"""What every container engine is to kindling: its commands as thin argument lists, and the facts
kindling needs of it without running anything. One subclass per engine, each in a module of its
own (podman.py, docker.py), listed in ENGINES (__init__.py); nothing else asks which engine it is."""

import json
from pathlib import Path

from ...errors import CommandFailed, KindlingError
from ...procs.runner import Runner

DIGEST_LABEL = "io.kindling.inputs-digest"
STACK_LABEL = "io.kindling.stack"


class Engine:
    program = ""  # the command
    takes_ignore_file = False  # `build` reads an ignore file named on its command line
    mounts_in_build = False  # `build` mounts host folders into every RUN step (build caches, mounts)
    info_format = "{{json .}}"  # `info --format` for JSON, as kind's provider asks it
    kind_network_variable = ""  # the variable that names kind's network (kind's provider.go)

    def __init__(self, runner: Runner):
        self.runner = runner

    @classmethod
    def ignore_files(cls, containerfile: Path, context: Path) -> list:
        """The files a build reads its ignore rules from, the first that exists winning."""
        return []

    @classmethod
    def config_files(cls, env) -> list:
        """Where the engine reads its configuration: a change there may change `info`."""
        return []

    @classmethod
    def cgroup_version(cls, info: dict) -> str:
        """The host's cgroup version as `info` reports it, "v1" or "v2"; "" when it does not say."""
        return ""

    def _run(self, *args, **options):
        return self.runner.run([self.program, *args], **options)

    def version(self) -> str:
        return self._run("version", "--format", "{{.Client.Version}}", mutating=False).stdout.strip()

    def build(
        self,
        ref,
        containerfile,
        context,
        *,
        args=None,
        target="",
        labels=None,
        no_cache=False,
        mounts=(),
        ignore_file=None,
        log_path=None,
        timeout=None,
    ):
        """mounts: (host folder, path in the build) pairs, build caches, mounted into every RUN step
        (podman only); or (host, path, options) triples, e.g. options "ro" for a read-only mount.
        ignore_file: read instead of the context's ignore file (podman's --ignorefile)."""
        argv = ["build", "-t", ref, "-f", str(containerfile)]
        if ignore_file:
            if not self.takes_ignore_file:
                raise KindlingError(f"{self.program} build cannot be given an ignore file: it needs podman")
            argv += self.ignore_file_options(ignore_file)
        if mounts and not self.mounts_in_build:
            raise KindlingError(
                f"{self.program} build cannot mount folders into RUN steps: build caches "
                "and mounts need podman"
            )
        for mount in mounts:
            argv += self.mount_options(*mount)
        for key, value in (args or {}).items():
            argv += ["--build-arg", f"{key}={value}"]
        if target:
            argv += ["--target", target]
        for key, value in (labels or {}).items():
            argv += ["--label", f"{key}={value}"]
        if no_cache:
            argv.append("--no-cache")
        argv.append(str(context))
        return self._run(*argv, log_path=log_path, timeout=timeout)

    def ignore_file_options(self, ignore_file) -> list:
        raise NotImplementedError

    def mount_options(self, host, path, *options) -> list:
        raise NotImplementedError

    def image_exists(self, ref) -> bool:
        return self._run("image", "inspect", ref, check=False, mutating=False).exit_code == 0

    def find_by_label(self, repository, label, value) -> list:
        """References of images in `repository` whose label has this value, newest first."""
        out = self._run(
            "images",
            "--filter",
            f"label={label}={value}",
            "--filter",
            f"reference={repository}",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            mutating=False,
        ).stdout
        return [line for line in out.split() if line and not line.endswith(":<none>")]

    def list_images(self) -> list | None:
        """Every image in the store as (names, labels, created), in one command; None when the
        engine cannot list them so, and the callers ask image by image."""
        return None

    def save(self, ref, tar_path, log_path=None, timeout=None):
        return self._run("save", "-o", str(tar_path), ref, log_path=log_path, timeout=timeout)

    def save_argv(self, ref) -> list:
        """`save REF` with the archive on stdout (both engines write it there when stdout is not a
        terminal), for Runner.pipe: no archive on disk."""
        return [self.program, "save", ref]

    def push(self, ref, tls_verify=True, log_path=None, timeout=None):
        return self._run("push", *self.push_options(tls_verify), ref, log_path=log_path, timeout=timeout)

    def push_options(self, tls_verify: bool) -> list:
        """docker has no per-command TLS switch: its daemon's insecure-registries decide."""
        return []

    def load_archive(self, tar_path, timeout=None) -> list:
        """`load -i TAR`; returns the references it loaded."""
        # Output captured, not logged: "Loaded image(s): REF[, REF...]" names what this archive held.
        out = self._run("load", "-i", str(tar_path), timeout=timeout).stdout
        return [
            ref.strip()
            for line in out.splitlines()
            if line.startswith("Loaded image")
            for ref in line.split(":", 1)[1].split(",")
            if ref.strip()
        ]

    def pull(self, ref, log_path=None, timeout=None):
        return self._run("pull", ref, log_path=log_path, timeout=timeout)

    def remove_images(self, refs) -> list:
        """Remove exactly these references; returns the ones that could not be removed."""
        failed = []
        for ref in refs:
            if self._run("rmi", ref, check=False).exit_code != 0 and self.image_exists(ref):
                failed.append(ref)
        return failed

    def exec_json(self, container, argv):
        result = self._run("exec", container, *argv, mutating=False)
        try:
            return json.loads(result.stdout)
        except ValueError:
            raise CommandFailed(
                f"{self.program} exec {container} {' '.join(argv)}",
                0,
                result.stdout[-2000:],
                reason="output is not JSON",
            )
