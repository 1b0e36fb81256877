"""Base-image substitution (`base_images`, `build.base_images`; tasks/libs/stack/baseimages.py): which FROMs
are rewritten and how, the stack fields, and a real podman build of a Containerfile whose FROMs name
images no registry here serves."""

import json

import pytest
import yaml
from conftest import invoke, podman_cmd

from tasks import stackcheck
from tasks.libs.errors import StackError
from tasks.libs.stack import baseimages
from tasks.libs.stack.model import load_stack

PINNED = "sha256:" + "ab" * 32
# Kubernaut's shape: the builder through an ARG with a digest-pinned default, a runtime stage from a
# literal digest-pinned reference, a stage built on an earlier one, and scratch.
CONTAINERFILE = f"""\
ARG BUILDER_IMAGE=registry.example/ubi10/go-toolset:1.26@{PINNED}
FROM ${{BUILDER_IMAGE}} AS builder
RUN echo building > /built
FROM builder AS tested
RUN cat /built
FROM --platform=linux/amd64 \\
    registry.example/ubi10/ubi-minimal:latest@{PINNED} AS runtime
COPY --from=tested /built /built
FROM scratch AS bare
"""
RUN_BUILT = 'RUN ["/bin/busybox", "sh", "-c", "echo built > /built"]'
RUN_CAT = 'RUN ["/bin/busybox", "cat", "/built"]'
MAPPING = (
    ("registry.example/ubi10/go-toolset", "localhost/mirror/go-toolset:1.26"),
    ("registry.example/ubi10/ubi-minimal", "localhost/mirror/ubi-minimal:10"),
    ("quay.example/unused/image", "localhost/mirror/unused:1"),
)


def test_arg_based_digest_pinned_and_multi_stage_froms_are_rewritten():
    found = baseimages.substitute(CONTAINERFILE, {}, MAPPING)
    assert [(s.line, s.original, s.replacement) for s in found.substitutions] == [
        (2, f"registry.example/ubi10/go-toolset:1.26@{PINNED}", "localhost/mirror/go-toolset:1.26"),
        (6, f"registry.example/ubi10/ubi-minimal:latest@{PINNED}", "localhost/mirror/ubi-minimal:10"),
    ]
    assert found.unused == ("quay.example/unused/image",)
    lines = found.text.splitlines()
    assert len(lines) == len(CONTAINERFILE.splitlines())  # line numbers still hold
    assert lines[1] == "FROM localhost/mirror/go-toolset:1.26 AS builder"
    assert lines[3] == "FROM builder AS tested"  # an earlier stage is not an image
    assert lines[5:7] == ["FROM --platform=linux/amd64 localhost/mirror/ubi-minimal:10 AS runtime", ""]
    assert lines[8] == "FROM scratch AS bare"


def test_a_build_arg_decides_what_the_from_names():
    other = {"BUILDER_IMAGE": "registry.example/other/toolset:2"}
    found = baseimages.substitute(CONTAINERFILE, other, MAPPING)
    assert [s.original for s in found.substitutions] == [
        f"registry.example/ubi10/ubi-minimal:latest@{PINNED}"
    ]
    assert "registry.example/ubi10/go-toolset" in found.unused


def test_repositories_compare_as_a_node_names_them():
    found = baseimages.substitute("FROM golang:1.22\n", {}, (("docker.io/library/golang", "localhost/go:1"),))
    assert found.text == "FROM localhost/go:1\n"


def test_the_builds_own_mapping_wins_over_the_stacks():
    stack_wide = (("registry.example/a", "localhost/a:stack"), ("registry.example/b", "localhost/b:stack"))
    own = (("registry.example/b", "localhost/b:own"),)
    assert baseimages.merged(stack_wide, own) == (("registry.example/a", "localhost/a:stack"), *own)
    # The base-images setting (--base-images, KINDLING_BASE_IMAGES) wins over both.
    setting = (("registry.example/b", "localhost/b:setting"), ("registry.example/a", "localhost/a:setting"))
    assert baseimages.merged(stack_wide, own, setting) == setting


def test_stack_check_shows_what_the_setting_rewrites_and_warns_of_what_it_does_not(tmp_path):
    path = write_stack(tmp_path, {"registry.example/ubi": "localhost/stack:1"})
    (tmp_path / "Containerfile").write_text("FROM registry.example/ubi:9\nRUN true\n")
    stack = load_stack(path, env={})
    setting = (("registry.example/ubi", "localhost/setting:1"), ("nowhere.example/x", "localhost/x:1"))
    assert stackcheck.base_image_lines(stack, setting, "KINDLING_BASE_IMAGES") == [
        ("note", "api: FROM registry.example/ubi:9 -> localhost/setting:1 (line 1)"),
        ("warning", "KINDLING_BASE_IMAGES: nowhere.example/x matches no FROM of any build"),
    ]


