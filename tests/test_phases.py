"""The phases' decisions, in process: a scripted runner stands where podman, kind and kubectl
would answer, so what each ensure_* asks and decides is visible without a subprocess."""

import json

import pytest

from tasks.libs import cache, images, render
from tasks.libs.engine import DIGEST_LABEL
from tasks.libs.environment import Environment
from tasks.libs.phases import deploy, teardown
from tasks.libs.plan import Outcome, StepKind
from tasks.libs.procs import Result, Runner
from tasks.libs.samples import write_stack
from tasks.libs.settings import build_settings
from tasks.libs.stack import load_stack

READY = {
    "observedGeneration": 1,
    "replicas": 1,
    "updatedReplicas": 1,
    "readyReplicas": 1,
    "availableReplicas": 1,
}


class ScriptedRunner(Runner):
    """A Runner whose commands are answered by `answer(argv)` instead of run; calls are kept."""

    def __init__(self, answer):
        super().__init__()
        self.answer = answer
        self.calls = []

    def run(self, argv, *, mutating=True, check=True, **options):
        argv = [str(a) for a in argv]
        if not self._start(" ".join(argv), mutating):
            return Result("", 0)
        self.calls.append((argv, mutating))
        return self.answer(argv) or Result("", 0)


class WarmCluster:
    """Answers as podman, kind and kubectl do when every service is built, loaded and ready."""

    def __init__(self, stack, refs, digests):
        self.stack, self.refs, self.digests = stack, refs, digests
        self.node = f"{stack.cluster_name}-control-plane"

    def __call__(self, argv):
        tool, verb = argv[0], argv[1:3]
        if tool == "kind" and verb == ["get", "clusters"]:
            return Result(self.stack.cluster_name + "\n", 0)
        if tool == "kind" and verb == ["get", "nodes"]:
            return Result(self.node + "\n", 0)
        if tool == "podman" and verb == ["ps", "-a"]:
            return Result(f"{self.node}\trunning\n", 0)
        if tool == "podman" and argv[1:4] == ["images", "--format", "json"]:
            listed = [
                {"Names": [ref], "Labels": {DIGEST_LABEL: self.digests[name]}, "Created": 1}
                for name, ref in self.refs.items()
            ]
            return Result(json.dumps(listed), 0)
        if tool == "podman" and argv[1] == "exec" and "crictl" in argv:
            held = [{"repoTags": [images.node_name(ref)], "repoDigests": []} for ref in self.refs.values()]
            return Result(json.dumps({"images": held}), 0)
        if tool == "kubectl" and "/readyz" in argv:
            return Result("ok", 0)
        if tool == "kubectl" and "get" in argv and "json" in argv:
            what = argv[argv.index("get") + 1]
            if what.startswith("namespace/"):
                return Result(json.dumps({"kind": "Namespace", "metadata": {"name": what.split("/")[1]}}), 0)
            items = [
                {
                    "kind": "Deployment",
                    "metadata": {"name": name, "generation": 1},
                    "spec": {"replicas": 1},
                    "status": READY,
                }
                for name in self.refs
            ]
            return Result(json.dumps({"kind": "List", "items": items}), 0)
        return None


def warm_environment(tmp_path, count):
    services = {f"svc{i}": {"depends_on": [f"svc{i - 1}"] if i else []} for i in range(count)}
    path = write_stack(tmp_path / "stack", services, name="warm", project="warm", base_image="busybox")
    env = {
        "KINDLING_HOME": str(tmp_path / "home"),
        "KINDLING_LOCK_DIR": str(tmp_path / "locks"),
        "USER": "tester",
    }
    stack = load_stack(path, env=env)
    digests = {
        name: cache.build_digest(s.build.containerfile, s.build.context, s.build.build_args(), "")
        for name, s in stack.services.items()
    }
    refs = {name: images.local_ref("warm", name, "t1") for name in services}
    scripted = ScriptedRunner(WarmCluster(stack, refs, digests))
    environment = Environment(stack, build_settings(stack, env, memory_budget=0), env, runner=scripted)
    ctx = environment.ctx
    # As a previous setup left it: images recorded, every service deployed from these objects.
    for name, ref in refs.items():
        ctx.run.record_image(name, {"ref": ref, "digest": digests[name], "built_by_kindling": True})
    for name in services:
        docs = deploy.rendered(ctx, name)
        ctx.cluster_state.record_deployed(name, {"image": refs[name], "manifests": render.digest(docs)})
    ctx.cluster_state.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    ctx.cluster_state.kubeconfig.write_text("ours")
    return environment, scripted


