"""The phases' decisions, in process: a scripted runner stands where podman, kind and kubectl
would answer, so what each ensure_* asks and decides is visible without a subprocess."""

import io
import json
import time
from pathlib import Path

import pytest
import yaml

from tasks import doctor
from tasks.libs import imagerefs, kubeletcgroup, render, report
from tasks.libs.adapters.engine import DIGEST_LABEL
from tasks.libs.build import digest as cache
from tasks.libs.checks import preflight
from tasks.libs.console import Console
from tasks.libs.environment import DEFAULT_ESTIMATES, Environment
from tasks.libs.errors import KindlingError
from tasks.libs.kubeletcgroup import PATCH
from tasks.libs.phases import cluster as cluster_phase
from tasks.libs.phases import deploy, teardown
from tasks.libs.plan import Outcome, StepKind
from tasks.libs.procs import proctree
from tasks.libs.procs.fakerunner import FakeRunner
from tasks.libs.procs.runner import Result
from tasks.libs.samples import write_stack
from tasks.libs.settings import build_settings
from tasks.libs.stack.model import load_stack

READY = {
    "observedGeneration": 1,
    "replicas": 1,
    "updatedReplicas": 1,
    "readyReplicas": 1,
    "availableReplicas": 1,
}


class WarmCluster:
    """Answers as podman, kind and kubectl do when every service is built, loaded and ready."""

    def __init__(self, stack, refs, digests):
        self.stack, self.refs, self.digests = stack, refs, digests
        self.node = f"{stack.cluster_name}-control-plane"

    def __call__(self, call):
        argv = call.argv
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
            held = [{"repoTags": [imagerefs.node_name(ref)], "repoDigests": []} for ref in self.refs.values()]
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
    refs = {name: imagerefs.local_ref("warm", name, "t1") for name in services}
    scripted = FakeRunner(WarmCluster(stack, refs, digests))
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
    assert [c.argv for c in scripted.calls if c.mutating] == []
    assert result["commands"] == {"total": len(scripted.calls), "mutating": 0}
    assert result["delivery"] == "archive"  # run.json says how the images reached the nodes


def test_the_report_says_how_long_before_its_graph_since_the_last_one(tmp_path):
    environment, _ = warm_environment(tmp_path, 3)
    steps = environment.setup_steps(environment.ctx.stack.order())
    first = environment.execute(steps)
    assert 0 < first["before_graph_seconds"] <= proctree.process_age()  # since the process started
    time.sleep(0.2)
    second = environment.execute(steps)  # as the next task of a pre= chain: since the first graph
    assert 0.2 <= second["before_graph_seconds"] < 0.2 + 1.0, second["before_graph_seconds"]
    assert f"{second['before_graph_seconds']:.1f} s before it" in report.table(second)


def test_build_binds_its_push_and_save_steps_and_every_kind_of_step_has_an_estimate(tmp_path):
    assert set(DEFAULT_ESTIMATES) == set(StepKind)
    environment, _ = warm_environment(tmp_path, 2)
    steps = environment.build_steps(["svc0", "svc1"], push=True, save_to=tmp_path / "out")
    assert [s.id for s in steps] == [
        "image:svc0",
        "image:svc1",
        "push:svc0",
        "push:svc1",
        "save:svc0",
        "save:svc1",
    ]


def test_a_warm_setup_costs_the_same_commands_for_3_and_12_services(tmp_path):
    small, small_runner = warm_environment(tmp_path / "small", 3)
    large, large_runner = warm_environment(tmp_path / "large", 12)
    for environment in (small, large):
        environment.execute(environment.setup_steps(environment.ctx.stack.order()))

    def verbs(runner):
        return sorted(" ".join(a for a in argv[:3] if not a.startswith("/")) for argv in runner.commands())

    assert verbs(small_runner) == verbs(large_runner)
    assert len(large_runner.calls) <= 8


