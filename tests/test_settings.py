"""Settings are read once, in one order: default < Invoke config < environment < task option."""

import dataclasses
import os

import pytest
import yaml
from conftest import ROOT

from tasks.libs.delivery import DeliveryMode, loopback_refusal
from tasks.libs.errors import KindlingError
from tasks.libs.plan import Strategy
from tasks.libs.samples import write_stack
from tasks.libs.settings import DEFAULT_TIMEOUTS, SETTINGS, build_settings
from tasks.libs.stack.model import load_stack


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
        ({}, {"strategy": "fastest"}, "--strategy: unknown strategy 'fastest'"),
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


@pytest.mark.parametrize("host", ["127.0.0.1:5000", "127.0.0.2:5000", "localhost:5000", "[::1]:5000"])
def test_a_loopback_registry_is_routed_on_kindlings_cluster_and_refused_on_one_it_did_not_make(
    tmp_path, host
):
    path = write_stack(tmp_path, {"api": {}}, name="s", project="s", base_image="busybox")
    stack = load_stack(path, env={"IMAGE_REGISTRY": host})
    ours = build_settings(stack, {}, memory_budget=0).delivery
    assert ours.loopback and ours.routes_loopback and loopback_refusal(ours, None) is None
    theirs = build_settings(stack, {}, context="prod", memory_budget=0).delivery
    assert theirs.loopback and not theirs.routes_loopback
    message = loopback_refusal(theirs, None)
    assert f"registry {host} is on this host's loopback" in message and "(context prod)" in message
    assert "kindling cannot look into its nodes" in message
    assert "drop --context/--kubeconfig" in message and "--load-via registry" in message
    assert f"/etc/containerd/certs.d/{host}/hosts.toml" in message
    assert f'kube-public/local-registry-hosting with host: "{host}"' in message
    # Its nodes map that very host, as kind's local-registry guide does: the cluster says so, or each
    # node (a Kind node container here) has a hosts.toml for it.
    assert loopback_refusal(theirs, host) is None
    assert loopback_refusal(theirs, None, unmapped=[]) is None
    assert 'it names "other:5001"' in loopback_refusal(theirs, "other:5001")
    assert "but n2 has no hosts.toml for it" in loopback_refusal(theirs, None, unmapped=["n2"])
    assert "but n1, n2 have no hosts.toml" in loopback_refusal(theirs, None, unmapped=["n1", "n2"])
    by_file = build_settings(stack, {}, kubeconfig="/k", memory_budget=0).delivery
    assert "(kubeconfig /k)" in loopback_refusal(by_file, None)


def test_registries_off_the_loopback_and_kinds_local_registry_are_never_refused(tmp_path):
    path = write_stack(tmp_path, {"api": {}}, name="s", project="s", base_image="busybox")
    remote = build_settings(
        load_stack(path, env={"IMAGE_REGISTRY": "registry.example:5000"}), {}, context="prod", memory_budget=0
    ).delivery
    assert not remote.loopback and not remote.routes_loopback and loopback_refusal(remote, None) is None
    local = build_settings(load_stack(path, env={}), {}, load_via="registry", memory_budget=0).delivery
    # localhost:5001 is kind's registry container, which the nodes reach by its hosts.toml: no loopback route.
    assert local.registry == "localhost:5001" and loopback_refusal(local, None) is None
    assert [step.kind.value for step in local.setup_steps("cluster")] == ["registry", "registry-wiring"]


# ------------------------------------------------------------------------------------------------
# Every key of the table through Invoke's own loading: INVOKE_E2E_<KEY> and a `-f` file.

# key -> (value, what it must do): a string is a fragment of the error both routes give; a
# callable checks the settings both routes produce.
KEY_CASES = {
    "stack": ("missing.yaml", "missing.yaml"),
    "profile": ("bogus", "invoke config e2e.profile names profile 'bogus', which the stack does not have"),
    "coverage": ("true", lambda s: s.coverage),
    "load_via": ("carrier-pigeon", "'carrier-pigeon': use archive or registry"),
    "kind_registry.name": ("my-registry", lambda s: s.delivery.kind_registry["name"] == "my-registry"),
    "kind_registry.port": ("99999", "'99999' must be a port number"),
    "kind_registry.image": ("localhost/r:1", lambda s: s.delivery.kind_registry["image"] == "localhost/r:1"),
    "image_tag": ("not a tag!", "invoke config e2e.image_tag: "),
    "timeouts": ("build=soon", "'build=soon' needs a number of seconds"),
    "keep_runs": ("0", "'0' must be a number of runs, 1 or more"),
    "lock_wait": ("a while", "'a while' must be a number of seconds"),
    "keep_cluster": ("yes", lambda s: s.keep_cluster),
    "strategy": (
        "bogus",
        "invoke config e2e.strategy: unknown strategy 'bogus': use one of pipelined, phased, batched, serial",
    ),
    "base_images": (
        "registry.example/ubi=localhost/mirror/ubi:10",
        lambda s: s.base_images == (("registry.example/ubi", "localhost/mirror/ubi:10"),),
    ),
}


