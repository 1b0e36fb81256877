"""Stack profiles (tasks/libs/stack/profiles.py): partial stacks laid over the stack when it is read."""

import pytest
import yaml

from tasks.libs.errors import KindlingError, StackError
from tasks.libs.settings import profile_setting
from tasks.libs.stack import profiles
from tasks.libs.stack.model import load_stack


def write_stack(folder, profiles_section, **extra):
    (folder / "api").mkdir(exist_ok=True)
    (folder / "api" / "Containerfile").write_text("FROM scratch\n")
    (folder / "offline").mkdir(exist_ok=True)
    (folder / "offline" / "api.Containerfile").write_text("FROM scratch\nLABEL offline=1\n")
    (folder / "db.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: db}\n")
    stack = {
        "name": "shop",
        "services": {
            "db": {"image": "docker.io/library/postgres:16-alpine", "manifests": ["db.yaml"]},
            "api": {
                "build": {
                    "containerfile": "api/Containerfile",
                    "args": {"A": "1", "B": "2"},
                    "mounts": [{"source": str(folder), "target": "/src"}],
                },
                "depends_on": ["db"],
            },
        },
        "profiles": profiles_section,
        **extra,
    }
    path = folder / "stack.yaml"
    path.write_text(yaml.safe_dump(stack, sort_keys=False))
    return path


OFFLINE = {
    "offline": {
        "services": {
            "db": {"load": True},
            "api": {
                "build": {
                    "containerfile": "${STACK_DIR}/offline/api.Containerfile",
                    "args": {"B": "3"},
                    "mounts": None,
                }
            },
        }
    },
    "slow": {"timeouts": {"build": 7200}},
}


def test_without_a_profile_the_stack_is_as_written(tmp_path):
    stack = load_stack(write_stack(tmp_path, OFFLINE), env={})
    assert stack.profiles == ()
    assert not stack.services["db"].load
    assert stack.services["api"].build.containerfile == tmp_path / "api" / "Containerfile"
    assert stack.services["api"].build.mounts


def test_a_profile_merges_mappings_replaces_values_and_removes_nulls(tmp_path):
    stack = load_stack(write_stack(tmp_path, OFFLINE), env={}, profile_names=("offline",))
    assert stack.profiles == ("offline",)
    assert stack.services["db"].load
    api = stack.services["api"].build
    assert api.containerfile == tmp_path / "offline" / "api.Containerfile"
    assert dict(api.args) == {"A": "1", "B": "3"}
    assert not api.mounts
    assert stack.services["api"].depends_on == ("db",)  # untouched keys stay
    assert stack.timeouts == {}


def test_profiles_apply_in_the_order_given(tmp_path):
    stack = load_stack(write_stack(tmp_path, OFFLINE), env={}, profile_names=("offline", "slow"))
    assert stack.services["db"].load and stack.timeouts == {"build": 7200}


def test_an_unknown_profile_names_who_chose_it_and_the_profiles_there_are(tmp_path):
    with pytest.raises(StackError) as failed:
        load_stack(
            write_stack(tmp_path, OFFLINE), env={}, profile_names=("ofline",), profile_origin="E2E_PROFILE"
        )
    text = str(failed.value)
    assert "E2E_PROFILE names profile 'ofline', which the stack does not have (it has: offline, slow)" in text
    assert "stack.yaml" in text


def test_a_profile_cannot_add_a_service(tmp_path):
    path = write_stack(tmp_path, {"more": {"services": {"cache": {"image": "redis:7"}}}})
    with pytest.raises(StackError) as failed:
        load_stack(path, env={}, profile_names=("more",))
    assert "profiles.more.services.cache" in str(failed.value)
    assert "a profile changes services, it adds none" in str(failed.value)


@pytest.mark.parametrize(
    "section, field",
    [
        ({"bad": {"name": "other"}}, "profiles.bad.name"),
        ({"bad": {"nonsense": 1}}, "profiles.bad.nonsense"),
        ({"Bad Name": {}}, "profiles.Bad Name"),
        (["offline"], "profiles"),
    ],
)
def test_a_malformed_profile_is_refused_even_when_not_chosen(tmp_path, section, field):
    with pytest.raises(StackError) as failed:
        load_stack(write_stack(tmp_path, section), env={})
    assert f"{field}:" in str(failed.value) or f"field {field}" in str(failed.value), str(failed.value)


def test_a_profiles_result_is_validated_like_the_stack(tmp_path):
    path = write_stack(tmp_path, {"broken": {"services": {"db": {"load": "yes"}}}})
    with pytest.raises(StackError) as failed:
        load_stack(path, env={}, profile_names=("broken",))
    assert "services.db.load" in str(failed.value) and "must be true or false" in str(failed.value)


def test_overlay_leaves_its_inputs_unchanged():
    base = {"a": {"b": [1, 2], "c": 1}, "d": 1}
    changes = {"a": {"b": [3], "e": None}, "d": None}
    assert profiles.overlay(base, changes) == {"a": {"b": [3], "c": 1}}
    assert base == {"a": {"b": [1, 2], "c": 1}, "d": 1} and changes["d"] is None


def test_the_setting_comes_from_the_environment_before_the_config():
    config = {"profile": ["offline", "slow"]}  # a list, as a config file may give it
    assert profile_setting(config, {}) == (("offline", "slow"), "invoke config e2e.profile")
    assert profile_setting(config, {"E2E_PROFILE": " ci , offline "}) == (("ci", "offline"), "E2E_PROFILE")
    assert profile_setting({}, {}) == ((), "invoke config e2e.profile")
    with pytest.raises(KindlingError, match="must be profile names"):
        profile_setting({"profile": [1]}, {})
