"""The run's views of the outside world (snapshot.py): read once, each under its own lock, and read
ahead once the cluster is up."""

import json
import threading
import time

import pytest

from tasks.libs.adapters.engine import Podman
from tasks.libs.adapters.kind import KindCluster
from tasks.libs.adapters.kubectl import Kubectl
from tasks.libs.errors import CommandFailed
from tasks.libs.procs.fakerunner import FakeRunner
from tasks.libs.procs.runner import Result
from tasks.libs.snapshot import Snapshot, Views

NODE_IMAGES = Result(json.dumps({"images": [{"repoTags": ["localhost/app/api:1"]}]}), 0)
WORKLOADS = Result(
    json.dumps({"items": [{"kind": "Deployment", "metadata": {"name": "api"}, "spec": {}, "status": {}}]}), 0
)


def snapshot_over(runner, tmp_path) -> Snapshot:
    kubeconfig = tmp_path / "kubeconfig"
    return Snapshot(
        Podman(runner), KindCluster("c1", kubeconfig, runner), Kubectl(kubeconfig, runner), Views()
    )


def answers(crictl):
    return [
        (lambda a: a[:3] == ["kind", "get", "nodes"], Result("c1-control-plane\n", 0)),
        (lambda a: a[:2] == ["podman", "exec"], crictl),
        (lambda a: a[:2] == ["podman", "images"], Result("[]", 0)),
        (lambda a: a[0] == "kubectl" and "get" in a, WORKLOADS),
    ]


def eventually(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "the background reads did not happen"
        time.sleep(0.01)


def test_prefetched_views_answer_the_steps_without_asking_again(tmp_path):
    runner = FakeRunner(answers(NODE_IMAGES))
    snapshot = snapshot_over(runner, tmp_path)
    snapshot.prefetch("apps")
    eventually(lambda: len(runner.calls) == 3)  # kind get nodes, crictl images, kubectl get
    assert snapshot.on_every_node("localhost/app/api:1")
    assert snapshot.workload("Deployment", "api", "apps") is not None
    assert len(runner.calls) == 3


def test_a_failed_read_ahead_is_read_again_by_the_step_that_needs_it(tmp_path):
    runner = FakeRunner(answers([Result("", 1, "crictl: connection refused"), NODE_IMAGES]))
    snapshot = snapshot_over(runner, tmp_path)
    snapshot.prefetch("apps")
    eventually(lambda: len(runner.commands("podman", "exec")) == 1 and len(runner.commands("kubectl")) == 1)
    time.sleep(0.05)  # the failed read has returned, leaving nothing behind
    assert snapshot.on_every_node("localhost/app/api:1")
    assert len(runner.commands("podman", "exec")) == 2


def test_a_slow_read_of_the_nodes_does_not_hold_up_a_question_about_the_engines_images(tmp_path):
    release = threading.Event()

    def slow_crictl(call):
        if call.argv[:2] == ["podman", "exec"]:
            assert release.wait(5)
            return NODE_IMAGES
        # `podman image exists`: not in the store either.
        return next((answer for predicate, answer in answers(None) if predicate(call.argv)), Result("", 1))

    runner = FakeRunner(slow_crictl)
    snapshot = snapshot_over(runner, tmp_path)
    snapshot.prefetch("apps")
    eventually(lambda: runner.commands("podman", "exec"))
    try:
        # Answered while the node read is still waiting: the two views have locks of their own.
        assert snapshot.image_exists("localhost/app/api:1") is False
    finally:
        release.set()
    assert snapshot.on_every_node("localhost/app/api:1")


def test_a_failing_read_still_fails_the_step(tmp_path):
    runner = FakeRunner(answers(Result("", 1, "crictl: boom")))
    snapshot = snapshot_over(runner, tmp_path)
    with pytest.raises(CommandFailed):
        snapshot.node_images()
