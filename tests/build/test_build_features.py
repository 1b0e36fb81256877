"""Build features Kubernaut's builds use: read-only build mounts (`build.mounts`), build args from host
facts (`${KINDLING_HOST_GOARCH}`, `${KINDLING_HOST_OS}`) and a per-stack image naming template
(`imagerefs.name`).

The argument lists are checked through a scripted runner (podman's answers written out, the build
recorded, nothing run); one real podman build shows a read-only mount readable and unwritable.
"""

import io
import json
import os
import subprocess
import tarfile

import pytest
import yaml
from conftest import podman_cmd

from tasks.libs import imagerefs, render
from tasks.libs.adapters.engine import DIGEST_LABEL
from tasks.libs.build import digest as cache
from tasks.libs.console import Console
from tasks.libs.environment import Environment
from tasks.libs.errors import KindlingError, StackError
from tasks.libs.phases import deploy
from tasks.libs.phases import images as images_phase
from tasks.libs.plan import Outcome
from tasks.libs.procs.fakerunner import FakeRunner
from tasks.libs.procs.runner import Result
from tasks.libs.settings import build_settings
from tasks.libs.stack import buildmounts, hostfacts
from tasks.libs.stack.model import load_stack


def scripted_podman(listed=()) -> FakeRunner:
    """podman's `images --format json` answered from these entries; git answers as outside a checkout."""
    return FakeRunner(
        [
            (
                lambda argv: argv[:4] == ["podman", "images", "--format", "json"],
                Result(json.dumps(list(listed)), 0),
            ),
            (lambda argv: argv[0] == "git", Result("", 128)),
        ]
    )


def write_stack(folder, build=None, top=None, engine="podman"):
    context = folder / "src"
    context.mkdir(parents=True, exist_ok=True)
    (context / "Containerfile").write_text("FROM scratch\nCOPY version.txt /version.txt\n")
    (context / "version.txt").write_text("1\n")
    (folder / "modcache").mkdir(exist_ok=True)
    stack = {
        "name": "features",
        "project": "feat",
        "engine": engine,
        **(top or {}),
        "services": {"api": {"build": {"containerfile": "Containerfile", "context": ".", **(build or {})}}},
    }
    stack.setdefault("source", "src")
    path = folder / "stack.yaml"
    path.write_text(yaml.safe_dump(stack, sort_keys=False))
    return path


def ensure_image(path, tmp_path, listed=(), env=None):
    env = {"KINDLING_HOME": str(tmp_path / "home"), "USER": "tester", **(env or {})}
    stack = load_stack(path, env=env)
    runner = scripted_podman(listed)
    environment = Environment(
        stack, build_settings(stack, env), env, console=Console(io.StringIO()), runner=runner
    )
    return environment.ctx, images_phase.ensure_image(environment.ctx, "api"), runner


def stack_error(path, env=None) -> StackError:
    with pytest.raises(StackError) as caught:
        load_stack(path, env=env or {})
    return caught.value


# ---- read-only mounts ----------------------------------------------------------------------------------


def test_a_read_only_mount_is_passed_to_podman_build_beside_the_caches(tmp_path):
    mounts = [
        {"source": "${GOMODCACHE}", "target": "/go/pkg/mod", "readonly": True},
        {"source": "${STACK_DIR}/modcache", "target": "/opt/vendor/"},
    ]
    path = write_stack(tmp_path, {"mounts": mounts, "caches": {"go-build": "/root/.cache/go-build"}})
    ctx, outcome, runner = ensure_image(path, tmp_path, env={"GOMODCACHE": str(tmp_path / "modcache")})
    assert outcome is Outcome.BUILT
    (argv,) = runner.commands("podman", "build")
    volumes = [argv[i + 1] for i, a in enumerate(argv) if a == "--volume"]
    cache_folder = tmp_path / "home" / "caches" / "features" / "go-build"
    assert volumes == [
        f"{cache_folder}:/root/.cache/go-build:U,z",
        f"{tmp_path}/modcache:/go/pkg/mod:ro",
        f"{tmp_path}/modcache:/opt/vendor:ro",
    ]


