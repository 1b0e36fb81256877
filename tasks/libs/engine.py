"""The container engine adapter (podman, or docker): thin argument lists, nothing else."""

import json

from .errors import CommandFailed
from .procs import Runner

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

    def build(self, ref, containerfile, context, *, args=None, target="", labels=None,
              no_cache=False, log_path=None, timeout=None):
        argv = ["build", "-t", ref, "-f", str(containerfile)]
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
        out = self._run("images", "--filter", f"label={label}={value}", "--filter",
                        f"reference={repository}", "--format", "{{.Repository}}:{{.Tag}}",
                        mutating=False).stdout
        return [line for line in out.split() if line and not line.endswith(":<none>")]

    def save(self, ref, tar_path, log_path=None, timeout=None):
        return self._run("save", "-o", str(tar_path), ref, log_path=log_path, timeout=timeout)

    def push(self, ref, tls_verify=True, log_path=None, timeout=None):
        argv = ["push"]
        if self.program == "podman":
            argv.append(f"--tls-verify={'true' if tls_verify else 'false'}")
        return self._run(*argv, ref, log_path=log_path, timeout=timeout)

    def load_archive(self, tar_path, timeout=None) -> list:
        """`podman load -i TAR`; returns the references it loaded."""
        # Output captured, not logged: "Loaded image(s): REF[, REF...]" names what this archive held.
        out = self._run("load", "-i", str(tar_path), timeout=timeout).stdout
        return [ref.strip() for line in out.splitlines() if line.startswith("Loaded image")
                for ref in line.split(":", 1)[1].split(",") if ref.strip()]

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
            raise CommandFailed(f"{self.program} exec {container} {' '.join(argv)}", 0,
                                result.stdout[-2000:], reason="output is not JSON")
