"""e2e.setup, deploy.<service> and e2e.teardown: real podman builds, kind/kubectl fakes."""

import json
import subprocess

import pytest

from conftest import FAKES, image_exists, invoke


@pytest.fixture
def world(stack_maker, fake_tools, tmp_path):
    """A 3-service stack (a <- b <- c, a <- c) with the fakes on PATH."""
    path = stack_maker.write({
        "a": {"sleep": 1, "configmap": True},
        "b": {"sleep": 1, "depends_on": ["a"]},
        "c": {"sleep": 1, "depends_on": ["a", "b"]},
    })
    home = tmp_path / "home"
    fake_tools.scenario(remote_pull=False)  # an image name kindling forgot to rewrite cannot be pulled
    env = {**fake_tools.env, "E2E_STACK": str(path), "KINDLING_HOME": str(home)}
    return World(stack_maker, fake_tools, env, home)


class World:
    def __init__(self, maker, fakes, env, home):
        self.maker, self.fakes, self.env, self.home = maker, fakes, env, home
        self.cluster = f"{maker.project}-e2e"
        self.kubeconfig = home / "clusters" / self.cluster / "kubeconfig"

    def invoke(self, *args, **env):
        return invoke(list(args), {**self.env, **env})

    def kubectl_json(self, *args):
        out = subprocess.run([str(FAKES / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args, "-o", "json"],
                             capture_output=True, text=True, env={**self.env}, check=True).stdout
        return json.loads(out)

    def node_images(self):
        out = subprocess.run(["podman", "exec", f"{self.cluster}-control-plane", "crictl", "images", "-o", "json"],
                             capture_output=True, text=True, check=True).stdout
        return {tag for image in json.loads(out)["images"] for tag in image["repoTags"]}

    def clusters(self):
        out = subprocess.run([str(FAKES / "kind"), "get", "clusters"], capture_output=True, text=True,
                             env={**self.env, "KIND_EXPERIMENTAL_PROVIDER": "podman"}).stdout
        return out.split()

    def last_run(self):
        runs = sorted((self.home / "runs").glob("*/run.json"), key=lambda p: p.stat().st_mtime)
        return json.loads(runs[-1].read_text())

    def deployed_images(self):
        items = self.kubectl_json("get", "deployments", "-n", "testns")["items"]
        return {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"] for d in items}


def spans(calls, predicate):
    return [(c["start"], c["end"]) for c in calls if predicate(c["argv"])]


def test_setup_deploys_in_dependency_order_with_loaded_images(world):
    result = world.invoke("e2e.setup")
    assert result.returncode == 0, result.stdout + result.stderr
    assert world.cluster in world.clusters()
    assert oct(world.kubeconfig.stat().st_mode & 0o777) == "0o600"

    # Every deployed reference is exactly one the node holds, under localhost/.
    deployed = world.deployed_images()
    assert set(deployed) == {"a", "b", "c"}
    held = world.node_images()
    for name, ref in deployed.items():
        assert ref.startswith(f"localhost/{world.maker.project}/{name}:")
        assert ref in held

    # Order: a dependant is applied only after its dependencies' rollouts finished.
    calls = world.fakes.calls("kubectl")
    def rollout_end(name):
        return max(end for start, end in spans(calls, lambda a: "rollout" in a and f"deployment/{name}" in a))
    def apply_start(name):
        return min(start for start, end in spans(
            calls, lambda a: "apply" in a and any(x.endswith(f"/{name}.yaml") for x in a)))
    assert rollout_end("a") <= apply_start("b")
    assert rollout_end("b") <= apply_start("c")

    # Every kind call was told the provider.
    assert all(c["provider"] == "podman" for c in world.fakes.calls("kind"))
    # No archive is left behind; the summary names each service.
    assert not list(world.home.glob("runs/*/*.tar"))
    for name in "abc":
        assert f"\n{name} " in result.stdout
    assert "critical path" in result.stdout


def test_second_setup_reuses_everything(world):
    assert world.invoke("e2e.setup").returncode == 0
    creates_before = len([c for c in world.fakes.calls("kind") if c["argv"][:2] == ["create", "cluster"]])
    images_before = world.maker.images()
    again = world.invoke("e2e.setup")
    assert again.returncode == 0, again.stderr
    creates_after = len([c for c in world.fakes.calls("kind") if c["argv"][:2] == ["create", "cluster"]])
    assert creates_after == creates_before == 1
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
    calls_before = len(world.fakes.calls("kubectl"))
    result = world.invoke("deploy.c")
    assert result.returncode == 0, result.stdout + result.stderr
    after = world.deployed_images()
    assert after["a"] == before["a"] and after["b"] == before["b"]
    assert after["c"] != before["c"] and after["c"] in world.node_images()
    applied = [c["argv"] for c in world.fakes.calls("kubectl")[calls_before:] if "apply" in c["argv"]]
    applied_files = {a[a.index("-f") + 1].rsplit("/", 1)[-1] for a in applied}
    assert applied_files <= {"c.yaml", "namespace.yaml"} and "c.yaml" in applied_files
    assert "up to date" in result.stdout  # the pre= chain ensured a and b without redoing them


def test_deploy_on_a_missing_environment_brings_up_what_is_needed(world):
    result = world.invoke("deploy.b")
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(world.deployed_images()) == {"a", "b"}


def test_failed_rollout_writes_diagnostics_and_deletes_the_new_cluster(world):
    world.fakes.scenario(rollout_fail=["b"], remote_pull=False)
    result = world.invoke("e2e.setup")
    assert result.returncode != 0
    assert "deploy:b failed" in result.stderr and "diagnostics:" in result.stderr
    assert "Traceback" not in result.stderr
    diagnostics = next(world.home.glob("runs/*/diagnostics/b"))
    assert (diagnostics / "describe-pods.txt").exists() and (diagnostics / "events.txt").exists()
    assert any((diagnostics / "kind-logs").iterdir())
    statuses = {s["id"]: s["status"] for s in world.last_run()["steps"]}
    assert statuses["deploy:a"] == "ok" and statuses["deploy:b"] == "failed" and statuses["deploy:c"] == "not run"
    assert world.cluster not in world.clusters()  # created by this run, not asked to keep


def test_keep_cluster_on_failure(world):
    world.fakes.scenario(rollout_fail=["b"], remote_pull=False)
    result = world.invoke("e2e.setup", KEEP_CLUSTER="1")
    assert result.returncode != 0
    assert world.cluster in world.clusters()


def test_teardown_leaves_no_cluster_tar_or_built_image(world, base_image):
    assert world.invoke("e2e.setup").returncode == 0
    assert world.maker.images()
    result = world.invoke("e2e.teardown")
    assert result.returncode == 0, result.stderr
    assert world.cluster not in world.clusters()
    assert not world.kubeconfig.exists()
    assert world.maker.images() == []
    assert not list(world.home.glob("runs/*/*.tar"))
    assert image_exists(base_image)  # never an image kindling did not build
    node = subprocess.run(["podman", "container", "exists", f"{world.cluster}-control-plane"])
    assert node.returncode == 1


def test_dry_run_setup_changes_nothing(world):
    result = world.invoke("e2e.setup", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[dry-run] KIND_EXPERIMENTAL_PROVIDER=podman kind create cluster" in result.stdout
    assert "[dry-run] podman build" in result.stdout and "[dry-run] kubectl" in result.stdout
    assert world.clusters() == [] and world.maker.images() == []


def test_teardown_removes_only_this_stacks_archives(world):
    ours = world.home / "runs" / "teststack-20261127-120000-1" / "a.tar"
    theirs = world.home / "runs" / "teststack-two-20261127-120000-2" / "a.tar"
    for tar in (ours, theirs):
        tar.parent.mkdir(parents=True)
        tar.write_bytes(b"partial")
    result = world.invoke("e2e.teardown")
    assert result.returncode == 0, result.stderr
    assert not ours.exists() and theirs.exists()  # another stack's run may still be loading it