def test_mounts_are_no_build_input_an_image_built_without_them_is_reused(tmp_path):
    path = write_stack(tmp_path)
    stack = load_stack(path, env={})
    build = stack.services["api"].build
    digest = cache.build_digest(build.containerfile, build.context, build.build_args(), build.target)
    existing = {"Names": ["localhost/feat/api:old"], "Labels": {DIGEST_LABEL: digest}, "Created": 1}
    path = write_stack(tmp_path, {"mounts": [{"source": "../modcache", "target": "/go/pkg/mod"}]})
    ctx, outcome, runner = ensure_image(path, tmp_path, listed=[existing])
    assert outcome is Outcome.CACHED and ctx.refs["api"] == "localhost/feat/api:old"
    assert runner.commands("podman", "build") == []


M0 = "services.api.build.mounts[0]"


@pytest.mark.parametrize(
    "mounts, field, words",
    [
        ({"source": "x", "target": "/y"}, "services.api.build.mounts", "must be a list"),
        ([{"source": "../modcache"}], f"{M0}.target", "is required"),
        ([{"source": "../modcache", "target": "go/pkg/mod"}], f"{M0}.target", "relative path"),
        ([{"source": "../modcache", "target": "/proc/x"}], f"{M0}.target", "system folder"),
        ([{"source": "../modcache", "target": "/a:b"}], f"{M0}.target", "reserves"),
        ([{"source": "../nowhere", "target": "/go"}], f"{M0}.source", "does not exist"),
        ([{"source": "${GOMODCACHE}", "target": "/go"}], f"{M0}.source", "export GOMODCACHE"),
        ([{"source": "../modcache", "target": "/go", "readonly": "yes"}], f"{M0}.readonly", "true or false"),
        ([{"source": "../modcache", "target": "/go", "from": 1}], f"{M0}.from", "unknown key"),
        (
            [{"source": "../modcache", "target": "/go"}, {"source": "../modcache", "target": "/go/pkg"}],
            "services.api.build.mounts[1].target",
            "inside one another",
        ),
        ([{"source": "../modcache", "target": "/root/.cache"}], f"{M0}.target", "build cache 'go-build'"),
    ],
)
def test_a_bad_mount_names_the_field_and_the_fix(tmp_path, mounts, field, words):
    caches = {"go-build": "/root/.cache/go-build"}
    error = stack_error(write_stack(tmp_path, {"mounts": mounts, "caches": caches}))
    assert error.field == field, str(error)
    assert words in str(error) and error.fix, str(error)


HARNESS = ["${GOMODCACHE}", "${GOPATH}/pkg/mod", "${HOME}/go/pkg/mod"]  # its order (goModCacheVolumeArgs)


def mount_of(path, env):
    (mount,) = load_stack(path, env=env).services["api"].build.mounts
    return mount


def test_the_first_source_that_exists_is_mounted(tmp_path):
    home, gopath = tmp_path / "home", tmp_path / "gopath"
    (home / "go" / "pkg" / "mod").mkdir(parents=True)
    path = write_stack(tmp_path, {"mounts": [{"source": HARNESS, "target": "/go/pkg/mod"}]})
    env = {"HOME": str(home), "GOPATH": str(gopath)}
    mount = mount_of(path, env)  # GOMODCACHE unset, GOPATH's pkg/mod missing: ~/go/pkg/mod
    assert mount.source == home / "go" / "pkg" / "mod"
    assert mount.tried == ("${GOMODCACHE} (${GOMODCACHE} is not set)", f"{gopath}/pkg/mod (does not exist)")
    (gopath / "pkg" / "mod").mkdir(parents=True)
    assert mount_of(path, env).source == gopath / "pkg" / "mod"
    modcache = tmp_path / "modcache"
    assert mount_of(path, {**env, "GOMODCACHE": str(modcache)}).source == modcache


