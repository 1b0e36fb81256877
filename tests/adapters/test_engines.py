"""Each container engine behind the one interface (adapters/engine/): the same calls, each engine's
own argument lists and facts. Pure: commands are answered by the fake runner."""

import pytest

from tasks.libs.adapters.engine import ENGINES, Docker, Podman, engine_class, for_program
from tasks.libs.adapters.kind import kind_network
from tasks.libs.errors import KindlingError
from tasks.libs.procs.fakerunner import FakeRunner
from tasks.libs.procs.runner import Result
from tasks.libs.stack.model import ENGINES as STACK_ENGINES


def test_the_engines_a_stack_may_name_are_the_engine_modules():
    assert set(STACK_ENGINES) == set(ENGINES) == {"podman", "docker"}
    for program, engine in ENGINES.items():
        assert engine_class(program) is engine and engine.program == program
        assert type(for_program(FakeRunner(), program)) is engine
        assert engine.kind_network_variable.startswith("KIND_EXPERIMENTAL_")


@pytest.mark.parametrize(
    "engine, push, exists",
    [
        (Podman, ["podman", "push", "--tls-verify=false", "r:1"], ["podman", "image", "exists", "r:1"]),
        (Docker, ["docker", "push", "r:1"], ["docker", "image", "inspect", "r:1"]),
    ],
)
def test_each_engine_says_a_command_its_own_way(engine, push, exists):
    runner = FakeRunner()
    adapter = engine(runner)
    adapter.push("r:1", tls_verify=False)
    assert adapter.image_exists("r:1")
    assert [call.argv for call in runner.calls] == [push, exists]


def test_only_podman_lists_the_store_with_labels_in_one_command():
    listed = '[{"Names": ["localhost/p/api:1"], "Labels": {"k": "v"}, "Created": 5}]'
    podman = Podman(FakeRunner([(lambda argv: argv[1] == "images", Result(listed, 0))]))
    assert podman.list_images() == [(("localhost/p/api:1",), {"k": "v"}, 5)]
    docker_runner = FakeRunner()
    assert Docker(docker_runner).list_images() is None and docker_runner.calls == []


def test_a_build_asks_of_the_engine_only_what_it_can_do(tmp_path):
    runner = FakeRunner()
    Podman(runner).build("r:1", "Containerfile", ".", mounts=[("/c", "/root/.cache")], ignore_file="ig")
    assert runner.calls[0].argv[-5:] == ["--ignorefile", "ig", "--volume", "/c:/root/.cache:U,z", "."]
    with pytest.raises(KindlingError, match="docker build cannot be given an ignore file"):
        Docker(FakeRunner()).build("r:1", "Containerfile", ".", ignore_file="ig")
    with pytest.raises(KindlingError, match="docker build cannot mount folders into RUN steps"):
        Docker(FakeRunner()).build("r:1", "Containerfile", ".", mounts=[("/c", "/root/.cache")])


def test_each_engine_reads_its_facts_from_its_own_answers():
    assert Podman.cgroup_version({"host": {"cgroupVersion": "v2"}}) == "v2"
    assert Docker.cgroup_version({"CgroupVersion": "1"}) == "v1"
    assert Docker.cgroup_version({}) == Podman.cgroup_version({}) == ""
    env = {"KIND_EXPERIMENTAL_PODMAN_NETWORK": "pn", "KIND_EXPERIMENTAL_DOCKER_NETWORK": "dn"}
    assert (kind_network("podman", env), kind_network("docker", env), kind_network("docker", {})) == (
        "pn",
        "dn",
        "kind",
    )
    home = {"HOME": "/h"}
    assert "/h/.docker/config.json" in map(str, Docker.config_files(home))
    assert "/h/.config/containers/containers.conf" in map(str, Podman.config_files(home))
