"""Build caches (`build.caches`): the stack file, the host folders and their locks, trimming, the
cache tasks, and real podman builds sharing a cache (a non-root build user, concurrent builds, a
path the image lacks, a Go service whose rebuild compiles only what changed)."""

import io
import os
import time

import pytest
import yaml
from conftest import ROOT, image_exists, invoke, podman_cmd

from tasks.libs.adapters.engine import Docker, Podman
from tasks.libs.bench import gosample
from tasks.libs.build import cachelocks
from tasks.libs.build import caches as buildcaches
from tasks.libs.console import Console
from tasks.libs.environment import Environment, outcome_of
from tasks.libs.errors import KindlingError, StackError
from tasks.libs.plan import StepKind
from tasks.libs.procs.runner import Runner
from tasks.libs.settings import build_settings
from tasks.libs.stack.model import load_stack


@pytest.fixture(autouse=True)
def _release_holds():
    yield
    cachelocks.release_all()


def write_stack(
    folder,
    caches,
    engine="podman",
    containerfile="FROM scratch\n",
    services=("api",),
    stack_file="stack.yaml",
    project="cachetest",
    args=None,
):
    """A stack whose services build src/<service> with the given Containerfile and caches."""
    entries = {}
    for service in services:
        context = folder / "src" / service
        context.mkdir(parents=True, exist_ok=True)
        (context / "Containerfile").write_text(containerfile)
        (context / "version.txt").write_text("1\n")
        build = {
            "containerfile": f"src/{service}/Containerfile",
            "context": f"src/{service}",
            "args": dict(args or {}),
        }
        if caches is not None:
            build["caches"] = caches
        entries[service] = {"build": build}
    path = folder / stack_file
    path.write_text(
        yaml.safe_dump(
            {"name": "cachetest", "project": project, "engine": engine, "services": entries}, sort_keys=False
        )
    )
    return path


def environment(stack_path, home, **options):
    env = {**os.environ, "KINDLING_HOME": str(home)}
    stack = load_stack(stack_path, env=env)
    return Environment(stack, build_settings(stack, env, **options), env, console=Console(io.StringIO()))


def build(stack_path, home, services=("api",), **options):
    env = environment(stack_path, home, **options)
    result = env.execute(env.image_steps(list(services)), label="test build")
    return env, {name: outcome_of(result, StepKind.IMAGE, name) for name in services}


# ---- the stack file -------------------------------------------------------------------------------


def test_presets_mappings_and_mixed_lists(tmp_path):
    cases = {
        "[go]": {"go-build": "/root/.cache/go-build", "go-mod": "/go/pkg/mod"},
        "pip": {"pip": "/root/.cache/pip"},
        "[npm, ccache]": {"npm": "/root/.npm", "ccache": "/root/.ccache"},
        "{tools: /opt/tools/cache/}": {"tools": "/opt/tools/cache"},
        "[pip, {wheels: /wheels}]": {"pip": "/root/.cache/pip", "wheels": "/wheels"},
    }
    for text, expected in cases.items():
        path = write_stack(tmp_path, yaml.safe_load(text))
        caches = load_stack(path, env={}).services["api"].build.caches
        assert {c.name: c.path for c in caches} == expected, text
    assert load_stack(write_stack(tmp_path, None), env={}).services["api"].build.caches == ()


@pytest.mark.parametrize(
    "caches, field, words",
    [
        (["gox"], "services.api.build.caches[0]", ["unknown preset 'gox'", "ccache, go, npm, pip"]),
        ({"mine": "relative/path"}, "services.api.build.caches.mine", ["relative path", "absolute"]),
        ({"mine": 5}, "services.api.build.caches.mine", ["must be a path", "got number"]),
        (5, "services.api.build.caches", ["list of presets or a mapping", "caches: [go]"]),
        ([["go"]], "services.api.build.caches[0]", ["preset name or a {name: /path} mapping, got list"]),
        (
            ["go", {"other": "/go/pkg/mod/"}],
            "services.api.build.caches[1].other",
            ["also where cache 'go-mod' is mounted", "a path of its own"],
        ),
        ({"a": "/x", "b": "/x/y"}, "services.api.build.caches.b", ["inside one another"]),
        (["go", {"go-build": "/elsewhere"}], "services.api.build.caches[1].go-build", ["named twice"]),
        ({"Bad_Name": "/x"}, "services.api.build.caches.Bad_Name", ["not a valid name", "lowercase"]),
        ({"a": "/x:y"}, "services.api.build.caches.a", ["':' or ','"]),
        ({"a": "/"}, "services.api.build.caches.a", ["root or a system folder"]),
        ({"a": "/proc/cache"}, "services.api.build.caches.a", ["root or a system folder"]),
    ],
)
def test_bad_caches_name_the_field_and_the_fix(tmp_path, caches, field, words):
    path = write_stack(tmp_path, caches)
    with pytest.raises(StackError) as caught:
        load_stack(path, env={})
    assert caught.value.field == field
    assert caught.value.fix
    assert str(path) in str(caught.value)
    for word in words:
        assert word in str(caught.value)