def test_an_optional_mount_none_of_whose_folders_exists_is_left_out_and_said(tmp_path):
    mounts = [{"source": HARNESS, "target": "/go/pkg/mod", "optional": True}]
    path = write_stack(tmp_path, {"mounts": mounts})
    ctx, outcome, runner = ensure_image(path, tmp_path, env={"HOME": str(tmp_path / "nohome")})
    assert outcome is Outcome.BUILT
    (argv,) = runner.commands("podman", "build")
    assert "--volume" not in argv
    (note,) = buildmounts.skipped(ctx.stack.services["api"].build)
    assert note == (
        "build mount /go/pkg/mod left out (optional): ${GOMODCACHE} (${GOMODCACHE} is not set); "
        f"${{GOPATH}}/pkg/mod (${{GOPATH}} is not set); {tmp_path}/nohome/go/pkg/mod (does not exist)"
    )
    assert f"[image] api: {note}" in ctx.console.stream.getvalue()


def test_a_required_mount_none_of_whose_folders_exists_names_each_and_the_fix(tmp_path):
    path = write_stack(tmp_path, {"mounts": [{"source": HARNESS, "target": "/go/pkg/mod"}]})
    error = stack_error(path, env={"HOME": str(tmp_path / "nohome")})
    assert error.field == f"{M0}.source"
    assert "none of the folders exists: ${GOMODCACHE} (${GOMODCACHE} is not set)" in str(error)
    assert f"{tmp_path}/nohome/go/pkg/mod (does not exist)" in str(error)
    assert "optional: true" in error.fix
    bad = write_stack(tmp_path, {"mounts": [{"source": ["../modcache", 5], "target": "/go"}]})
    assert stack_error(bad).field == f"{M0}.source[1]"
    flag = write_stack(tmp_path, {"mounts": [{"source": "../modcache", "target": "/go", "optional": "no"}]})
    assert stack_error(flag).field == f"{M0}.optional"


def test_mounts_need_podman(tmp_path):
    error = stack_error(
        write_stack(tmp_path, {"mounts": [{"source": "../modcache", "target": "/go"}]}, engine="docker")
    )
    assert error.field == "services.api.build.mounts" and "needs engine: podman" in str(error)
    assert "RUN --mount=type=bind" in error.fix


