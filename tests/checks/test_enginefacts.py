"""The engine's facts kept between runs (enginefacts.py): what the key covers, and the preflight
asking `podman info` only when the kept answer is not for this host as it is now."""

import json
import os

from tasks.libs.checks import enginefacts, preflight
from tasks.libs.procs.fakerunner import FakeRunner
from tasks.libs.procs.runner import Result

INFO = {
    "host": {"security": {"rootless": False}, "cgroupVersion": "v2", "logDriver": "k8s-file", "memFree": 123},
    "store": {"graphRoot": "/var/lib/containers/storage", "imageStore": {"number": 7}},
}


def host_env(tmp_path) -> dict:
    """A HOME of its own and a podman on a PATH of its own (the key stats the binary)."""
    (tmp_path / "bin").mkdir(exist_ok=True)
    podman = tmp_path / "bin" / "podman"
    podman.write_text("#!/bin/sh\n")
    podman.chmod(0o755)
    (tmp_path / "home").mkdir(exist_ok=True)
    return {"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path / "home")}


def info_runner():
    return FakeRunner([(lambda a: a[:2] == ["podman", "info"], Result(json.dumps(INFO), 0))])


def infos_run(runner) -> int:
    return len(runner.commands("podman", "info"))


def test_the_key_follows_the_binary_the_configuration_and_the_environment(tmp_path):
    env = host_env(tmp_path)
    first = enginefacts.key("podman", env)
    assert first == enginefacts.key("podman", env)
    user_conf = tmp_path / "home" / ".config" / "containers" / "containers.conf"
    user_conf.parent.mkdir(parents=True)
    user_conf.write_text('[containers]\nlog_driver = "journald"\n')
    second = enginefacts.key("podman", env)
    assert second != first  # a configuration file appeared
    user_conf.write_text('[containers]\nlog_driver = "k8s-file"\n')
    assert enginefacts.key("podman", env) != second  # ... and changed
    assert enginefacts.key("podman", {**env, "CONTAINERS_CONF": "/elsewhere.conf"}) != enginefacts.key(
        "podman", env
    )
    before = enginefacts.key("podman", env)
    binary = tmp_path / "bin" / "podman"
    os.utime(binary, ns=(0, binary.stat().st_mtime_ns + 10**9))  # an upgraded engine
    assert enginefacts.key("podman", env) != before
    assert enginefacts.key("podman", {**env, "PATH": str(tmp_path / "home")}) is None  # not installed


def test_only_the_facts_the_preflight_reads_are_kept():
    assert enginefacts.pick("podman", INFO) == {
        "host": {"security": {"rootless": False}, "cgroupVersion": "v2", "logDriver": "k8s-file"},
        "store": {"graphRoot": "/var/lib/containers/storage"},
    }
    assert enginefacts.pick("docker", {"DockerRootDir": "/d", "CgroupVersion": "2", "Images": 3}) == {
        "DockerRootDir": "/d",
        "CgroupVersion": "2",
    }


def test_a_second_run_reads_the_kept_facts_instead_of_asking_podman(tmp_path):
    env, folder = host_env(tmp_path), tmp_path / "state" / "host"
    first = info_runner()
    checks, store = preflight.kindhost.podman_checks(preflight.HostInfo(first, "podman", folder, env))
    assert infos_run(first) == 1 and (folder / "podman-info.json").exists()
    second = info_runner()
    kept_checks, kept_store = preflight.kindhost.podman_checks(
        preflight.HostInfo(second, "podman", folder, env)
    )
    assert infos_run(second) == 0
    assert [c.line() for c in kept_checks] == [c.line() for c in checks] and kept_store == store
    # Another configuration: asked again.
    third = info_runner()
    preflight.HostInfo(
        third, "podman", folder, {**env, "CONTAINERS_CONF": str(tmp_path / "c.conf")}
    ).engine_info()
    assert infos_run(third) == 1


def test_kept_facts_older_than_a_day_or_a_failed_answer_are_not_used(tmp_path):
    env, folder = host_env(tmp_path), tmp_path / "host"
    key = enginefacts.key("podman", env)
    enginefacts.write(folder, "podman", key, INFO, now=1000.0)
    assert enginefacts.read(folder, "podman", key, now=1000.0 + enginefacts.MAX_AGE - 1) is not None
    assert enginefacts.read(folder, "podman", key, now=1000.0 + enginefacts.MAX_AGE + 1) is None
    failing = FakeRunner([(lambda a: a[:2] == ["podman", "info"], Result("", 125, "cannot connect"))])
    info, failure = preflight.HostInfo(failing, "podman", tmp_path / "other", env).engine_info()
    assert info is None and "cannot connect" in failure
    assert not (tmp_path / "other").exists()  # nothing kept of a failure: the next run asks again