def test_a_scaled_down_workload_is_not_up_to_date(tmp_path):
    environment, scripted = warm_environment(tmp_path, 2)
    answer = scripted.answers

    def scaled(call):
        result = answer(call)
        if call.argv[0] == "kubectl" and "deployment,statefulset,daemonset,job" in call.argv:
            listed = json.loads(result.stdout)
            listed["items"][0]["spec"]["replicas"] = 0
            return Result(json.dumps(listed), 0)
        return result

    scripted.answers = scaled
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
    deletes = [argv for argv in scripted.commands() if argv[:3] == ["kind", "delete", "cluster"]]
    assert deletes and "--kubeconfig" in deletes[0]
    assert result.lines("warm-e2e")[0] == "deleted cluster warm-e2e"


def test_step_records_carry_kind_and_outcome_enums(tmp_path):
    environment, _ = warm_environment(tmp_path, 1)
    steps = environment.setup_steps(["svc0"])
    assert {s.kind for s in steps} == {StepKind.CLUSTER, StepKind.IMAGE, StepKind.LOAD, StepKind.DEPLOY}
    assert {s.pool for s in steps} == {"cluster", "build", "load", "kube"}


# ---- KubeletConfiguration failCgroupV1: false on cgroup v1 hosts for Kubernetes 1.35+ -----------------

USER_KIND_CONFIG = """\
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
kubeadmConfigPatches:
  - |
    kind: ClusterConfiguration
    apiServer:
      extraArgs:
        v: "2"
nodes:
  - role: control-plane
"""
ADDED_V136 = "cgroup v1 host and node v1.36: kind config gets KubeletConfiguration failCgroupV1: false"


def cgroup_environment(
    tmp_path, cgroup, node_image="kindest/node:v1.36.1", kind_config=USER_KIND_CONFIG, **options
):
    """A stack whose cluster does not exist yet, on a host whose `podman info` reports `cgroup`."""
    folder = tmp_path / "stack"
    folder.mkdir()
    cluster = {"name": "cg-e2e"}
    if kind_config is not None:
        (folder / "kind.yaml").write_text(kind_config)
        cluster["config"] = "kind.yaml"
    stack_file = folder / "stack.yaml"
    stack_file.write_text(
        yaml.safe_dump(
            {"name": "cg", "project": "cg", "cluster": cluster, "services": {"app": {"image": "busybox:1"}}}
        )
    )
    env = {
        "KINDLING_HOME": str(tmp_path / "home"),
        "KINDLING_LOCK_DIR": str(tmp_path / "locks"),
        "USER": "tester",
    }
    if node_image:
        env["KINDLING_NODE_IMAGE"] = node_image
    stack = load_stack(stack_file, env=env)
    info = {"host": {"cgroupVersion": cgroup, "logDriver": "k8s-file", "security": {"rootless": False}}}

    scripted = FakeRunner(
        [
            (lambda argv: argv[:2] == ["podman", "info"], Result(json.dumps(info), 0)),
            (lambda argv: argv[:2] == ["podman", "version"], Result("5.4.2\n", 0)),
        ]
    )
    out = io.StringIO()
    settings = build_settings(stack, env, memory_budget=0, **options)
    environment = Environment(stack, settings, env, console=Console(out, color=False), runner=scripted)
    return environment.ctx, scripted, out


def create_config(scripted):
    """The --config of `kind create cluster`, or None."""
    (argv,) = [argv for argv in scripted.commands() if argv[:3] == ["kind", "create", "cluster"]]
    return argv[argv.index("--config") + 1] if "--config" in argv else None


def test_cgroup_v1_host_and_node_1_36_get_failcgroupv1_false_in_a_run_folder_copy(tmp_path):
    ctx, scripted, out = cgroup_environment(tmp_path, "v1")
    assert cluster_phase.ensure_cluster(ctx) is Outcome.CREATED
    given = create_config(scripted)
    assert given == str(ctx.run.folder / "kind-config.yaml")
    user = yaml.safe_load(USER_KIND_CONFIG)
    assert yaml.safe_load(Path(given).read_text()) == {
        **user,
        "kubeadmConfigPatches": [*user["kubeadmConfigPatches"], PATCH],
    }
    assert PATCH == "kind: KubeletConfiguration\nfailCgroupV1: false\n"
    assert ctx.stack.cluster_config.read_text() == USER_KIND_CONFIG  # the stack's own file is never edited
    assert out.getvalue().splitlines().count(ADDED_V136) == 1