READ_ONLY = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY version.txt /version.txt
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox cat /go/pkg/mod/module.txt > /module-copy && \
if /bin/busybox touch /go/pkg/mod/written 2>/dev/null; then exit 7; fi"]
"""


def test_a_real_build_reads_a_read_only_mount_and_cannot_write_it(tmp_path, stack_maker):
    path = write_stack(
        tmp_path,
        {
            "mounts": [{"source": "${GOMODCACHE}", "target": "/go/pkg/mod"}],
            "args": {"BASE_IMAGE": stack_maker.base_image},
        },
        top={"project": stack_maker.project},
    )
    (tmp_path / "src" / "Containerfile").write_text(READ_ONLY)
    (tmp_path / "modcache" / "module.txt").write_text("example.com/mod v1.2.3\n")
    env = {**os.environ, "KINDLING_HOME": str(tmp_path / "home"), "GOMODCACHE": str(tmp_path / "modcache")}
    stack = load_stack(path, env=env)
    environment = Environment(stack, build_settings(stack, env), env, console=Console(io.StringIO()))
    result = environment.execute(environment.image_steps(["api"]), label="test build")
    assert [s["outcome"] for s in result["steps"]] == ["built"]  # exit 7 if the build could write
    ref = environment.ctx.refs["api"]
    copied = podman_cmd("run", "--rm", ref, "/bin/busybox", "cat", "/module-copy").stdout
    assert copied == "example.com/mod v1.2.3\n"
    assert sorted(p.name for p in (tmp_path / "modcache").iterdir()) == ["module.txt"]


# ---- host facts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "machine, system, goarch, goos",
    [
        ("x86_64", "Linux", "amd64", "linux"),
        ("aarch64", "Linux", "arm64", "linux"),
        ("arm64", "Darwin", "arm64", "darwin"),
        ("AMD64", "Windows", "amd64", "windows"),
        ("ppc64le", "Linux", "ppc64le", "linux"),
    ],
)
def test_host_facts_are_named_as_go_names_them(machine, system, goarch, goos):
    assert hostfacts.variables(machine, system) == {"KINDLING_HOST_GOARCH": goarch, "KINDLING_HOST_OS": goos}


def test_build_args_expand_host_facts_and_the_environment_may_override_them(tmp_path):
    args = {"GOARCH": "${KINDLING_HOST_GOARCH}", "PLATFORM": "${KINDLING_HOST_OS}/${KINDLING_HOST_GOARCH}"}
    path = write_stack(tmp_path, {"args": args, "coverage_args": {"COVER_ARCH": "${KINDLING_HOST_GOARCH}"}})
    facts = hostfacts.variables()
    goarch, goos = facts["KINDLING_HOST_GOARCH"], facts["KINDLING_HOST_OS"]
    build = load_stack(path, env={}).services["api"].build
    assert build.args == {"GOARCH": goarch, "PLATFORM": f"{goos}/{goarch}"}
    assert build.coverage_args == {"COVER_ARCH": goarch}
    ctx, _, runner = ensure_image(path, tmp_path)
    (argv,) = runner.commands("podman", "build")
    assert ["--build-arg", f"GOARCH={goarch}"] == argv[argv.index(f"GOARCH={goarch}") - 1 :][:2]
    crossed = load_stack(path, env={"KINDLING_HOST_GOARCH": "riscv64"}).services["api"].build
    assert crossed.args["GOARCH"] == "riscv64"


# ---- the naming template ------------------------------------------------------------------------------


def test_the_naming_template_names_built_images_and_finds_ci_artifacts(tmp_path):
    path = write_stack(tmp_path, top={"images": {"name": "{registry}/{service}"}})
    ctx, outcome, runner = ensure_image(path, tmp_path)
    assert outcome is Outcome.BUILT and ctx.refs["api"].startswith("localhost/api:api-tester-")
    assert runner.commands("podman", "build")[0][2:4] == ["-t", ctx.refs["api"]]
    # Kubernaut's CI artifacts: localhost/<service>:$KUBERNAUT_CI_ARTIFACT_TAG, used as they are.
    artifact = {"Names": ["localhost/api:ci-1234"], "Labels": {}, "Created": 1}
    ctx, outcome, runner = ensure_image(path, tmp_path, listed=[artifact], env={"IMAGE_TAG": "ci-1234"})
    assert (
        outcome is Outcome.PRESENT
        and ctx.refs["api"] == "localhost/api:ci-1234"
        and runner.commands("podman", "build") == []
    )
    # Manifests naming the image by the repository the template gives get this run's reference.
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api"},
        "spec": {"template": {"spec": {"containers": [{"name": "api", "image": "localhost/api:latest"}]}}},
    }
    (tmp_path / "api.yaml").write_text(yaml.safe_dump(manifest))
    stack = yaml.safe_load(path.read_text())
    stack["services"]["api"]["manifests"] = ["api.yaml"]
    path.write_text(yaml.safe_dump(stack))
    ctx, _, _ = ensure_image(path, tmp_path, listed=[artifact], env={"IMAGE_TAG": "ci-1234"})
    (container,) = render.containers(deploy.rendered(ctx, "api")[0])
    assert container["image"] == "localhost/api:ci-1234" and container["imagePullPolicy"] == "Never"


def test_the_default_template_and_registry_mode():
    assert imagerefs.local_ref("kubernaut", "datastorage", "t1") == "localhost/kubernaut/datastorage:t1"
    assert (
        imagerefs.local_ref("kubernaut", "datastorage", "t1", "localhost:5001", "{registry}/{service}")
        == "localhost:5001/datastorage:t1"
    )
    refs = {"datastorage": "localhost:5001/datastorage:t1"}
    assert (
        render.match_service(
            "localhost/datastorage:any", "kubernaut", refs, "localhost:5001", "{registry}/{service}"
        )
        == "datastorage"
    )
    assert (
        render.match_service(
            "localhost/kubernaut/datastorage:any", "kubernaut", refs, "localhost:5001", "{registry}/{service}"
        )
        is None
    )


@pytest.mark.parametrize(
    "template, words",
    [
        ("{registry}/{project}/{name}", "unknown field(s) name"),
        ("{registry}/{project}", "has no {service}"),
        ("{service}", "does not start with {registry}/"),
        ("{registry}/{service}:v1", "must name a repository"),
        ("{registry}/{service!s}", "no format specification"),
        ("{registry}/{service", "is not a template"),
        ("{registry}/Images/{service}", "does not give an image name"),
        ("", "non-empty string"),
    ],
)
def test_a_bad_naming_template_is_refused_with_the_fix(tmp_path, template, words):
    error = stack_error(write_stack(tmp_path, top={"images": {"name": template}}))
    assert error.field == "images.name", str(error)
    assert words in str(error) and error.fix
    other = stack_error(write_stack(tmp_path, top={"images": {"naming": "{registry}/{service}"}}))
    assert other.field == "images.naming" and "unknown key" in str(other)


# ---- kindling's state folder inside the build context ------------------------------------------------


def test_a_state_folder_inside_the_context_is_left_out_of_the_build_and_its_digest(tmp_path):
    path = write_stack(tmp_path)
    context = tmp_path / "src"
    (context / ".containerignore").write_text("*.log\n!keep.log")
    home = context / ".state"
    env = {"KINDLING_HOME": str(home)}
    ctx, outcome, runner = ensure_image(path, tmp_path, env=env)
    assert outcome is Outcome.BUILT
    (argv,) = runner.commands("podman", "build")
    ignore = argv[argv.index("--ignorefile") + 1]
    # The build's own rules first, then the state folder, last so no exception puts it back.
    assert open(ignore).read().splitlines()[:2] == ["*.log", "!keep.log"]
    assert open(ignore).read().splitlines()[-1] == ".state"
    build = ctx.stack.services["api"].build
    before = cache.build_digest(build.containerfile, build.context, {}, "", left_out=[home])
    (home / "runs" / "more.txt").write_text("a run's log")
    assert cache.build_digest(build.containerfile, build.context, {}, "", left_out=[home]) == before


def test_a_state_folder_outside_the_context_changes_nothing(tmp_path):
    ctx, outcome, runner = ensure_image(write_stack(tmp_path), tmp_path)
    (argv,) = runner.commands("podman", "build")
    assert "--ignorefile" not in argv


def test_docker_needs_the_state_folder_in_its_own_ignore_file(tmp_path):
    path = write_stack(tmp_path, engine="docker")
    home = tmp_path / "src" / ".kindling"
    with pytest.raises(KindlingError) as caught:
        ensure_image(path, tmp_path, env={"KINDLING_HOME": str(home)})
    assert f"fix: add `.kindling` to {tmp_path / 'src' / '.dockerignore'}" in str(caught.value)
    (tmp_path / "src" / ".dockerignore").write_text(".kindling\n")
    ctx, outcome, runner = ensure_image(path, tmp_path, env={"KINDLING_HOME": str(home)})
    assert outcome is Outcome.BUILT and "--ignorefile" not in runner.commands("docker", "build")[0]


def test_copy_everything_leaves_the_state_folder_out_of_a_real_image(base_image, tmp_path):
    """podman itself: `COPY . /app` with KINDLING_HOME inside the context (its kubeconfigs too)."""
    path = write_stack(tmp_path)
    context = tmp_path / "src"
    (context / "Containerfile").write_text("FROM scratch\nCOPY . /app\n")
    home = context / ".kindling"
    (home / "clusters" / "c").mkdir(parents=True)
    (home / "clusters" / "c" / "kubeconfig").write_text("secret")
    env = {"KINDLING_HOME": str(home), "USER": "tester"}
    stack = load_stack(path, env=env)
    environment = Environment(stack, build_settings(stack, env), env, console=Console(io.StringIO()))
    ctx = environment.ctx
    assert images_phase.ensure_image(ctx, "api") is Outcome.BUILT
    ref = ctx.refs["api"]
    container = podman_cmd("create", ref, "none").stdout.strip()
    try:
        listing = subprocess.run(
            ["podman", "export", container], capture_output=True, check=True, timeout=120
        ).stdout
        names = tarfile.open(fileobj=io.BytesIO(listing)).getnames()
    finally:
        podman_cmd("rm", container, check=False)
        podman_cmd("rmi", ref, check=False)
    assert "app/version.txt" in names
    assert not [n for n in names if ".kindling" in n], names
