"""e2e.setup, deploy.<service> and e2e.teardown: real podman builds, real kind and kubectl
(the test environment), behind the thin wrappers that record each call.

Tests that only deploy use the session's shared cluster, each in a namespace of its own;
tests that create, fail or delete a cluster make their own.
"""

import json
import re
import shutil
import subprocess

import pytest
import yaml
from conftest import image_exists, invoke, kind_config


class World:
    def __init__(self, maker, tools, testenv, home, cluster, namespace):
        self.maker, self.tools, self.testenv, self.home = maker, tools, testenv, home
        self.cluster, self.namespace = cluster, namespace
        self.kubeconfig = home / "clusters" / cluster / "kubeconfig"
        self.env = {**tools.env, "KINDLING_HOME": str(home), "KINDLING_MIN_FREE_DISK": "50MiB"}

    def write(self, services):
        path = self.maker.write(services, cluster=self.cluster, namespace=self.namespace)
        self.env["E2E_STACK"] = str(path)
        return path

    def invoke(self, *args, **env):
        return invoke(list(args), {**self.env, **env})

    def kubectl_json(self, *args):
        return self.testenv.kubectl_json(self.kubeconfig, *args)

    def node_images(self):
        return self.testenv.node_images(f"{self.cluster}-control-plane")

    def clusters(self):
        return self.testenv.clusters()

    def last_run(self):
        runs = sorted((self.home / "runs").glob("*/run.json"), key=lambda p: p.stat().st_mtime)
        return json.loads(runs[-1].read_text())

    def deployed_images(self):
        items = self.kubectl_json("get", "deployments", "-n", self.namespace)["items"]
        return {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"] for d in items}


THREE = {  # a <- b <- c, a <- c
    "a": {"sleep": 1, "configmap": True},
    "b": {"sleep": 1, "depends_on": ["a"]},
    "c": {"sleep": 1, "depends_on": ["a", "b"]},
}


@pytest.fixture
def world(stack_maker, tools, testenv, shared_cluster, tmp_path):
    """A 3-service stack deployed into the shared cluster, in a namespace of its own."""
    w = World(stack_maker, tools, testenv, tmp_path / "home", shared_cluster.name, stack_maker.project)
    w.write(THREE)
    yield w
    testenv.kubectl(
        shared_cluster.kubeconfig, "delete", "namespace", w.namespace, "--wait=false", check=False
    )


@pytest.fixture
def own_world(stack_maker, tools, testenv, tmp_path):
    """A stack whose cluster kindling creates (and the test deletes)."""
    w = World(stack_maker, tools, testenv, tmp_path / "home", f"{stack_maker.project}-e2e", "testns")
    yield w
    testenv.delete_cluster(w.cluster, tmp_path / "cleanup-kubeconfig")


def spans(calls, predicate):
    return [(c["start"], c["end"]) for c in calls if predicate(c["argv"])]


def test_setup_deploys_in_dependency_order_with_loaded_images(world):
    result = world.invoke("e2e.setup")
    assert result.returncode == 0, result.stdout + result.stderr
    assert oct(world.kubeconfig.stat().st_mode & 0o777) == "0o600"

    # Every deployed reference is exactly one the node holds, under localhost/, and it runs.
    deployed = world.deployed_images()
    assert set(deployed) == {"a", "b", "c"}
    held = world.node_images()
    for name, ref in deployed.items():
        assert ref.startswith(f"localhost/{world.maker.project}/{name}:")
        assert ref in held
    for deployment in world.kubectl_json("get", "deployments", "-n", world.namespace)["items"]:
        assert deployment["status"].get("availableReplicas") == 1, deployment["status"]

    # Order: a dependant is applied only after its dependencies were seen ready (the last read of
    # each dependency's Deployment is the one that found it rolled out).
    calls = world.tools.calls("kubectl")

    def rollout_end(name):
        return max(end for start, end in spans(calls, lambda a: "get" in a and f"deployment/{name}" in a))

    def apply_start(name):
        return min(
            start
            for start, end in spans(
                calls, lambda a: "apply" in a and any(x.endswith(f"/{name}.yaml") for x in a)
            )
        )

    assert rollout_end("a") <= apply_start("b")
    assert rollout_end("b") <= apply_start("c")

    # Every kind call was told the provider.
    assert all(c["provider"] == "podman" for c in world.tools.calls("kind"))
    # Each image was streamed into kind (no archive on disk), and the load steps say so.
    loads = [c["argv"] for c in world.tools.calls("kind") if c["argv"][:2] == ["load", "image-archive"]]
    # One kind call per image and node: the shared cluster's control plane and worker.
    assert len(loads) == 3 * 2 and {argv[2] for argv in loads} == {"/dev/stdin"}
    assert {argv[-1] for argv in loads} == {f"{world.cluster}-control-plane", f"{world.cluster}-worker"}
    assert {s["outcome"] for s in world.last_run()["steps"] if s["kind"] == "load"} == {"streamed"}
    # No archive is left behind; the summary names each service.
    assert not list(world.home.glob("runs/*/*.tar"))
    for name in "abc":
        assert f"\n{name} " in result.stdout
    assert "critical path" in result.stdout


def test_second_setup_reuses_everything(world):
    assert world.invoke("e2e.setup").returncode == 0
    images_before = world.maker.images()
    again = world.invoke("e2e.setup")
    assert again.returncode == 0, again.stderr
    assert not [c for c in world.tools.calls("kind") if c["argv"][:2] == ["create", "cluster"]]
    outcomes = {s["id"]: s["outcome"] for s in world.last_run()["steps"]}
    assert outcomes["cluster"] == "exists"
    assert {outcomes[f"image:{n}"] for n in "abc"} == {"cached"}
    assert {outcomes[f"load:{n}"] for n in "abc"} == {"on node"}
    assert {outcomes[f"deploy:{n}"] for n in "abc"} == {"up to date"}
    assert world.maker.images() == images_before


def test_deploy_leaf_rebuilds_and_rolls_out_only_that_service(world):
    assert world.invoke("e2e.setup").returncode == 0
    before = world.deployed_images()
    (world.maker.folder / "src" / "c" / "version.txt").write_text("2\n")
    calls_before = len(world.tools.calls("kubectl"))
    result = world.invoke("deploy.c")
    assert result.returncode == 0, result.stdout + result.stderr
    after = world.deployed_images()
    assert after["a"] == before["a"] and after["b"] == before["b"]
    assert after["c"] != before["c"] and after["c"] in world.node_images()
    applied = [c["argv"] for c in world.tools.calls("kubectl")[calls_before:] if "apply" in c["argv"]]
    applied_files = {a[a.index("-f") + 1].rsplit("/", 1)[-1] for a in applied}
    assert applied_files <= {"c.yaml", "namespace.yaml"} and "c.yaml" in applied_files
    assert "up to date" in result.stdout  # the pre= chain ensured a and b without redoing them
    (pod,) = [
        p
        for p in world.kubectl_json("get", "pods", "-n", world.namespace, "-l", "app=c")["items"]
        if not p["metadata"].get("deletionTimestamp")
    ]
    assert pod["spec"]["containers"][0]["image"] == after["c"]


def test_deploy_on_a_missing_environment_brings_up_what_is_needed(world):
    result = world.invoke("deploy.b")
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(world.deployed_images()) == {"a", "b"}


def test_failed_rollout_writes_diagnostics_and_deletes_the_new_cluster(own_world):
    w = own_world
    w.write(
        {
            "a": {},
            "b": {"depends_on": ["a"], "fault": "never-ready", "timeout": 10},
            "c": {"depends_on": ["b"]},
        }
    )
    result = w.invoke("e2e.setup")
    assert result.returncode != 0
    assert "deploy:b failed" in result.stderr and "diagnostics:" in result.stderr
    assert "Traceback" not in result.stderr
    diagnostics = next(w.home.glob("runs/*/diagnostics/b"))
    describe = (diagnostics / "describe-pods.txt").read_text()
    assert "Readiness probe failed" in describe or "Ready:" in describe
    assert (diagnostics / "events.txt").exists()
    assert any((diagnostics / "kind-logs").iterdir())
    statuses = {s["id"]: s["status"] for s in w.last_run()["steps"]}
    assert (
        statuses["deploy:a"] == "ok"
        and statuses["deploy:b"] == "failed"
        and statuses["deploy:c"] == "not run"
    )
    assert w.cluster not in w.clusters()  # created by this run, not asked to keep


def test_keep_cluster_on_failure(own_world):
    w = own_world
    w.write({"a": {"fault": "never-ready", "timeout": 5}})
    result = w.invoke("e2e.setup", KEEP_CLUSTER="1")
    assert result.returncode != 0
    assert w.cluster in w.clusters()
    # The kept cluster answers with the kubeconfig kindling wrote.
    nodes = w.kubectl_json("get", "nodes")["items"]
    assert [n["metadata"]["name"] for n in nodes] == [f"{w.cluster}-control-plane"]


def test_teardown_leaves_no_cluster_tar_or_built_image(own_world, base_image):
    w = own_world
    w.write({"a": {}, "b": {"depends_on": ["a"]}})
    assert w.invoke("e2e.setup").returncode == 0
    assert w.maker.images()
    assert w.cluster in w.clusters()
    result = w.invoke("e2e.teardown")
    assert result.returncode == 0, result.stderr
    assert w.cluster not in w.clusters()
    assert not w.kubeconfig.exists()
    assert w.maker.images() == []
    assert not list(w.home.glob("runs/*/*.tar"))
    assert image_exists(base_image)  # never an image kindling did not build
    node = subprocess.run(["podman", "container", "exists", f"{w.cluster}-control-plane"])
    assert node.returncode == 1


def test_dry_run_setup_changes_nothing(own_world):
    w = own_world
    w.write(THREE)
    result = w.invoke("e2e.setup", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[dry-run] KIND_EXPERIMENTAL_PROVIDER=podman kind create cluster" in result.stdout
    assert f"--image {w.testenv.node_image}" in result.stdout  # KINDLING_NODE_IMAGE reaches kind
    assert "[dry-run] podman build" in result.stdout and "[dry-run] kubectl" in result.stdout
    assert w.cluster not in w.clusters() and w.maker.images() == []


def test_a_dry_run_plans_without_kind_or_kubectl_and_says_what_it_could_not_check(stack_maker, tmp_path):
    """Only podman and git on PATH: the plan is made, nothing runs, and the missing tools are named."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for program in ("podman", "git"):
        (tools / program).symlink_to(shutil.which(program))
    path = stack_maker.write({"a": {}, "b": {"depends_on": ["a"]}})
    env = {"E2E_STACK": str(path), "KINDLING_HOME": str(tmp_path / "home"), "PATH": str(tools)}
    result = invoke(["e2e.setup", "--dry-run"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "FAIL kind" in out and "dry run: planning anyway" in out
    assert "[dry-run] KIND_EXPERIMENTAL_PROVIDER=podman kind create cluster" in out
    assert "[dry-run] podman build" in out and out.count("[dry-run] kubectl") >= 2
    assert re.search(r"dry run: \d+ kind quer(y|ies) not checked \(kind is not installed\)", out), out
    assert stack_maker.images() == []


def test_teardown_removes_only_this_stacks_archives(own_world):
    w = own_world
    w.write({"a": {}})
    ours = w.home / "runs" / "teststack-20261127-120000-1" / "a.tar"
    theirs = w.home / "runs" / "teststack-two-20261127-120000-2" / "a.tar"
    for tar in (ours, theirs):
        tar.parent.mkdir(parents=True)
        tar.write_bytes(b"partial")
    result = w.invoke("e2e.teardown")
    assert result.returncode == 0, result.stderr
    assert not ours.exists() and theirs.exists()  # another stack's run may still be loading it


# ---------------------------------------------------------------- failing fast, on the real cluster


def test_an_image_missing_from_the_node_fails_in_seconds_naming_what_the_pod_asked_for(world, base_image):
    """ErrImageNeverPull ends the wait at once (kubectl would wait out ready.timeout)."""
    missing = f"localhost/{world.maker.project}/absent:1"  # no service's: kindling leaves it as written
    world.write({"a": {"timeout": 300}})
    manifest = world.maker.folder / "manifests" / "a.yaml"
    docs = list(yaml.safe_load_all(manifest.read_text()))
    for doc in docs:
        if doc["kind"] == "Deployment":
            doc["spec"]["template"]["spec"]["containers"][0].update(image=missing, imagePullPolicy="Never")
    manifest.write_text(yaml.safe_dump_all(docs))
    result = world.invoke("e2e.setup")
    assert result.returncode == 1, result.stdout + result.stderr
    seconds = {s["id"]: s["seconds"] for s in world.last_run()["steps"]}
    assert seconds["deploy:a"] < 60, seconds  # not the 300 s ready timeout
    err = result.stderr
    assert "ErrImageNeverPull" in err and f'Container image "{missing}" is not present' in err, err
    assert f"the pod asked for: {missing}" in err and "the nodes hold:" in err, err
    logs = next(world.home.glob("runs/*/diagnostics/a/logs-a.txt")).read_text()
    assert "is waiting to start" in logs  # kubectl's stderr, kept


def test_a_crash_loop_and_a_failed_job_fail_in_seconds(world):
    world.write({"a": {"fault": "crashloop", "run_seconds": 0.5, "timeout": 300}})
    crash = world.invoke("e2e.setup")
    assert crash.returncode == 1 and "CrashLoopBackOff" in crash.stderr, crash.stdout + crash.stderr
    world.write({"m": {"job": True, "fault": "exit=3", "run_seconds": 0.5, "timeout": 300}})
    job = world.invoke("e2e.setup")
    assert job.returncode == 1, job.stdout + job.stderr
    assert "job m failed" in job.stderr and "BackoffLimitExceeded" in job.stderr, job.stderr
    seconds = {s["id"]: s["seconds"] for s in world.last_run()["steps"]}
    assert seconds["deploy:m"] < 60, seconds


def test_a_nodeport_another_service_holds_is_named_with_its_fix(world, testenv, shared_cluster):
    port = 30000 + int(world.maker.project[-4:], 16) % 2000
    holder = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "holder", "namespace": "default"},
        "spec": {"type": "NodePort", "selector": {"app": "x"}, "ports": [{"port": 80, "nodePort": port}]},
    }
    subprocess.run(
        ["kubectl", "--kubeconfig", str(shared_cluster.kubeconfig), "apply", "-f", "-"],
        input=json.dumps(holder),
        text=True,
        check=True,
        capture_output=True,
    )
    try:
        world.write({"a": {}})
        manifest = world.maker.folder / "manifests" / "a.yaml"
        manifest.write_text(
            manifest.read_text()
            .replace("- port: 8080", f"- port: 8080\n    nodePort: {port}")
            .replace("spec:\n  ports:", "spec:\n  type: NodePort\n  ports:")
        )
        result = world.invoke("e2e.setup")
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"Service a: nodePort {port} is already allocated" in result.stderr, result.stderr
        assert f"change or remove `nodePort: {port}` in {manifest}" in result.stderr
    finally:
        testenv.kubectl(
            shared_cluster.kubeconfig, "delete", "service", "holder", "-n", "default", check=False
        )


def test_a_stopped_cluster_is_not_used_and_one_kindling_made_is_recreated(own_world, testenv):
    """kind still lists a cluster whose node is stopped (podman nodes have no restart policy)."""
    w = own_world
    w.write({"a": {}})
    assert w.invoke("e2e.setup").returncode == 0
    node = f"{w.cluster}-control-plane"
    subprocess.run(["podman", "stop", "-t", "2", node], check=True, capture_output=True)
    assert w.cluster in w.clusters()
    status = w.invoke("cluster.status")
    assert status.returncode == 1 and "listed by kind but not usable" in status.stderr, status.stderr
    assert "not running" in status.stderr
    again = w.invoke("e2e.setup")
    assert again.returncode == 0, again.stdout + again.stderr
    outcomes = {s["id"]: s["outcome"] for s in w.last_run()["steps"]}
    assert outcomes["cluster"] == "recreated"
    assert set(w.deployed_images()) == {"a"}
    # Our kubeconfig follows a cluster recreated elsewhere: a stale port is replaced on ensure.
    text = w.kubeconfig.read_text()
    w.kubeconfig.write_text(re.sub(r"server: https://127\.0\.0\.1:\d+", "server: https://127.0.0.1:1", text))
    assert w.invoke("cluster.create").returncode == 0
    assert w.kubeconfig.read_text() == text


def test_a_cluster_made_elsewhere_is_only_replaced_on_request(own_world, testenv, tmp_path):
    w = own_world
    w.write({"a": {}})
    testenv.kind(
        "create",
        "cluster",
        "--name",
        w.cluster,
        "--image",
        testenv.node_image,
        "--config",
        str(kind_config(tmp_path)),
        "--kubeconfig",
        str(tmp_path / "theirs"),
        timeout=600,
    )
    subprocess.run(
        ["podman", "stop", "-t", "2", f"{w.cluster}-control-plane"], check=True, capture_output=True
    )
    refused = w.invoke("e2e.setup")
    assert refused.returncode == 1 and "--recreate" in refused.stderr, refused.stdout + refused.stderr
    assert w.cluster in w.clusters()  # not ours: left alone
    replaced = w.invoke("e2e.setup", "--recreate")
    assert replaced.returncode == 0, replaced.stdout + replaced.stderr
    assert {s["id"]: s["outcome"] for s in w.last_run()["steps"]}["cluster"] == "recreated"


@pytest.mark.parametrize("task", ["build", "cluster.create", "e2e.setup", "deploy.b"])
def test_invokes_own_dry_changes_nothing_in_any_task(own_world, task):
    """`invoke --dry TASK` is the task's --dry-run: nothing is built, created or applied."""
    w = own_world
    w.write(THREE)
    result = invoke(["--dry", task], w.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[dry-run]" in result.stdout
    commands = "".join(p.read_text() for p in w.home.glob("runs/*/commands.log"))
    for mutating in ("podman build", "kind create", "kubectl apply", "kind load"):
        assert not [line for line in commands.splitlines() if mutating in line and "[dry-run]" not in line]
    assert w.cluster not in w.clusters() and w.maker.images() == []
    assert not [c for c in w.tools.calls() if c["argv"][:2] == ["create", "cluster"] or "apply" in c["argv"]]


def test_a_pre_chain_of_three_services_leaves_three_run_folders(world):
    assert world.invoke("e2e.setup").returncode == 0
    before = set(world.home.glob("runs/*"))
    result = world.invoke("deploy.c")
    assert result.returncode == 0, result.stdout + result.stderr
    made = set(world.home.glob("runs/*")) - before
    assert len(made) == 3, made  # deploy.a, deploy.b (pre=) and deploy.c
    tasks = sorted(json.loads((folder / "run.json").read_text())["task"] for folder in made)
    assert tasks == ["deploy a", "deploy b", "deploy c"], tasks


def test_a_slow_start_is_waited_for(world):
    """A server that listens only after 4 s (a real `sleep`) is ready when the kubelet's TCP probe
    says so, not before."""
    world.write({"a": {"run_seconds": 4, "timeout": 120}})
    result = world.invoke("e2e.setup")
    assert result.returncode == 0, result.stdout + result.stderr
    seconds = {s["id"]: s["seconds"] for s in world.last_run()["steps"]}
    assert seconds["deploy:a"] >= 4, seconds


def test_a_missing_configmap_fails_at_the_ready_timeout_with_the_kubelets_reason(world):
    """A pod mounting a ConfigMap that does not exist stays ContainerCreating while the kubelet
    retries the mount (FailedMount): the wait ends at the ready timeout, and the diagnostics carry
    the kubelet's event."""
    world.write({"a": {"configmap": True, "timeout": 15}})
    manifest = world.maker.folder / "manifests" / "a.yaml"
    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d["kind"] != "ConfigMap"]
    manifest.write_text(yaml.safe_dump_all(docs))
    result = world.invoke("e2e.setup")
    assert result.returncode != 0
    assert "deploy:a failed" in result.stderr, result.stderr
    events = next(world.home.glob("runs/*/diagnostics/a/events.txt")).read_text()
    assert "FailedMount" in events and 'configmap "a-config" not found' in events, events