@pytest.mark.parametrize("count", [3, 12])
def test_a_warm_setup_mutates_nothing(tmp_path, count):
    environment, scripted = warm_environment(tmp_path, count)
    result = environment.execute(environment.setup_steps(environment.ctx.stack.order()))
    outcomes = {(s["kind"], s["outcome"]) for s in result["steps"]}
    assert outcomes == {
        ("cluster", Outcome.EXISTS.value),
        ("image", Outcome.CACHED.value),
        ("load", Outcome.ON_NODE.value),
        ("deploy", Outcome.UP_TO_DATE.value),
    }
    assert [argv for argv, mutating in scripted.calls if mutating] == []
    assert result["commands"] == {"total": len(scripted.calls), "mutating": 0}


def test_a_warm_setup_costs_the_same_commands_for_3_and_12_services(tmp_path):
    small, small_runner = warm_environment(tmp_path / "small", 3)
    large, large_runner = warm_environment(tmp_path / "large", 12)
    for environment in (small, large):
        environment.execute(environment.setup_steps(environment.ctx.stack.order()))

    def verbs(runner):
        return sorted(" ".join(a for a in argv[:3] if not a.startswith("/")) for argv, _ in runner.calls)

    assert verbs(small_runner) == verbs(large_runner)
    assert len(large_runner.calls) <= 8


def test_a_scaled_down_workload_is_not_up_to_date(tmp_path):
    environment, scripted = warm_environment(tmp_path, 2)
    answer = scripted.answer

    def scaled(argv):
        result = answer(argv)
        if argv[0] == "kubectl" and "deployment,statefulset,daemonset,job" in argv:
            listed = json.loads(result.stdout)
            listed["items"][0]["spec"]["replicas"] = 0
            return Result(json.dumps(listed), 0)
        return result

    scripted.answer = scaled
    ctx = environment.ctx

    def up_to_date(name):
        docs = deploy.rendered(ctx, name)
        wanted = {"image": ctx.known_refs()[name], "manifests": render.digest(docs)}
        return deploy.up_to_date(ctx, name, wanted, docs, render.readiness_targets(docs))

    assert not up_to_date("svc0")  # ready, but no longer at the manifest's replicas
    assert up_to_date("svc1")


def test_teardown_reports_what_it_did_as_data(tmp_path):
    environment, scripted = warm_environment(tmp_path, 2)
    built = sorted(environment.ctx.run.built_images())
    result = teardown.teardown(environment.ctx)
    assert result.cluster_deleted
    assert sorted(result.images_removed) == built == ["localhost/warm/svc0:t1", "localhost/warm/svc1:t1"]
    assert not environment.ctx.run.built_images()
    deletes = [argv for argv, _ in scripted.calls if argv[:3] == ["kind", "delete", "cluster"]]
    assert deletes and "--kubeconfig" in deletes[0]
    assert result.lines("warm-e2e")[0] == "deleted cluster warm-e2e"


def test_step_records_carry_kind_and_outcome_enums(tmp_path):
    environment, _ = warm_environment(tmp_path, 1)
    steps = environment.setup_steps(["svc0"])
    assert {s.kind for s in steps} == {StepKind.CLUSTER, StepKind.IMAGE, StepKind.LOAD, StepKind.DEPLOY}
    assert {s.pool for s in steps} == {"cluster", "build", "load", "kube"}