@pytest.mark.parametrize(
    "cgroup,node_image",
    [("v2", "kindest/node:v1.36.1"), ("v1", "kindest/node:v1.34.0"), ("v1", "kindest/node:v1.33.4")],
)
def test_no_patch_on_cgroup_v2_or_before_1_35(tmp_path, cgroup, node_image):
    ctx, scripted, out = cgroup_environment(tmp_path, cgroup, node_image)
    cluster_phase.ensure_cluster(ctx)
    assert create_config(scripted) == str(ctx.stack.cluster_config)
    assert not (ctx.run.folder / "kind-config.yaml").exists()
    assert "failCgroupV1" not in out.getvalue()


@pytest.mark.parametrize(
    "patches",
    [
        "kubeadmConfigPatches:\n  - |\n    kind: KubeletConfiguration\n    failCgroupV1: true\n",
        "kubeadmConfigPatches:\n  - |\n    kind: KubeletConfiguration\n    failCgroupV1: false\n",
        "kubeadmConfigPatches:\n  - |\n    kind: InitConfiguration\n    ---\n"
        "    apiVersion: kubelet.config.k8s.io/v1beta1\n"
        "    kind: KubeletConfiguration\n    failCgroupV1: true\n",
        "kubeadmConfigPatchesJSON6902:\n  - group: kubelet.config.k8s.io\n    version: v1beta1\n"
        "    kind: KubeletConfiguration\n    patch: |\n      - op: add\n        path: /failCgroupV1\n"
        "        value: true\n",
        "nodes:\n  - role: control-plane\n    kubeadmConfigPatches:\n      - |\n"
        "        kind: KubeletConfiguration\n        failCgroupV1: false\n",
    ],
    ids=["merge-true", "merge-false", "multi-document", "json6902", "node-level"],
)
def test_a_kind_config_that_sets_failcgroupv1_is_left_as_it_is(tmp_path, patches):
    config = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n" + patches
    ctx, scripted, out = cgroup_environment(tmp_path, "v1", kind_config=config)
    cluster_phase.ensure_cluster(ctx)
    assert create_config(scripted) == str(ctx.stack.cluster_config)
    assert ctx.stack.cluster_config.read_text() == config
    assert "failCgroupV1" not in out.getvalue()


def test_no_kind_config_gets_one_with_only_the_patch(tmp_path):
    ctx, scripted, out = cgroup_environment(tmp_path, "v1", kind_config=None)
    cluster_phase.ensure_cluster(ctx)
    assert yaml.safe_load(Path(create_config(scripted)).read_text()) == {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "kubeadmConfigPatches": [PATCH],
    }
    assert ADDED_V136 in out.getvalue().splitlines()


def test_no_kind_config_gets_the_patch_beside_what_kindling_already_renders(tmp_path):
    ctx, scripted, _ = cgroup_environment(tmp_path, "v1", kind_config=None, load_via="registry")
    cluster_phase.ensure_cluster(ctx)
    assert yaml.safe_load(Path(create_config(scripted)).read_text()) == {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "containerdConfigPatches": [render.CONTAINERD_REGISTRY_PATCH],
        "kubeadmConfigPatches": [PATCH],
    }


def test_the_cgroup_version_is_the_preflights_podman_info(tmp_path, monkeypatch):
    ctx, scripted, _ = cgroup_environment(tmp_path, "v1")
    monkeypatch.setattr(preflight.shutil, "which", lambda name, **_: f"/usr/bin/{name}")
    checks = {c.name: c for c in doctor.preflight_checks(ctx)}
    assert checks["cgroup"].detail.startswith(ADDED_V136)
    cluster_phase.ensure_cluster(ctx)
    infos = [argv for argv in scripted.commands() if argv[:2] == ["podman", "info"]]
    assert infos == [["podman", "info", "--format", "json"]]  # asked once, by the preflight
    assert create_config(scripted) == str(ctx.run.folder / "kind-config.yaml")


def test_an_existing_cluster_asks_nothing_about_cgroups(tmp_path):
    environment, scripted = warm_environment(tmp_path, 1)
    assert cluster_phase.ensure_cluster(environment.ctx) is Outcome.EXISTS
    assert not [argv for argv in scripted.commands() if argv[:2] in (["podman", "info"], ["kind", "version"])]


KIND_V032 = "kind v0.32.0 go1.24.4 linux/amd64"


