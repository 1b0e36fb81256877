"""`invoke build --push`: real podman builds pushed to a real registry on loopback (no cluster)."""

import json

from conftest import invoke, podman_cmd, remove_registry_images


def env_for(path, tmp_path, **extra):
    return {"E2E_STACK": str(path), "KINDLING_HOME": str(tmp_path / "home"), **extra}


def test_build_push_sends_each_built_image_to_the_registry(stack_maker, registry, tmp_path):
    path = stack_maker.write({"a": {}, "b": {}})
    env = env_for(path, tmp_path, IMAGE_REGISTRY=registry.host, IMAGE_REGISTRY_TLS_VERIFY="false")
    try:
        result = invoke(["build", "--parallel", "--push"], env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert sorted(registry.catalog()) == [f"{stack_maker.project}/a", f"{stack_maker.project}/b"]
        images = json.loads(next((tmp_path / "home" / "runs").glob("*/images.json")).read_text())
        for service in "ab":
            ref = images[service]["ref"]
            assert ref.startswith(f"{registry.host}/{stack_maker.project}/{service}:")
            assert f"pushed {ref}" in result.stdout
            # The registry serves the image that was built: its manifest names the built image's
            # config, whose digest is the image ID. (Read from the registry rather than by untagging
            # and pulling back: podman 4.3 has refused that untag with exit 2 in CI, twice.)
            built_id = podman_cmd("image", "inspect", ref, "--format", "{{.Id}}").stdout.strip()
            repository, tag = ref.split("/", 1)[1].rsplit(":", 1)
            assert registry.config_digest(repository, tag) == f"sha256:{built_id}"
        log = next((tmp_path / "home" / "runs").glob("*/commands.log")).read_text()
        assert log.index("podman build") < log.index("podman push --tls-verify=false")
    finally:
        remove_registry_images(registry.host, stack_maker.project)


def test_build_without_push_leaves_the_registry_empty(stack_maker, registry, tmp_path):
    path = stack_maker.write({"a": {}})
    env = env_for(path, tmp_path, IMAGE_REGISTRY=registry.host, IMAGE_REGISTRY_TLS_VERIFY="false")
    try:
        result = invoke(["build"], env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert registry.catalog() == []
    finally:
        remove_registry_images(registry.host, stack_maker.project)


def test_build_push_without_a_registry_is_refused_before_building(stack_maker, tmp_path):
    path = stack_maker.write({"a": {}})
    result = invoke(["build", "--push"], env_for(path, tmp_path, IMAGE_REGISTRY=""))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "build --push: stack teststack has no registry to push to; pass --registry" in result.stderr
    assert "IMAGE_REGISTRY" in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr
    assert stack_maker.images() == []  # nothing was built


def test_build_push_is_documented_in_help():
    result = invoke(["--help", "build"])
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # invoke wraps the help column
    assert "--push Afterwards push each built image to the registry" in text