def test_docker_engine_refuses_caches_at_load(tmp_path):
    with pytest.raises(StackError) as caught:
        load_stack(write_stack(tmp_path, ["go"], engine="docker"), env={})
    assert caught.value.field == "services.api.build.caches"
    assert "engine: podman" in caught.value.problem and "RUN --mount=type=cache" in caught.value.fix
    load_stack(write_stack(tmp_path, None, engine="docker"), env={})  # docker without caches is fine


def test_engine_renders_volume_options_and_docker_refuses_mounts(tmp_path):
    log = tmp_path / "commands.log"
    Podman(Runner(dry_run=True, command_log=log)).build(
        "localhost/p/a:t",
        tmp_path / "Containerfile",
        tmp_path,
        mounts=[("/host/go-build", "/root/.cache/go-build")],
    )
    assert "--volume /host/go-build:/root/.cache/go-build:U,z" in log.read_text()
    with pytest.raises(KindlingError, match="need podman"):
        Docker(Runner(dry_run=True)).build("a:t", tmp_path / "Containerfile", tmp_path, mounts=[("/h", "/c")])


# ---- host folders, locks, limits ---------------------------------------------------------------------


def test_mounts_make_held_folders_per_stack_and_name(tmp_path):
    stack = load_stack(write_stack(tmp_path / "stack", ["go"]), env={})
    home = tmp_path / "home"
    found = buildcaches.mounts(stack, "api", stack.services["api"].build, home, env={})
    assert found == [
        (str(home / "caches" / "cachetest" / "go-build"), "/root/.cache/go-build"),
        (str(home / "caches" / "cachetest" / "go-mod"), "/go/pkg/mod"),
    ]
    assert all(os.path.isdir(host) for host, _ in found)
    assert cachelocks.in_use(home / "caches" / "cachetest" / "go-build")
    with pytest.raises(cachelocks.CacheBusy, match="in use"):
        buildcaches.clear(home / "caches" / "cachetest" / "go-build")
    cachelocks.release_all()
    assert not cachelocks.in_use(home / "caches" / "cachetest" / "go-build")


def test_dry_run_creates_and_holds_nothing(tmp_path):
    stack = load_stack(write_stack(tmp_path / "stack", ["pip"]), env={})
    found = buildcaches.mounts(
        stack, "api", stack.services["api"].build, tmp_path / "home", env={}, dry_run=True
    )
    assert found == [(str(tmp_path / "home" / "caches" / "cachetest" / "pip"), "/root/.cache/pip")]
    assert not (tmp_path / "home" / "caches").exists()


def test_a_cache_folder_inside_the_build_context_needs_no_ignore_rule(tmp_path):
    """It lives in the state folder, which the build is never sent (phases/images.py state_ignore_file)."""
    stack = load_stack(write_stack(tmp_path, ["pip"]), env={})
    build = stack.services["api"].build
    home = build.context / ".kindling"
    ((host, path),) = buildcaches.mounts(stack, "api", build, home, env={})
    assert host == str(home / "caches" / "cachetest" / "pip") and path == "/root/.cache/pip"
    cachelocks.release_all()


def test_size_limit_from_the_environment():
    assert buildcaches.size_limit({}) == 10 * 1024**3
    assert buildcaches.size_limit({"KINDLING_CACHE_LIMIT": "2GiB"}) == 2 * 1024**3
    with pytest.raises(KindlingError, match="KINDLING_CACHE_LIMIT='lots' is not a size"):
        buildcaches.size_limit({"KINDLING_CACHE_LIMIT": "lots"})