@pytest.mark.parametrize(
    "cgroup,document,pinned,kind_text,add,line",
    [
        ("v1", None, "kindest/node:v1.36.1", None, True, ADDED_V136),
        ("v1", None, "kindest/node:v1.35.0@sha256:" + "a" * 64, None, True, "node v1.35: kind config gets"),
        (
            "v2",
            None,
            "kindest/node:v1.36.1",
            None,
            False,
            "cgroup v2 host: the kubelet needs no failCgroupV1",
        ),
        (
            "v1",
            None,
            "kindest/node:v1.34.0",
            None,
            False,
            "cgroup v1 host and node v1.34: kubelets before 1.35 run on cgroup v1 as is; "
            "no failCgroupV1 patch",
        ),
        ("", None, "kindest/node:v1.36.1", None, False, "cgroup version unknown"),
        # the version is unknown: added, and said so (1.35+ needs it, false is 1.31-1.34's default)
        (
            "v1",
            None,
            "localhost/my-node:latest",
            None,
            True,
            "cgroup v1 host and node image localhost/my-node:latest names no Kubernetes version: kind config "
            "gets KubeletConfiguration failCgroupV1: false (1.35+ kubelets need it; older ones run on cgroup "
            "v1 anyway)",
        ),
        # no image named: kind's default node image, by the installed kind's version
        ("v1", None, "", KIND_V032, True, ADDED_V136),
        ("v1", None, "", "kind v0.30.0 go1.24 linux/amd64", False, "node v1.34: kubelets before 1.35"),
        # the newest node decides: each node runs a kubelet
        (
            "v1",
            {"nodes": [{"role": "control-plane", "image": "kindest/node:v1.34.0"}, {"role": "worker"}]},
            "",
            KIND_V032,
            True,
            ADDED_V136,
        ),
        (
            "v1",
            {"nodes": [{"role": "control-plane", "image": "kindest/node:v1.34.0"}]},
            "",
            None,
            False,
            "v1.34",
        ),
    ],
)
def test_when_the_patch_is_added(cgroup, document, pinned, kind_text, add, line):
    decision = kubeletcgroup.decide(cgroup, document, pinned, "cluster.image", lambda: kind_text)
    assert decision.add is add and line in decision.line, decision


def test_the_installed_kinds_version_is_asked_only_for_a_node_on_kinds_default():
    def never():
        raise AssertionError("kind version asked")

    kubeletcgroup.decide("v1", None, "kindest/node:v1.36.1", "KINDLING_NODE_IMAGE", never)
    kubeletcgroup.decide("v1", {"nodes": [{"image": "kindest/node:v1.36.1"}]}, "", "", never)
    kubeletcgroup.decide("v2", None, "", "", never)
    decision = kubeletcgroup.decide("v1", {"nodes": [{"role": "control-plane"}]}, "", "", lambda: KIND_V032)
    assert decision.nodes == "kindest/node:v1.36.1 (kind 0.32.0's default node image)"


REFUSED = Result("", 1, "The connection to the server 127.0.0.1:41239 was refused")


def test_a_new_cluster_is_used_once_its_api_server_answers_readyz(tmp_path):
    """kind's --wait ends at node Ready; a kube-apiserver the kubelet restarts just after refuses."""
    ctx, scripted, _ = cgroup_environment(tmp_path, "v2")
    readyz = [REFUSED, REFUSED, Result("ok", 0)]
    scripted.answers.insert(0, (lambda argv: "/readyz" in argv, readyz))
    assert cluster_phase.ensure_cluster(ctx) is Outcome.CREATED
    asked = [i for i, argv in enumerate(scripted.commands()) if "/readyz" in argv]
    (applied,) = [i for i, argv in enumerate(scripted.commands()) if argv[0] == "kubectl" and "apply" in argv]
    assert len(asked) == 3 and max(asked) < applied  # the namespace goes in once it answered


def test_a_new_cluster_whose_api_server_never_answers_stops_the_run(tmp_path, monkeypatch):
    ctx, scripted, _ = cgroup_environment(tmp_path, "v2")
    scripted.answers.insert(0, (lambda argv: "/readyz" in argv, REFUSED))
    monkeypatch.setattr(cluster_phase, "API_READY_SECONDS", 0)
    with pytest.raises(KindlingError) as caught:
        cluster_phase.ensure_cluster(ctx)
    assert "cluster cg-e2e was created, but its API server does not answer /readyz" in str(caught.value)
    assert "was refused" in str(caught.value)
    assert not [argv for argv in scripted.commands() if "apply" in argv]


