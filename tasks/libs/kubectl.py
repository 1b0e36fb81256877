"""kubectl adapter: always with the cluster's own kubeconfig."""

import json

from .procs import Runner

WORKLOAD_KINDS = {"Deployment": "deployment", "StatefulSet": "statefulset", "DaemonSet": "daemonset"}


class Kubectl:
    def __init__(self, kubeconfig, runner: Runner, context=None):
        self.kubeconfig = kubeconfig
        self.runner = runner
        self.context = context

    def _argv(self, *args):
        argv = ["kubectl", "--kubeconfig", str(self.kubeconfig)]
        if self.context:
            argv += ["--context", self.context]
        return [*argv, *args]

    def run(self, *args, **options):
        return self.runner.run(self._argv(*args), **options)

    def apply(self, path, namespace, log_path=None, timeout=None):
        return self.run("apply", "-n", namespace, "-f", str(path), log_path=log_path, timeout=timeout)

    def ensure_namespace(self, path, log_path=None, timeout=None):
        return self.run("apply", "-f", str(path), log_path=log_path, timeout=timeout)

    def delete(self, kind, name, namespace, log_path=None):
        return self.run("delete", kind, name, "-n", namespace, "--ignore-not-found", "--wait=true",
                        "--timeout=120s", log_path=log_path, timeout=150)

    def wait_crd_established(self, name, timeout, log_path=None):
        return self.run("wait", "--for=condition=Established", f"customresourcedefinition/{name}",
                        f"--timeout={int(timeout)}s", log_path=log_path, timeout=timeout + 30)

    def rollout_status(self, kind, name, namespace, timeout, log_path=None):
        return self.run("rollout", "status", f"{WORKLOAD_KINDS[kind]}/{name}", "-n", namespace,
                        f"--timeout={int(timeout)}s", log_path=log_path, timeout=timeout + 30)

    def wait_job_complete(self, name, namespace, timeout, log_path=None):
        return self.run("wait", "--for=condition=complete", f"job/{name}", "-n", namespace,
                        f"--timeout={int(timeout)}s", log_path=log_path, timeout=timeout + 30)

    def is_ready(self, kind, name, namespace) -> bool:
        """A quick, read-only readiness check (used to decide whether a deploy can be skipped)."""
        if kind == "Job":
            result = self.run("get", "job", name, "-n", namespace, "-o", "json", check=False,
                              mutating=False, timeout=30)
            if result.exit_code != 0:
                return False
            return (json.loads(result.stdout).get("status") or {}).get("succeeded", 0) >= 1
        result = self.run("rollout", "status", f"{WORKLOAD_KINDS[kind]}/{name}", "-n", namespace,
                          "--timeout=1s", check=False, mutating=False, timeout=30)
        return result.exit_code == 0

    def diagnostics(self, namespace) -> dict:
        """Read-only views a person needs after a failed wait; file name -> text."""
        views = {
            "pods.txt": ("get", "pods", "-n", namespace, "-o", "wide"),
            "describe-pods.txt": ("describe", "pods", "-n", namespace),
            "events.txt": ("get", "events", "-n", namespace, "--sort-by=.lastTimestamp"),
            "workloads.yaml": ("get", "deployments,statefulsets,jobs", "-n", namespace, "-o", "yaml"),
        }
        out = {}
        for name, args in views.items():
            result = self.run(*args, check=False, mutating=False, timeout=60)
            out[name] = result.stdout
        return out

    def logs(self, kind, name, namespace) -> str:
        return self.run("logs", f"{WORKLOAD_KINDS.get(kind, kind.lower())}/{name}", "-n", namespace,
                        "--all-containers", "--tail", "200", check=False, mutating=False, timeout=60).stdout