def fill(folder, sizes):
    """Files of these sizes, the first the least recently written."""
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for i, size in enumerate(sizes):
        path = folder / f"entry-{i}"
        path.write_bytes(os.urandom(size))
        os.utime(path, (now - 1000 + i, now - 1000 + i))


def test_trim_drops_the_least_recently_written_files_first(tmp_path):
    fill(tmp_path / "c", [64 * 1024] * 10)
    per_file = buildcaches.usage(tmp_path / "c").bytes // 10
    assert buildcaches.trim(tmp_path / "c", per_file * 10) == 0  # at the limit: nothing to do
    removed = buildcaches.trim(tmp_path / "c", per_file * 5)
    left = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert left == [f"entry-{i}" for i in range(6, 10)]  # down to 80 % of the limit, oldest gone
    assert removed == per_file * 6


def test_over_limit_is_reported_at_build_time_and_trimmed_when_trimmable(tmp_path):
    caches = {"go-build": "/root/.cache/go-build", "tools": "/tools"}
    stack = load_stack(write_stack(tmp_path / "stack", caches), env={})
    home = tmp_path / "home"
    fill(home / "caches" / "cachetest" / "go-build", [256 * 1024] * 8)
    fill(home / "caches" / "cachetest" / "tools", [256 * 1024] * 8)
    said = []
    buildcaches.mounts(
        stack, "api", stack.services["api"].build, home, env={"KINDLING_CACHE_LIMIT": "1MiB"}, say=said.append
    )
    assert buildcaches.usage(home / "caches" / "cachetest" / "go-build").bytes <= 1024**2 * 0.8
    assert len(list((home / "caches" / "cachetest" / "tools").iterdir())) == 8  # not trimmable: kept
    go_line, tools_line = said
    assert "cache go-build" in go_line and "trimmed" in go_line
    assert "cache tools" in tools_line and "limit 1.0 MiB" in tools_line
    assert "invoke cache.clear --name tools" in tools_line


def test_a_cache_another_process_holds_is_not_trimmed(tmp_path):
    """The trim waits for a build that has the cache to itself: here a child process holds it."""
    import subprocess
    import sys

    stack_path = write_stack(tmp_path / "stack", {"go-build": "/root/.cache/go-build"})
    home = tmp_path / "home"
    fill(home / "caches" / "cachetest" / "go-build", [256 * 1024] * 8)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom tasks.libs.build import caches as buildcaches\n"
            "from tasks.libs.stack.model import load_stack\n"
            f"s = load_stack({str(stack_path)!r}, env={{}})\n"
            "buildcaches.mounts(s, 'api', s.services['api'].build, "
            f"__import__('pathlib').Path({str(home)!r}), "
            "env={'KINDLING_CACHE_LIMIT': '100GiB'})\nprint('held', flush=True)\nsys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        stack = load_stack(stack_path, env={})
        said = []
        buildcaches.mounts(
            stack,
            "api",
            stack.services["api"].build,
            home,
            env={"KINDLING_CACHE_LIMIT": "1MiB"},
            say=said.append,
        )
        assert len(list((home / "caches" / "cachetest" / "go-build").iterdir())) == 8
        assert "the next build that has it to itself trims it" in said[0]
    finally:
        holder.communicate("", timeout=30)


# ---- the cache tasks ----------------------------------------------------------------------------------


def test_status_and_clear_tasks(tmp_path, base_image):
    stack_path = write_stack(tmp_path / "stack", {"go-build": "/root/.cache/go-build", "tools": "/tools"})
    home = tmp_path / "home"
    env = {"E2E_STACK": str(stack_path), "KINDLING_HOME": str(home), "KINDLING_CACHE_LIMIT": "100KiB"}
    fill(home / "caches" / "cachetest" / "go-build", [64 * 1024] * 3)
    fill(home / "caches" / "other-stack" / "pip", [4096])

    status = invoke(["cache.status"], env)
    assert status.returncode == 0, status.stdout + status.stderr
    lines = {line.split()[1]: line for line in status.stdout.splitlines()[2:]}
    assert "OVER LIMIT" in lines["go-build"] and "used by api" in lines["go-build"]
    assert "not created yet" in lines["tools"]
    assert lines["pip"].split()[0] == "other-stack"

    stack = load_stack(stack_path, env={})
    buildcaches.mounts(stack, "api", stack.services["api"].build, home, env={})  # this process now "builds"
    busy = invoke(["cache.clear"], env)
    assert busy.returncode == 1 and "in use by a running kindling build" in busy.stderr
    assert (home / "caches" / "cachetest" / "go-build" / "entry-0").exists()
    cachelocks.release_all()

    dry = invoke(["cache.clear", "--name", "go-build", "--dry-run"], env)
    assert dry.returncode == 0 and "would remove cache go-build" in dry.stdout
    assert (home / "caches" / "cachetest" / "go-build" / "entry-0").exists()
    unknown = invoke(["cache.clear", "--name", "nope"], env)
    assert unknown.returncode == 1 and "choose from: go-build, tools" in unknown.stderr
    cleared = invoke(["cache.clear", "--name", "go-build"], env)
    assert cleared.returncode == 0, cleared.stderr
    assert not (home / "caches" / "cachetest" / "go-build").exists()
    assert (home / "caches" / "cachetest" / "tools").exists()
    assert invoke(["cache.clear", "--stack", "other-stack"], env).returncode == 0
    assert not (home / "caches" / "other-stack" / "pip").exists()


