"""Settings are read once, in one order: default < Invoke config < environment < task option."""

import dataclasses

import pytest

from tasks.libs.errors import KindlingError
from tasks.libs.samples import write_stack
from tasks.libs.settings import DEFAULT_TIMEOUTS, DeliveryMode, Strategy, build_settings
from tasks.libs.stack import load_stack


@pytest.fixture
def stack(tmp_path):
    return load_stack(write_stack(tmp_path, {"api": {}}, name="s", project="s", base_image="busybox"), env={})


def test_precedence_default_config_environment_option(stack):
    assert build_settings(stack, {}, memory_budget=0).delivery.mode is DeliveryMode.ARCHIVE
    config = {"load_via": "registry", "timeouts": "build=10", "keep_runs": 7, "strategy": "phased"}
    from_config = build_settings(stack, {}, config, memory_budget=0)
    assert from_config.delivery.mode is DeliveryMode.LOCAL_REGISTRY
    assert from_config.timeouts["build"] == 10 and from_config.keep_runs == 7
    assert from_config.strategy is Strategy.PHASED
    env = {"KINDLING_LOAD_VIA": "archive", "KINDLING_TIMEOUTS": "build=20", "KINDLING_KEEP_RUNS": "3"}
    from_env = build_settings(stack, env, config, memory_budget=0)
    assert from_env.delivery.mode is DeliveryMode.ARCHIVE
    assert from_env.timeouts["build"] == 20 and from_env.keep_runs == 3
    from_option = build_settings(stack, env, config, load_via="registry", strategy="serial", memory_budget=0)
    assert from_option.delivery.mode is DeliveryMode.LOCAL_REGISTRY
    assert from_option.strategy is Strategy.SERIAL


def test_settings_are_frozen(stack):
    settings = build_settings(stack, {}, memory_budget=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.dry_run = True
    with pytest.raises(TypeError):
        settings.timeouts["build"] = 1
    assert dict(settings.timeouts) == DEFAULT_TIMEOUTS


@pytest.mark.parametrize(
    "env, options, message",
    [
        ({"KINDLING_TIMEOUTS": "bild=5"}, {}, "KINDLING_TIMEOUTS: unknown step 'bild'"),
        ({"KINDLING_TIMEOUTS": "build=-1"}, {}, "must be a positive number"),
        ({"KINDLING_KEEP_RUNS": "0"}, {}, "KINDLING_KEEP_RUNS: '0' must be a number of runs"),
        ({"KINDLING_LOAD_VIA": "ftp"}, {}, "KINDLING_LOAD_VIA 'ftp': use archive or registry"),
        ({}, {"load_via": "ftp"}, "--load-via 'ftp'"),
        ({"KINDLING_KIND_REGISTRY_PORT": "99999"}, {"load_via": "registry"}, "KINDLING_KIND_REGISTRY_PORT"),
        ({"IMAGE_TAG": "Bad Tag"}, {}, "IMAGE_TAG"),
        ({}, {"strategy": "fastest"}, "unknown strategy 'fastest'"),
        ({}, {"context": "kind-x"}, "also give --registry"),
    ],
)
def test_bad_settings_name_their_origin(stack, env, options, message):
    with pytest.raises(KindlingError, match=message.replace("(", r"\(").replace("'", "'")):
        build_settings(stack, env, memory_budget=0, **options)


def test_registry_mode_and_an_existing_cluster(tmp_path):
    path = write_stack(tmp_path, {"api": {}}, name="s", project="s", base_image="busybox")
    stack = load_stack(path, env={"IMAGE_REGISTRY": "registry.example:5000"})
    delivery = build_settings(stack, {}, memory_budget=0).delivery
    assert delivery.mode is DeliveryMode.REGISTRY and not delivery.existing_cluster
    delivery = build_settings(stack, {"KUBECONFIG": "/k"}, kubeconfig="/other", memory_budget=0).delivery
    assert delivery.existing_cluster and delivery.kubeconfig == "/other"
    delivery = build_settings(stack, {"KUBECONFIG": "/k"}, context="prod", memory_budget=0).delivery
    assert delivery.context == "prod" and delivery.kubeconfig == "/k"
