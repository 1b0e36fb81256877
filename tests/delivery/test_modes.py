"""Each delivery mode behind the one interface: the steps it plans are the steps it performs, and
the pull policy it gives matches where it puts the images. Pure: no commands."""

import pytest

from tasks.libs.delivery import ArchiveDelivery, LocalRegistryDelivery, RegistryDelivery
from tasks.libs.plan import StepKind, Strategy, setup_plan
from tasks.libs.samples import write_stack
from tasks.libs.stack.model import load_stack

MODES = {
    "archive": ArchiveDelivery(),
    "local registry": LocalRegistryDelivery(),
    "registry": RegistryDelivery("registry.example:5000"),
    "loopback registry": RegistryDelivery("127.0.0.1:5000", False),
    "existing cluster": RegistryDelivery("registry.example:5000", context="prod"),
}
COMMON = {StepKind.CLUSTER, StepKind.IMAGE, StepKind.PUSH, StepKind.DEPLOY}  # Environment binds these


@pytest.fixture
def stack(tmp_path):
    path = write_stack(
        tmp_path,
        {
            "db": {"image": "docker.io/library/postgres:16"},  # prebuilt, pulled
            "cache": {"image": "localhost/cache:1", "load": True},  # prebuilt, from the local store
            "api": {"depends_on": ["db", "cache"]},  # built
        },
        name="m",
        project="m",
        base_image="busybox",
    )
    return load_stack(path, env={})


@pytest.mark.parametrize("name", MODES)
def test_every_step_a_mode_plans_is_bound_to_the_mode_or_the_environment(stack, name):
    delivery = MODES[name]
    planned = {step.kind for step in setup_plan(stack, stack.order(), delivery, Strategy.PIPELINED)}
    assert planned <= COMMON | set(delivery.actions()), name
    assert set(delivery.actions()) <= planned | {StepKind.REGISTRY_WIRING}  # wiring: only when routed


@pytest.mark.parametrize("name", MODES)
def test_a_mode_delivers_what_it_makes_the_pods_expect(stack, name):
    delivery = MODES[name]
    steps = {step.id for step in setup_plan(stack, stack.order(), delivery, Strategy.PIPELINED)}
    policies = {s: delivery.pull_policy(svc) for s, svc in stack.services.items()}
    if delivery.pushes:
        # Built images are pushed and pulled; prebuilt ones are pulled from where they live.
        assert {"push:api"} <= steps and not {"push:db", "push:cache"} & steps
        assert policies == {"api": "IfNotPresent", "db": None, "cache": None}
    else:
        # Loaded images exist only on the nodes: a pull is never tried.
        assert {"load:api", "load:cache"} <= steps and "load:db" not in steps
        assert policies == {"api": "Never", "db": None, "cache": "Never"}