# ---- real podman builds --------------------------------------------------------------------------------


def fresh_args(stack_maker) -> dict:
    """Build args whose FRESH value is this test's own: podman's layer cache keys a RUN step by its
    build args, and the cache folder is not part of that key, so a RUN an earlier test (or an
    earlier run of this one) ran with the same args would be taken from that cache, never run, and
    never write into the folder under test."""
    return {"BASE_IMAGE": stack_maker.base_image, "FRESH": stack_maker.project}


NON_ROOT = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY version.txt /version.txt
USER 1001
ARG WRITE
ARG REQUIRE=""
ARG FRESH
RUN ["/bin/busybox", "sh", "-c", "cd /home/builder/.cache/tool && \
if [ -n \\"$REQUIRE\\" ]; then /bin/busybox test -f $REQUIRE || exit 3; fi; /bin/busybox id -u > $WRITE"]
"""


def test_non_root_build_user_writes_into_the_cache_and_the_next_build_sees_it(tmp_path, stack_maker):
    home = tmp_path / "home"
    args = {**fresh_args(stack_maker), "WRITE": "first"}
    caches = {"tool": "/home/builder/.cache/tool"}
    path = write_stack(
        tmp_path / "stack", caches, containerfile=NON_ROOT, project=stack_maker.project, args=args
    )
    assert build(path, home)[1] == {"api": "built"}
    folder = home / "caches" / "cachetest" / "tool"
    assert (folder / "first").read_text().strip() == "1001"
    assert os.stat(folder / "first").st_uid == 1001  # written by the build user, through podman's :U
    path = write_stack(
        tmp_path / "stack",
        caches,
        containerfile=NON_ROOT,
        project=stack_maker.project,
        args={**args, "WRITE": "second", "REQUIRE": "first"},
    )
    assert build(path, home)[1] == {"api": "built"}  # exit 3 if the first build's file were missing
    assert (folder / "second").exists()


MISSING_PATH = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY version.txt /version.txt
ARG FRESH
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox echo compiled > /no/such/folder/cache/entry"]
"""


def test_a_cache_path_the_image_lacks_is_made_and_its_content_stays_out_of_the_image(tmp_path, stack_maker):
    home = tmp_path / "home"
    path = write_stack(
        tmp_path / "stack",
        {"deep": "/no/such/folder/cache"},
        containerfile=MISSING_PATH,
        project=stack_maker.project,
        args=fresh_args(stack_maker),
    )
    env, outcomes = build(path, home)
    assert outcomes == {"api": "built"}
    assert (home / "caches" / "cachetest" / "deep" / "entry").read_text() == "compiled\n"
    listing = podman_cmd(
        "run", "--rm", env.ctx.refs["api"], "/bin/busybox", "ls", "-A", "/no/such/folder/cache"
    )
    assert listing.stdout.strip() == ""  # the mount point stays, empty: the entry is the cache's only


