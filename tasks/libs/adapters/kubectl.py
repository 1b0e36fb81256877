"""kubectl adapter: always with the cluster's own kubeconfig."""

import json
import time

from .. import readiness
from ..errors import NotReady
from ..procs.runner import Runner

# A tight bounded poll: a dependant starts within this long of its dependency being ready.
READY_POLL_SECONDS = 0.5

# The resource name kubectl takes for each kind whose readiness a deploy waits for.
RESOURCES = {"Deployment": "deployment", "StatefulSet": "statefulset", "DaemonSet": "daemonset", "Job": "job"}


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

    def apply(self, path, log_path=None, timeout=None):
        """Apply objects that name their own namespace (render.render makes every namespace
        explicit). No -n: kubectl refuses an object whose namespace differs from the flag's."""
        return self.run("apply", "-f", str(path), log_path=log_path, timeout=timeout)

    def delete(
        self, kind, name, namespace, log_path=None, cascade="background", wait_seconds=120, check=True
    ):
        """Delete and wait up to wait_seconds for it to be gone; namespace "" for a cluster-scoped object."""
        return self.run(
            "delete",
            kind,
            name,
            *(["-n", namespace] if namespace else []),
            "--ignore-not-found",
            "--wait=true",
            f"--cascade={cascade}",
            f"--timeout={wait_seconds}s",
            log_path=log_path,
            timeout=wait_seconds + 30,
            check=check,
        )

    def delete_pods(self, selector, namespace, log_path=None):
        """Delete the pods the selector picks, without waiting: their controller makes new ones."""
        return self.run(
            "delete", "pods", "-l", selector, "-n", namespace, "--wait=false", log_path=log_path, timeout=60
        )

    def api_problem(self) -> str | None:
        """Why the API server cannot be used, or None: its /readyz answered ok."""
        ready = self.run(
            "get", "--raw", "/readyz", "--request-timeout=10s", check=False, mutating=False, timeout=30
        )
        if ready.exit_code == 0:
            return None
        detail = (ready.stderr or ready.stdout).strip().splitlines()[-1:] or ["no answer"]
        return f"its API server does not answer /readyz ({detail[0][:200]})"

    def wait_api_ready(self, timeout) -> str | None:
        """Poll /readyz until the API server answers ok; why it did not (api_problem) after timeout s."""
        deadline = time.monotonic() + timeout
        while True:
            problem = self.api_problem()
            if problem is None or time.monotonic() >= deadline or self.runner.stopping:
                return problem
            time.sleep(1.0)

    def wait_crd_established(self, name, timeout, log_path=None):
        return self.run(
            "wait",
            "--for=condition=Established",
            f"customresourcedefinition/{name}",
            f"--timeout={int(timeout)}s",
            log_path=log_path,
            timeout=timeout + 30,
        )

    def get_json(self, resource, namespace, *args, timeout=30):
        """One object or list as JSON; None when it cannot be read (absent, or the server refused)."""
        result = self.run(
            "get",
            resource,
            *args,
            "-n",
            namespace,
            "-o",
            "json",
            check=False,
            mutating=False,
            timeout=timeout,
        )
        if result.exit_code != 0:
            return None
        try:
            return json.loads(result.stdout)
        except ValueError:
            return None

    def wait_ready(self, kind, name, namespace, timeout, log_path=None) -> readiness.Verdict:
        """Wait until the workload is ready as `kubectl rollout status` (or a Job's Complete
        condition) means it; stop at once when it or one of its pods has failed."""
        resource = RESOURCES[kind]
        deadline = time.monotonic() + timeout
        verdict = readiness.Verdict(readiness.State.WAITING, f"{resource} {name}: not found yet")
        while True:
            obj = self.get_json(f"{resource}/{name}", namespace)
            if obj is not None:
                verdict = readiness.workload(obj)
                if verdict.state == readiness.State.READY:
                    return verdict
                selector = readiness.selector_of(obj)
                pods = self.get_json("pods", namespace, "-l", selector) if selector else None
                failed = readiness.pods((pods or {}).get("items") or [])
                if verdict.state == readiness.State.FAILED or failed:
                    verdict = failed or verdict
                    raise NotReady(verdict.message, verdict)
            if time.monotonic() >= deadline:
                raise NotReady(f"not ready after {timeout:g} s: {verdict.message}", verdict)
            time.sleep(READY_POLL_SECONDS)

    def diagnostics(self, namespace) -> dict:
        """Read-only views a person needs after a failed wait; file name -> text."""
        views = {
            "pods.txt": ("get", "pods", "-n", namespace, "-o", "wide"),
            "describe-pods.txt": ("describe", "pods", "-n", namespace),
            # `kubectl events` orders by the newest of eventTime, lastTimestamp and firstTimestamp;
            # --sort-by=.lastTimestamp misorders events.k8s.io events, whose lastTimestamp is empty.
            "events.txt": ("events", "-n", namespace),
            "workloads.yaml": ("get", "deployments,statefulsets,jobs", "-n", namespace, "-o", "yaml"),
        }
        out = {}
        for name, args in views.items():
            result = self.run(*args, check=False, mutating=False, timeout=60)
            out[name] = result.stdout + (f"\n[stderr]\n{result.stderr}" if result.stderr.strip() else "")
        return out

    def logs(self, kind, name, namespace) -> str:
        """Logs of every pod of the workload, not the one `kubectl logs deployment/x` picks (often a
        healthy old pod). A container that never started has no log: kubectl says why on stderr
        ("... is waiting to start: ErrImageNeverPull"), which is kept."""
        resource = RESOURCES.get(kind, kind.lower())
        obj = self.get_json(f"{resource}/{name}", namespace)
        selector = readiness.selector_of(obj) if obj else ""
        pods = (self.get_json("pods", namespace, "-l", selector) or {}).get("items", []) if selector else []
        parts = []
        for pod in pods:
            pod_name = pod["metadata"]["name"]
            restarted = any(
                c.get("restartCount") for c in (pod.get("status") or {}).get("containerStatuses") or []
            )
            for previous in [False, True] if restarted else [False]:
                args = ["logs", pod_name, "-n", namespace, "--all-containers", "--tail", "200"]
                args += ["--previous"] if previous else []
                result = self.run(*args, check=False, mutating=False, timeout=60)
                title = f"=== pod {pod_name}{' (previous containers)' if previous else ''}"
                parts.append(f"{title}\n{result.stdout}{result.stderr}")
        return "\n".join(parts) or f"no pods of {resource}/{name} in {namespace}\n"
