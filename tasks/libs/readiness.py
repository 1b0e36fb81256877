"""Is a workload ready, still coming, or failed? Read from its object and its pods (pure).

Readiness means what `kubectl rollout status` means (k8s.io/kubectl
pkg/polymorphichelpers/rollout_status.go), and a Job is done when kubectl's
`wait --for=condition=complete` would be. Unlike kubectl, a failure ends the wait at
once: a pod the kubelet has given up on (ErrImageNeverPull, a crash loop, a missing
ConfigMap key, ...) or a failed Job would otherwise cost the whole ready timeout.
"""

from dataclasses import dataclass
from enum import Enum

# Waiting reasons the kubelet sets when a container cannot start without a change from
# outside (pkg/kubelet/images/types.go, kuberuntime/kuberuntime_container.go,
# kuberuntime/kuberuntime_manager.go).
FATAL_WAITING_REASONS = {
    "ErrImageNeverPull",
    "ImagePullBackOff",
    "ErrImagePull",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "InvalidImageName",
    "CreateContainerError",
}


class State(Enum):
    READY = "ready"
    WAITING = "waiting"
    FAILED = "failed"


@dataclass(frozen=True)
class Verdict:
    state: State
    message: str
    pod: str = ""  # the pod that failed, when one did
    reason: str = ""  # its waiting reason, or the Job's condition reason
    image: str = ""  # the image of the failing container


def workload(obj: dict) -> Verdict:
    """The rollout viewers' verdict on one object (Deployment, StatefulSet, DaemonSet, Job)."""
    kind, name = obj.get("kind"), (obj.get("metadata") or {}).get("name", "?")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation", 0)
    if kind == "Job":
        return _job(name, spec, status)
    observed = status.get("observedGeneration") or 0
    if kind == "StatefulSet":
        if observed == 0 or generation > observed:
            return Verdict(State.WAITING, f"statefulset {name}: waiting for the spec update to be observed")
        replicas = spec.get("replicas", 1)
        if (status.get("readyReplicas") or 0) < replicas:
            return Verdict(
                State.WAITING,
                f"statefulset {name}: {replicas - (status.get('readyReplicas') or 0)} pod(s) not ready",
            )
        rolling = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
        if "partition" in rolling:
            wanted = replicas - int(rolling["partition"] or 0)
            if (status.get("updatedReplicas") or 0) < wanted:
                return Verdict(
                    State.WAITING,
                    f"statefulset {name}: {status.get('updatedReplicas') or 0} of "
                    f"{wanted} new pods updated (partitioned roll out)",
                )
            return Verdict(State.READY, f"statefulset {name}: partitioned roll out complete")
        if status.get("updateRevision") != status.get("currentRevision"):
            return Verdict(
                State.WAITING, f"statefulset {name}: rolling update to {status.get('updateRevision')}"
            )
        return Verdict(State.READY, f"statefulset {name}: rolling update complete")
    if generation > observed:
        return Verdict(State.WAITING, f"{kind.lower()} {name}: waiting for the spec update to be observed")
    if kind == "DaemonSet":
        desired = status.get("desiredNumberScheduled") or 0
        if (status.get("updatedNumberScheduled") or 0) < desired:
            return Verdict(
                State.WAITING,
                f"daemonset {name}: {status.get('updatedNumberScheduled') or 0} of {desired} pods updated",
            )
        if (status.get("numberAvailable") or 0) < desired:
            return Verdict(
                State.WAITING,
                f"daemonset {name}: {status.get('numberAvailable') or 0} of {desired} pods available",
            )
        return Verdict(State.READY, f"daemonset {name}: rolled out")
    # Deployment
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return Verdict(
                State.FAILED,
                f"deployment {name} exceeded its progress deadline: {condition.get('message', '')}",
                reason="ProgressDeadlineExceeded",
            )
    replicas = spec.get("replicas", 1)
    updated, total = status.get("updatedReplicas") or 0, status.get("replicas") or 0
    available = status.get("availableReplicas") or 0
    if updated < replicas:
        return Verdict(State.WAITING, f"deployment {name}: {updated} of {replicas} new replicas updated")
    if total > updated:
        return Verdict(
            State.WAITING, f"deployment {name}: {total - updated} old replicas pending termination"
        )
    if available < updated:
        return Verdict(
            State.WAITING, f"deployment {name}: {available} of {updated} updated replicas available"
        )
    return Verdict(State.READY, f"deployment {name}: rolled out")


def _job(name, spec, status) -> Verdict:
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    if "Failed" in conditions:
        failed = conditions["Failed"]
        return Verdict(
            State.FAILED,
            f"job {name} failed: {failed.get('reason', '')}: {failed.get('message', '')}",
            reason=failed.get("reason", "Failed"),
        )
    if "Complete" in conditions:
        return Verdict(State.READY, f"job {name}: complete")
    completions = spec.get("completions", 1) or 1
    return Verdict(State.WAITING, f"job {name}: {status.get('succeeded') or 0} of {completions} completions")


def pods(items: list, owner_name: str = "") -> Verdict | None:
    """A failure the kubelet reports on one of these pods, or None."""
    for pod in items:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if meta.get("deletionTimestamp"):
            continue  # an old pod on its way out
        images = {
            c.get("name"): c.get("image", "")
            for c in ((pod.get("spec") or {}).get("initContainers") or [])
            + ((pod.get("spec") or {}).get("containers") or [])
        }
        for container in (status.get("initContainerStatuses") or []) + (
            status.get("containerStatuses") or []
        ):
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason, message = waiting.get("reason", ""), waiting.get("message", "")
            if reason not in FATAL_WAITING_REASONS:
                reason, message = _crash_loop(container)
            if reason:
                name = meta.get("name", "?")
                return Verdict(
                    State.FAILED,
                    f"pod {name}: container {container.get('name')}: {reason}: {message}".rstrip(": "),
                    pod=name,
                    reason=reason,
                    image=images.get(container.get("name"), ""),
                )
    return None


def _crash_loop(container: dict) -> tuple[str, str]:
    """("CrashLoopBackOff", detail) for a container that failed again after a restart, else ("", "").

    The kubelet backs a container off once it has exited and been restarted
    (pkg/kubelet/kuberuntime/kuberuntime_manager.go doBackOff), but the API mostly shows it as
    `terminated` with reason Error between restarts: `waiting: CrashLoopBackOff` appears only once
    the back-off outlasts the pod worker's resync (pod_workers.go completeWork). So a failure to
    run is read as `kubectl get pods` shows it: the container is down again, with a non-zero
    exit code, and RESTARTS is at least 1 (k8s.io/kubernetes pkg/printers/internalversion
    printers.go printPod). One crash that a restart cures is not a loop.
    """
    if (container.get("restartCount") or 0) < 1 or container.get("ready"):
        return "", ""
    terminated = (container.get("state") or {}).get("terminated")
    if not terminated or not terminated.get("exitCode"):
        return "", ""
    detail = f"exited with code {terminated['exitCode']} ({terminated.get('reason') or 'Error'}) "
    detail += f"after {container['restartCount']} restart(s)"
    if terminated.get("message"):
        detail += f": {terminated['message']}"
    return "CrashLoopBackOff", detail


def selector_of(obj: dict) -> str:
    """The label selector of a workload's pods, as kubectl -l takes it ("" when it has none)."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Job":
        uid = (obj.get("metadata") or {}).get("uid")
        return f"batch.kubernetes.io/controller-uid={uid}" if uid else ""
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