def test_the_runs_of_a_pre_chain_read_the_cluster_once(tmp_path):
    """deploy.svc2 runs deploy.svc0 and deploy.svc1 first, each a run of its own in this process:
    only the first asks podman, the nodes and the API server."""
    environment, scripted = warm_environment(tmp_path, 3)
    ctx = environment.ctx
    environment.execute(environment.setup_steps(["svc0"]))
    asked = len(scripted.calls)
    for name in ("svc1", "svc2"):
        chained = Environment(ctx.stack, ctx.settings, ctx.env, runner=scripted)
        result = chained.execute(chained.setup_steps([name]))
        assert {s["outcome"] for s in result["steps"] if s["kind"] != "cluster"} == {
            Outcome.CACHED.value,
            Outcome.ON_NODE.value,
            Outcome.UP_TO_DATE.value,
        }
    assert len(scripted.calls) == asked
    # Once the cluster is deleted (or made again), nothing read of it holds.
    teardown.teardown(Environment(ctx.stack, ctx.settings, ctx.env, runner=scripted).ctx, keep_images=True)
    again = Environment(ctx.stack, ctx.settings, ctx.env, runner=scripted)
    before = len(scripted.calls)
    again.ctx.snapshot.node_images()
    assert [argv for argv in scripted.commands()[before:] if "crictl" in argv]


def test_an_apply_forgets_the_workloads_it_changed(tmp_path, monkeypatch):
    environment, scripted = warm_environment(tmp_path, 1)
    ctx = environment.ctx
    monkeypatch.setattr(ctx.kubectl, "wait_ready", lambda *args, **options: None)
    assert ctx.snapshot.is_ready("Deployment", "svc0", ctx.stack.namespace)
    listings = len([a for a in scripted.commands() if "deployment,statefulset,daemonset,job" in a])
    docs = deploy.rendered(ctx, "svc0")
    deploy.apply_and_wait(ctx, "svc0", docs, render.readiness_targets(docs))
    assert ctx.snapshot.is_ready("Deployment", "svc0", ctx.stack.namespace)
    assert (
        len([a for a in scripted.commands() if "deployment,statefulset,daemonset,job" in a]) == listings + 1
    )


def workload_object(kind, name, ready):
    status = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1}
    if kind == "DaemonSet":
        status = {
            "observedGeneration": 1,
            "desiredNumberScheduled": 2,
            "updatedNumberScheduled": 2,
            "numberAvailable": 2 if ready else 1,
        }
    else:
        status.update({"readyReplicas": 1, "availableReplicas": 1} if ready else {"availableReplicas": 0})
    return {
        "kind": kind,
        "metadata": {"name": name, "generation": 1},
        "spec": {"replicas": 1},
        "status": status,
    }


def test_a_new_cluster_is_used_once_coredns_and_kube_proxy_are_ready(tmp_path):
    """kind's --wait covers the control-plane node; a pod resolving a name before CoreDNS is ready
    meets "connection refused"."""
    ctx, scripted, _ = cgroup_environment(tmp_path, "v2")
    addons = {
        "kind": "List",
        "items": [
            workload_object("Deployment", "coredns", False),
            workload_object("DaemonSet", "kube-proxy", True),
        ],
    }
    coredns = [Result(json.dumps(workload_object("Deployment", "coredns", False)), 0)] * 2
    coredns.append(Result(json.dumps(workload_object("Deployment", "coredns", True)), 0))
    scripted.answers[:0] = [
        (
            lambda argv: "deployments,daemonsets" in argv and "kube-system" in argv,
            Result(json.dumps(addons), 0),
        ),
        (lambda argv: "deployment/coredns" in argv, coredns),
        (lambda argv: "daemonset/kube-proxy" in argv, Result(json.dumps(addons["items"][1]), 0)),
        (lambda argv: "pods" in argv, Result(json.dumps({"items": []}), 0)),
    ]
    assert cluster_phase.ensure_cluster(ctx) is Outcome.CREATED
    commands = scripted.commands()
    asked = [i for i, argv in enumerate(commands) if "deployment/coredns" in argv]
    (applied,) = [i for i, argv in enumerate(commands) if argv[0] == "kubectl" and "apply" in argv]
    assert len(asked) == 3 and max(asked) < applied
    assert any("daemonset/kube-proxy" in argv for argv in commands)


