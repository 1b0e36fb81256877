"""The step graph planned from a stack alone: no commands, no cluster."""

import pytest

from tasks.libs.delivery import ArchiveDelivery, RegistryDelivery
from tasks.libs.plan import PlannedStep, StepKind, Strategy, build_plan, image_plan, setup_plan
from tasks.libs.samples import write_stack
from tasks.libs.settings import build_settings
from tasks.libs.stack.model import load_stack

ARCHIVE = ArchiveDelivery()


@pytest.fixture
def stack(tmp_path):
    path = write_stack(
        tmp_path,
        {
            "db": {"image": "docker.io/library/postgres:16"},
            "api": {"depends_on": ["db"]},
            "web": {"depends_on": ["api"]},
        },
        name="plan",
        project="plan",
        base_image="busybox",
    )
    return load_stack(path, env={})


def graph(steps) -> dict:
    return {s.id: set(s.needs) for s in steps}


def test_pipelined_archive_plan(stack):
    steps = setup_plan(stack, stack.order(), ARCHIVE, Strategy.PIPELINED)
    assert all(isinstance(s, PlannedStep) for s in steps)
    assert graph(steps) == {
        "cluster": set(),
        "image:api": set(),
        "image:web": set(),
        "load:api": {"cluster", "image:api"},
        "load:web": {"cluster", "image:web"},
        "deploy:db": {"cluster"},  # prebuilt and not `load:`: the node pulls it
        "deploy:api": {"cluster", "load:api", "deploy:db"},
        "deploy:web": {"cluster", "load:web", "deploy:api"},
    }
    assert {s.kind for s in steps} == {StepKind.CLUSTER, StepKind.IMAGE, StepKind.LOAD, StepKind.DEPLOY}


def test_a_partial_plan_assumes_dependencies_outside_it_are_up(stack):
    steps = setup_plan(stack, ["web"], ARCHIVE, Strategy.PIPELINED)
    assert graph(steps)["deploy:web"] == {"cluster", "load:web"}
    assert [s.id for s in image_plan(stack, ["db", "web"])] == ["image:web"]


def test_local_registry_plan(stack):
    local = build_settings(stack, {"KINDLING_LOAD_VIA": "registry"}, memory_budget=0).delivery
    steps = graph(setup_plan(stack, stack.order(), local, Strategy.PIPELINED))
    assert steps["registry"] == set()
    assert steps["registry-wiring"] == {"cluster", "registry"}
    assert steps["push:api"] == {"image:api", "registry"}
    assert "push:db" not in steps  # prebuilt: pulled from where it lives
    assert steps["deploy:api"] == {"cluster", "push:api", "registry-wiring", "deploy:db"}


def test_a_loopback_registry_plan_wires_the_nodes_of_kindlings_cluster_before_any_deploy(stack):
    loopback = RegistryDelivery("127.0.0.1:5000", False)
    steps = graph(setup_plan(stack, stack.order(), loopback, Strategy.PIPELINED))
    assert steps["registry-wiring"] == {"cluster"} and "registry" not in steps  # no container to run
    assert steps["push:api"] == {"image:api"}  # pushes go from this host: no wiring needed
    assert steps["deploy:api"] == {"cluster", "push:api", "registry-wiring", "deploy:db"}
    assert steps["deploy:db"] == {"cluster", "registry-wiring"}
    for delivery in (
        RegistryDelivery("127.0.0.1:5000", False, context="prod"),  # not ours: refused earlier
        RegistryDelivery("registry.example:5000"),
    ):
        assert "registry-wiring" not in graph(setup_plan(stack, stack.order(), delivery, Strategy.PIPELINED))


def test_phased_is_kubernauts_december_flow(stack):
    steps = graph(setup_plan(stack, stack.order(), ARCHIVE, Strategy.PHASED))
    builds = {"image:api", "image:web"}
    assert builds <= steps["load:api"] and builds <= steps["load:web"]
    assert {"load:api", "load:web"} <= steps["deploy:db"]
    assert "deploy:db" in steps["deploy:api"] and "deploy:api" in steps["deploy:web"]


def test_batched_is_dd_test_002(stack):
    """Every build, then the cluster, then every load, then every deploy at once."""
    steps = graph(setup_plan(stack, stack.order(), ARCHIVE, Strategy.BATCHED))
    builds = {"image:api", "image:web"}
    assert steps["cluster"] == builds
    for deploy in ("deploy:db", "deploy:api", "deploy:web"):
        assert {"load:api", "load:web"} <= steps[deploy]
        assert not {n for n in steps[deploy] if n.startswith("deploy:")}


def test_build_pushes_and_saves_each_image_after_every_build(stack):
    images = ("image:api", "image:web")
    plan = {s.id: s.needs for s in build_plan(stack, ["api", "web"], push=True, save=True)}
    assert plan == {
        "image:api": (),
        "image:web": (),
        "push:api": images,
        "push:web": images,
        "save:api": images,
        "save:web": images,
    }
    assert [s.id for s in build_plan(stack, ["api"])] == ["image:api"]