SHARED = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY version.txt /version.txt
ARG ME
ARG OTHER
ARG FRESH
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox touch /shared/$ME; for i in $(/bin/busybox seq 600); do \
if [ -f /shared/$OTHER ]; then exit 0; fi; /bin/busybox sleep 0.1; done; exit 4"]
"""


def test_two_concurrent_builds_share_one_cache(tmp_path, stack_maker):
    """Each build waits (up to a minute) for the other's file: both pass only if they ran at the same
    time with the same folder mounted."""
    folder = tmp_path / "stack"
    path = write_stack(
        folder,
        {"shared": "/shared"},
        containerfile=SHARED,
        services=("a", "b"),
        project=stack_maker.project,
        args=fresh_args(stack_maker),
    )
    stack = yaml.safe_load(path.read_text())
    stack["services"]["a"]["build"]["args"].update(ME="a", OTHER="b")
    stack["services"]["b"]["build"]["args"].update(ME="b", OTHER="a")
    path.write_text(yaml.safe_dump(stack))
    assert build(path, tmp_path / "home", ("a", "b"), jobs=2)[1] == {"a": "built", "b": "built"}
    shared = tmp_path / "home" / "caches" / "cachetest" / "shared"
    assert sorted(p.name for p in shared.iterdir()) == ["a", "b"]


CACHE_WRITER = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY version.txt /version.txt
ARG FRESH
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /cache && /bin/busybox date > /cache/built-at"]
"""


def test_caches_are_not_part_of_the_inputs_digest(tmp_path, stack_maker):
    """Adding caches to a service whose image exists reuses that image: caches change speed only."""
    home = tmp_path / "home"
    options = dict(containerfile=CACHE_WRITER, project=stack_maker.project, args=fresh_args(stack_maker))
    plain = write_stack(tmp_path / "stack", None, **options)
    first, outcomes = build(plain, home)
    assert outcomes == {"api": "built"}
    cached = write_stack(tmp_path / "stack", {"writer": "/cache"}, stack_file="with-caches.yaml", **options)
    second, outcomes = build(cached, home)
    assert outcomes == {"api": "cached"}
    assert second.ctx.refs["api"] == first.ctx.refs["api"]


def test_teardown_leaves_caches_alone(tmp_path, stack_maker, testenv):
    home = tmp_path / "home"
    path = write_stack(
        tmp_path / "stack",
        {"writer": "/cache"},
        containerfile=CACHE_WRITER,
        project=stack_maker.project,
        args=fresh_args(stack_maker),
    )
    env, outcomes = build(path, home)
    assert outcomes == {"api": "built"}
    cachelocks.release_all()
    result = invoke(
        ["e2e.teardown"],
        {"E2E_STACK": str(path), "KINDLING_HOME": str(home), "KINDLING_LOCK_DIR": str(tmp_path / "locks")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not image_exists(env.ctx.refs["api"])  # teardown did run: the image it built is gone
    assert (home / "caches" / "cachetest" / "writer" / "built-at").is_file()


def test_go_rebuild_with_caches_compiles_only_the_changed_package(tmp_path, stack_maker):
    """The generated Go service (gosample): with caches, the rebuild after a one-line change compiles
    the main package alone; without them, every package again. Read from `go build -v` in the log."""
    engine = Podman(Runner())
    go_image = gosample.ensure_go_image(engine, stack_maker.base_image)
    folder, home = tmp_path / "stack", tmp_path / "home"
    options = dict(
        name="cachetest",
        project=stack_maker.project,
        go_image=go_image,
        base_image=stack_maker.base_image,
        packages=3,
        functions=20,
    )
    with_caches = gosample.write_stack(folder, caches=("go",), **options)
    without = gosample.write_stack(folder, caches=(), stack_file="plain.yaml", **options)
    context = folder / "src" / "api"
    everything = {f"{gosample.MODULE}/internal/p{i}" for i in range(3)} | {f"{gosample.MODULE}/cmd/app"}

    digests = set()

    def compiled(stack_path):
        env, outcomes = build(stack_path, home)
        assert outcomes == {"api": "built"}
        digests.add(env.ctx.run.current_images()["api"]["digest"])
        return env, gosample.compiled_packages(env.ctx.log(StepKind.IMAGE, "api").read_text())

    try:
        assert compiled(with_caches)[1] == everything
        assert any((home / "caches" / "cachetest" / "go-build").iterdir())
        gosample.set_version(context, "2")
        env, packages = compiled(with_caches)
        assert packages == {f"{gosample.MODULE}/cmd/app"}
        assert podman_cmd("run", "--rm", env.ctx.refs["api"]).stdout.startswith("version 2 ")
        gosample.set_version(context, "3")
        assert compiled(without)[1] == everything
    finally:
        stack_maker.cleanup()
        gosample.remove_stage_images(engine, digests)