class StuckAddons:
    """A new cluster's kube-system, as kubectl reads it: kube-proxy rolled out, CoreDNS not ready
    (its pods started before kube-proxy routed the API server's Service) until its pods are deleted,
    or never when `recovers` is False."""

    def __init__(self, recovers=True):
        self.recovers, self.deleted = recovers, 0

    def __call__(self, call):
        argv = call.argv
        if "delete" in argv and "pods" in argv:
            self.deleted += 1
            return None
        if "deployments,daemonsets" in argv:
            return Result(json.dumps({"items": [self.coredns(), self.kube_proxy()]}), 0)
        if "daemonset/kube-proxy" in argv:
            return Result(json.dumps(self.kube_proxy()), 0)
        if "deployment/coredns" in argv:
            return Result(json.dumps(self.coredns()), 0)
        if "pods" in argv:
            return Result(json.dumps({"items": []}), 0)
        return None

    def kube_proxy(self):
        status = {"observedGeneration": 1, "desiredNumberScheduled": 1}
        status |= {"updatedNumberScheduled": 1, "numberAvailable": 1}
        return {"kind": "DaemonSet", "metadata": {"name": "kube-proxy", "generation": 1}, "status": status}

    def coredns(self):
        ready = self.deleted > 0 and self.recovers
        status = {
            "observedGeneration": 1,
            "replicas": 2,
            "updatedReplicas": 2,
            "availableReplicas": 2 * ready,
        }
        spec = {"replicas": 2, "selector": {"matchLabels": {"k8s-app": "kube-dns"}}}
        return {
            "kind": "Deployment",
            "metadata": {"name": "coredns", "generation": 1},
            "spec": spec,
            "status": status,
        }


def addons_context(tmp_path, scripted):
    path = write_stack(tmp_path / "stack", {"a": {}}, name="addons", project="addons", base_image="busybox")
    env = {"KINDLING_HOME": str(tmp_path / "home"), "KINDLING_LOCK_DIR": str(tmp_path / "locks"), "USER": "t"}
    stack = load_stack(path, env=env)
    console = Console(io.StringIO())
    return Environment(
        stack, build_settings(stack, env, memory_budget=0), env, console=console, runner=scripted
    ).ctx


def test_addons_started_before_kube_proxy_routed_the_api_are_started_again_once(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster_phase, "ADDONS_NUDGE_SECONDS", 1)
    addons = StuckAddons()
    scripted = FakeRunner(addons)
    ctx = addons_context(tmp_path, scripted)
    cluster_phase.wait_cluster_addons(ctx, tmp_path / "cluster.log")
    waited = [
        a[a.index("get") + 1]
        for a in scripted.commands("kubectl")
        if "get" in a and "/" in a[a.index("get") + 1]
    ]
    assert waited.index("daemonset/kube-proxy") < waited.index("deployment/coredns")  # kube-proxy first
    (delete,) = [a for a in scripted.commands("kubectl") if "delete" in a]
    assert delete[delete.index("delete") :] == [
        "delete",
        "pods",
        "-l",
        "k8s-app=kube-dns",
        "-n",
        "kube-system",
        "--wait=false",
    ]
    assert "starting them again" in ctx.console.stream.getvalue()


def test_addons_that_never_get_ready_still_fail_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster_phase, "ADDONS_NUDGE_SECONDS", 1)
    monkeypatch.setattr(cluster_phase, "ADDONS_READY_SECONDS", 1)
    addons = StuckAddons(recovers=False)
    ctx = addons_context(tmp_path, FakeRunner(addons))
    with pytest.raises(KindlingError, match="Deployment kube-system/coredns is not ready") as caught:
        cluster_phase.wait_cluster_addons(ctx, tmp_path / "cluster.log")
    assert "describe pods" in str(caught.value) and addons.deleted == 1  # started again once, no more