def settings_through_invoke(monkeypatch, folder, key, value, route):
    """The settings a task would build, with `key` set through `route` ("env" or "file") and
    everything loaded by Invoke's Config as `invoke -f FILE` does (project, runtime file, shell)."""
    from invoke import Config, Context

    from tasks.libs import cli

    # The environment variables of the table outrank Invoke's config (the test environment sets
    # KINDLING_KIND_REGISTRY_IMAGE, for one): only Invoke's routes are under test here.
    variables = {row[2] for row in SETTINGS if row[2]}
    for name in [n for n in os.environ if n.startswith("INVOKE_") or n in variables]:
        monkeypatch.delenv(name)
    # Run folders of its own: not the project's, which tests in other workers prune too.
    monkeypatch.setenv("KINDLING_HOME", str(folder / "home"))
    other = {"load_via": "registry"} if key.startswith("kind_registry.") else {}
    if key != "stack":
        other["stack"] = str(ROOT / "demo.yaml")
    values = {**other, key: value}
    runtime = None
    if route == "env":
        for name, text in values.items():
            monkeypatch.setenv("INVOKE_E2E_" + name.replace(".", "_").upper(), text)
    else:
        section = {}
        for name, text in values.items():
            *parents, leaf = name.split(".")
            node = section
            for parent in parents:
                node = node.setdefault(parent, {})
            node[leaf] = text
        runtime = folder / f"{route}-{key}.yaml"
        runtime.write_text(yaml.safe_dump({"e2e": section}))
    monkeypatch.chdir(folder)
    config = Config(defaults={**Config.global_defaults(), **cli.CONFIG_DEFAULTS}, runtime_path=runtime)
    config.load_runtime()
    config.load_shell_env()
    return cli.environment(Context(config=config)).ctx.settings


@pytest.mark.parametrize("key", [row[1] for row in SETTINGS])
def test_every_key_works_alike_from_invoke_e2e_variables_and_a_config_file(monkeypatch, tmp_path, key):
    value, expected = KEY_CASES[key]  # a new setting needs a case here
    outcomes = []
    for route in ("env", "file"):
        try:
            outcomes.append(settings_through_invoke(monkeypatch, tmp_path, key, value, route))
        except KindlingError as exc:
            outcomes.append(str(exc))
    from_env, from_file = outcomes
    if isinstance(expected, str):
        assert isinstance(from_env, str) and expected in from_env, from_env
        assert from_env == from_file
    else:
        assert expected(from_env) and expected(from_file)


def test_the_readme_lists_every_setting():
    rows = {
        tuple(cell.strip() for cell in line.strip().strip("|").split("|"))
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("| ")
    }
    for setting, key, variable, option, _meaning in SETTINGS:
        cells = (setting, f"`{key}`", f"`{variable}`" if variable else "", f"`{option}`" if option else "")
        assert cells in rows, cells


def test_base_images_setting_wins_in_this_order_and_names_its_origin_when_wrong():
    stack = load_stack(ROOT / "demo.yaml", env={})
    mirror = "registry.example/ubi"
    config = {"base_images": {mirror: "localhost/from-config:1"}}  # a mapping, as in a -f file
    env = {"KINDLING_BASE_IMAGES": f"{mirror}=localhost/from-env:1"}
    assert build_settings(stack, {}, config).base_images == ((mirror, "localhost/from-config:1"),)
    assert build_settings(stack, env, config).base_images == ((mirror, "localhost/from-env:1"),)
    chosen = build_settings(stack, env, config, base_images=f"{mirror}=localhost/from-option:1,golang=go:1")
    assert chosen.base_images == ((mirror, "localhost/from-option:1"), ("golang", "go:1"))
    for value, origin, problem in (
        ("registry.example/ubi", "--base-images", "'registry.example/ubi' is not REPOSITORY=IMAGE"),
        ("registry.example/ubi:9=localhost/u:1", "--base-images", "names a tag or digest"),
        ("registry.example/ubi=Not A Ref", "--base-images", "base images.registry.example/ubi"),
    ):
        with pytest.raises(KindlingError) as failed:
            build_settings(stack, {}, {}, base_images=value)
        assert str(failed.value).startswith(f"{origin}: ") and problem in str(failed.value), str(failed.value)
        assert "fix: " in str(failed.value)
    with pytest.raises(KindlingError) as failed:
        build_settings(stack, {"KINDLING_BASE_IMAGES": "nonsense"}, {})
    assert str(failed.value).startswith("KINDLING_BASE_IMAGES: 'nonsense' is not REPOSITORY=IMAGE")
