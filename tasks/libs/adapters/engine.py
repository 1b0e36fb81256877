"""The container engine adapter (podman, or docker): thin argument lists, nothing else."""

import json

from ..errors import CommandFailed, KindlingError
from ..procs.runner import Runner

DIGEST_LABEL = "io.kindling.inputs-digest"
STACK_LABEL = "io.kindling.stack"


class Engine:
    def __init__(self, runner: Runner, program: str = "podman"):
        self.runner = runner
        self.program = program

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
            if self.program != "podman":
                raise KindlingError(f"{self.program} build cannot be given an ignore file: it needs podman")
            argv += ["--ignorefile", str(ignore_file)]
        if mounts and self.program != "podman":
            raise KindlingError(
                f"{self.program} build cannot mount folders into RUN steps: build caches "
                "and mounts need podman"
            )
        for host, path, *options in mounts:
            # U: before each RUN step, podman (buildah's runSetupVolumeMounts, run_linux.go) chowns the
            # host folder recursively to that step's user (pkg/chown ChangeHostPathOwnership), so a
            # builder running as uid 1001 can write. z: a shared SELinux label; without SELinux a no-op.
            # A read-only mount of the user's own folder gets neither: it must stay as it is.
            argv += ["--volume", f"{host}:{path}:{options[0] if options else 'U,z'}"]
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

    def image_exists(self, ref) -> bool:
        if self.program == "podman":
            return self._run("image", "exists", ref, check=False, mutating=False).exit_code == 0
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
        engine cannot list them so (docker's `images` output has no labels), and the callers ask
        image by image."""
        if self.program != "podman":
            return None
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

    def save(self, ref, tar_path, log_path=None, timeout=None):
        return self._run("save", "-o", str(tar_path), ref, log_path=log_path, timeout=timeout)

    def save_argv(self, ref) -> list:
        """`save REF` with the archive on stdout (both engines write it there when stdout is not a
        terminal), for Runner.pipe: no archive on disk."""
        return [self.program, "save", ref]

    def push(self, ref, tls_verify=True, log_path=None, timeout=None):
        argv = ["push"]
        if self.program == "podman":
            argv.append(f"--tls-verify={'true' if tls_verify else 'false'}")
        return self._run(*argv, ref, log_path=log_path, timeout=timeout)

    def load_archive(self, tar_path, timeout=None) -> list:
        """`podman load -i TAR`; returns the references it loaded."""
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
