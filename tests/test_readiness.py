"""Readiness as kubectl's rollout viewers mean it, and failures that end the wait at once (pure)."""

import pytest

from tasks.libs.readiness import State, pods, selector_of, workload


def deployment(wanted=1, generation=1, observed=1, **status):
    """A Deployment asking for `wanted` replicas, with this status (replicas= is the live count)."""
    return {
        "kind": "Deployment",
        "metadata": {"name": "d", "generation": generation},
        "spec": {"replicas": wanted},
        "status": {"observedGeneration": observed, **status},
    }


@pytest.mark.parametrize(
    "obj,state",
    [
        (deployment(wanted=2, replicas=2, updatedReplicas=2, availableReplicas=2), State.READY),
        (deployment(generation=3, observed=2, updatedReplicas=1, availableReplicas=1), State.WAITING),
        # An old replica still terminating: kubectl waits for it (rollout_status.go).
        (deployment(replicas=2, updatedReplicas=1, availableReplicas=1), State.WAITING),
        (deployment(wanted=2, replicas=1, updatedReplicas=1, availableReplicas=1), State.WAITING),
        (deployment(replicas=1, updatedReplicas=1, availableReplicas=0), State.WAITING),
        (
            deployment(
                updatedReplicas=0,
                conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
            ),
            State.FAILED,
        ),
        (
            {
                "kind": "StatefulSet",
                "metadata": {"generation": 1},
                "spec": {"replicas": 1},
                "status": {
                    "observedGeneration": 1,
                    "readyReplicas": 1,
                    "currentRevision": "r1",
                    "updateRevision": "r1",
                },
            },
            State.READY,
        ),
        (
            {
                "kind": "StatefulSet",
                "metadata": {"generation": 1},
                "spec": {"replicas": 1},
                "status": {
                    "observedGeneration": 1,
                    "readyReplicas": 1,
                    "currentRevision": "r1",
                    "updateRevision": "r2",
                },
            },
            State.WAITING,
        ),
        # Never observed: kubectl waits (observedGeneration 0).
        (
            {
                "kind": "StatefulSet",
                "metadata": {"generation": 1},
                "spec": {"replicas": 1},
                "status": {"readyReplicas": 1, "currentRevision": "r1", "updateRevision": "r1"},
            },
            State.WAITING,
        ),
        # The default partition (0) means every pod must be updated.
        (
            {
                "kind": "StatefulSet",
                "metadata": {"generation": 1},
                "spec": {"replicas": 3, "updateStrategy": {"rollingUpdate": {"partition": 0}}},
                "status": {"observedGeneration": 1, "readyReplicas": 3, "updatedReplicas": 2},
            },
            State.WAITING,
        ),
        (
            {
                "kind": "StatefulSet",
                "metadata": {"generation": 1},
                "spec": {"replicas": 3, "updateStrategy": {"rollingUpdate": {"partition": 1}}},
                "status": {"observedGeneration": 1, "readyReplicas": 3, "updatedReplicas": 2},
            },
            State.READY,
        ),
        (
            {
                "kind": "Job",
                "metadata": {"name": "j"},
                "spec": {"completions": 2},
                "status": {"succeeded": 1},
            },
            State.WAITING,
        ),
        (
            {
                "kind": "Job",
                "metadata": {"name": "j"},
                "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
            },
            State.READY,
        ),
        (
            {
                "kind": "Job",
                "metadata": {"name": "j"},
                "status": {
                    "failed": 1,
                    "conditions": [
                        {
                            "type": "Failed",
                            "status": "True",
                            "reason": "BackoffLimitExceeded",
                            "message": "Job has reached the specified backoff limit",
                        }
                    ],
                },
            },
            State.FAILED,
        ),
        (
            {
                "kind": "DaemonSet",
                "metadata": {"generation": 1},
                "status": {
                    "observedGeneration": 1,
                    "desiredNumberScheduled": 1,
                    "updatedNumberScheduled": 1,
                    "numberAvailable": 1,
                },
            },
            State.READY,
        ),
        (
            {
                "kind": "DaemonSet",
                "metadata": {"generation": 1},
                "status": {
                    "observedGeneration": 1,
                    "desiredNumberScheduled": 2,
                    "updatedNumberScheduled": 2,
                    "numberAvailable": 1,
                },
            },
            State.WAITING,
        ),
    ],
)
def test_workload_verdicts_follow_kubectls_rollout_viewers(obj, state):
    assert workload(obj).state is state


def pod(name, reason, message="", deleting=False, init=False):
    status_key = "initContainerStatuses" if init else "containerStatuses"
    meta = {"name": name, **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {})}
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": "c", "image": "localhost/p/c:1"}]},
        "status": {status_key: [{"name": "c", "state": {"waiting": {"reason": reason, "message": message}}}]},
    }


def test_a_pod_the_kubelet_gave_up_on_fails_the_wait():
    verdict = pods(
        [
            pod("ok", "ContainerCreating"),
            pod(
                "bad",
                "ErrImageNeverPull",
                'Container image "localhost/p/c:1" is not present with pull policy of Never',
            ),
        ]
    )
    assert verdict.state is State.FAILED and verdict.pod == "bad" and verdict.reason == "ErrImageNeverPull"
    assert verdict.image == "localhost/p/c:1"
    assert "pod bad: container c: ErrImageNeverPull: Container image" in verdict.message
    for reason in ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"):
        assert pods([pod("p", reason)]).reason == reason
    assert pods([pod("p", "ErrImagePull", init=True)]).reason == "ErrImagePull"


def test_starting_or_leaving_pods_do_not_fail_the_wait():
    assert pods([pod("p", "ContainerCreating"), pod("q", "PodInitializing")]) is None
    assert pods([pod("old", "CrashLoopBackOff", deleting=True)]) is None  # an old pod on its way out
    assert pods([]) is None


def test_selectors():
    assert (
        selector_of({"kind": "Deployment", "spec": {"selector": {"matchLabels": {"b": "2", "a": "1"}}}})
        == "a=1,b=2"
    )
    assert selector_of({"kind": "Job", "metadata": {"uid": "u1"}}) == "batch.kubernetes.io/controller-uid=u1"
    assert selector_of({"kind": "Deployment", "spec": {}}) == ""


def crashed(restarts: int, exit_code: int, running=False, ready=False) -> dict:
    """A pod as the real kubelet reports a crashing container between restarts."""
    last = {"terminated": {"exitCode": exit_code, "reason": "Error" if exit_code else "Completed"}}
    state = {"running": {"startedAt": "2026-01-01T00:00:02Z"}} if running else last
    return {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "localhost/p/c:1"}]},
        "status": {
            "containerStatuses": [
                {"name": "c", "restartCount": restarts, "ready": ready, "state": state, "lastState": last}
            ]
        },
    }


def test_a_crash_loop_shown_as_terminated_error_fails_the_wait():
    verdict = pods([crashed(restarts=2, exit_code=3)])
    assert verdict.state is State.FAILED and verdict.reason == "CrashLoopBackOff"
    assert "exited with code 3 (Error) after 2 restart(s)" in verdict.message
    assert verdict.image == "localhost/p/c:1"


def test_one_crash_a_restart_cures_or_a_clean_exit_is_no_crash_loop():
    assert pods([crashed(restarts=0, exit_code=1)]) is None  # not restarted yet
    assert pods([crashed(restarts=1, exit_code=1, running=True)]) is None  # running again
    assert pods([crashed(restarts=3, exit_code=0)]) is None  # exits 0: not a failure to run
    assert pods([crashed(restarts=1, exit_code=1, ready=True)]) is None
