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
        argv = ["kubectl"] + (["--kubeconfig", str(self.kubeconfig)] if self.kubeconfig else [])
        if self.context:
            argv += ["--context", self.context]
        return [*argv, *args]

    def run(self, *args, **options):
        return self.runner.run(self._argv(*args), **options)

    def apply(self, path, namespace, log_path=None, timeout=None):
        return self.run("apply", "-n", namespace, "-f", str(path), log_path=log_path, timeout=timeout)

    def apply_file(self, path, log_path=None, timeout=None):
        """Apply objects that name their own namespace (or none: cluster-scoped)."""
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
        resource = {"Job": "job", **WORKLOAD_KINDS}[kind]
        result = self.run("get", resource, name, "-n", namespace, "-o", "json", check=False,
                          mutating=False, timeout=30)
        if result.exit_code != 0:
            return False
        try:
            return workload_ready(json.loads(result.stdout))
        except ValueError:
            return False

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


def workload_ready(obj: dict) -> bool:
    """The conditions `kubectl rollout status` waits for, read from one object's status
    (kubectl's rollout status viewers, k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go)."""
    kind, spec, status = obj.get("kind"), obj.get("spec") or {}, obj.get("status") or {}
    if kind == "Job":
        return any(c.get("type") == "Complete" and c.get("status") == "True"
                   for c in status.get("conditions") or []) or (status.get("succeeded") or 0) >= 1
    generation = (obj.get("metadata") or {}).get("generation", 0)
    if (status.get("observedGeneration") or 0) < generation:
        return False
    if kind == "DaemonSet":
        desired = status.get("desiredNumberScheduled", 0)
        return status.get("updatedNumberScheduled", 0) >= desired and status.get("numberAvailable", 0) >= desired
    replicas = spec.get("replicas", 1)
    if kind == "StatefulSet":
        return (status.get("readyReplicas") or 0) >= replicas and \
            status.get("currentRevision") == status.get("updateRevision")
    return ((status.get("updatedReplicas") or 0) >= replicas and (status.get("availableReplicas") or 0) >= replicas
            and (status.get("replicas") or 0) <= replicas)