def write_stack(tmp_path, base_images=None, build_base_images=None):
    (tmp_path / "Containerfile").write_text("FROM scratch\n")
    build = {"containerfile": "Containerfile"}
    if build_base_images is not None:
        build["base_images"] = build_base_images
    stack = {"name": "s", "services": {"api": {"build": build, "manifests": []}}}
    if base_images is not None:
        stack["base_images"] = base_images
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(stack))
    return path


@pytest.mark.parametrize(
    ("top", "own", "field", "says"),
    [
        (["x"], None, "base_images", "must be a mapping"),
        (
            {"registry.example/a:1.0": "localhost/a:1"},
            None,
            "base_images.registry.example/a:1.0",
            "tag or digest",
        ),
        ({"Not A Repo": "localhost/a:1"}, None, "base_images.Not A Repo", "must be lowercase"),
        (
            None,
            {"registry.example/a": "UPPER/case"},
            "services.api.build.base_images.registry.example/a",
            "UPPER",
        ),
    ],
)
def test_a_bad_mapping_names_the_field(tmp_path, top, own, field, says):
    with pytest.raises(StackError) as caught:
        load_stack(write_stack(tmp_path, top, own), env={})
    assert field in str(caught.value) and says in str(caught.value), str(caught.value)


def test_the_stack_reads_both_mappings(tmp_path):
    stack = load_stack(
        write_stack(tmp_path, {"registry.example/a": "localhost/a:1"}, {"b.example/b": "localhost/b:2"}),
        env={},
    )
    assert stack.base_images == (("registry.example/a", "localhost/a:1"),)
    assert stack.services["api"].build.base_images == (("b.example/b", "localhost/b:2"),)


def test_a_build_whose_froms_no_registry_serves_builds_from_the_mapped_images(stack_maker, tmp_path):
    """Real podman: without the mapping the build would pull registry.example (unreachable)."""
    path = stack_maker.write({"api": {}})
    folder = path.parent
    containerfile = folder / "src" / "api" / "Containerfile"
    # The base image has busybox alone, no /bin/sh: RUN in exec form.
    user_text = CONTAINERFILE.replace("RUN echo building > /built", RUN_BUILT).replace(
        "RUN cat /built", RUN_CAT
    )
    user_text = user_text.replace("FROM scratch AS bare\n", "")
    containerfile.write_text(user_text)
    stack = yaml.safe_load(path.read_text())
    stack["base_images"] = {
        "registry.example/ubi10/go-toolset": stack_maker.base_image,
        "registry.example/ubi10/ubi-minimal": stack_maker.base_image,
    }
    path.write_text(yaml.safe_dump(stack, sort_keys=False))
    env = {"E2E_STACK": str(path), "KINDLING_HOME": str(tmp_path / "home")}
    result = invoke(["build"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"FROM registry.example/ubi10/go-toolset:1.26@{PINNED} -> {stack_maker.base_image} (line 2)"
        in result.stdout
    )
    assert containerfile.read_text() == user_text  # the user's file is never changed
    generated = next((tmp_path / "home" / "runs").glob("*/containerfiles/api.Containerfile"))
    assert "registry.example" not in generated.read_text().split("\n", 1)[1]  # only the unused ARG default
    assert len(stack_maker.images()) == 1
    # The mapping is part of the inputs: another replacement is another image.
    check = invoke(["stack.check"], env)
    assert f"note: api: FROM registry.example/ubi10/ubi-minimal:latest@{PINNED} -> " in check.stdout, (
        check.stdout
    )
    runs = sorted((tmp_path / "home" / "runs").glob("*/images.json"))
    first_digest = json.loads(runs[-1].read_text())["api"]["digest"]
    mirror = f"localhost/{stack_maker.project}/mirror:alt"  # the same image by another name, removed after
    podman_cmd("tag", stack_maker.base_image, mirror)
    stack["base_images"]["registry.example/ubi10/ubi-minimal"] = mirror
    path.write_text(yaml.safe_dump(stack, sort_keys=False))
    again = invoke(["build"], env)
    assert again.returncode == 0, again.stdout + again.stderr
    latest = sorted((tmp_path / "home" / "runs").glob("*/images.json"), key=lambda p: p.stat().st_mtime)[-1]
    assert json.loads(latest.read_text())["api"]["digest"] != first_digest
    # The setting wins over the stack's mapping: mapped back to the first image, it is the first
    # build's inputs again, found instead of built.
    setting = {**env, "KINDLING_BASE_IMAGES": f"registry.example/ubi10/ubi-minimal={stack_maker.base_image}"}
    back = invoke(["build"], setting)
    assert back.returncode == 0, back.stdout + back.stderr
    latest = sorted((tmp_path / "home" / "runs").glob("*/images.json"), key=lambda p: p.stat().st_mtime)[-1]
    assert json.loads(latest.read_text())["api"]["digest"] == first_digest
