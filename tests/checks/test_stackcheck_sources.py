"""`invoke stack.check` against real upstream checkouts: source drift, build contexts (.dockerignore,
submodules), every problem in one run, and the Kubernetes version the cluster will run.

The checkouts are synthetic, Kubernaut-shaped git repositories made in tmp_path with real git
(no Kubernaut source here): the paths the December 2025 AIAnalysis stack
(stacks/kubernaut-2025-12.yaml) takes from Kubernaut, a holmesgpt submodule, a .dockerignore.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import IN_CI, ROOT, aianalysis_crd, invoke

from tasks.libs.build import containerfile
from tasks.libs.checks import buildcontext, drift, nodeversion
from tasks.libs.errors import StackError
from tasks.libs.procs.runner import Runner
from tasks.libs.stack.model import load_stack

STACK = "stacks/kubernaut-2025-12.yaml"
CRD = "config/crd/bases/kubernaut.ai_aianalyses.yaml"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "kindling tests",
    "GIT_AUTHOR_EMAIL": "tests@kindling.invalid",
    "GIT_COMMITTER_NAME": "kindling tests",
    "GIT_COMMITTER_EMAIL": "tests@kindling.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    # file:// submodules are refused by default since git 2.38.1; these repositories are the test's own
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "protocol.file.allow",
    "GIT_CONFIG_VALUE_0": "always",
}


KUBERNAUT_FILES = {
    ".dockerignore": ".git\n*.md\ndocs/\nvendor/\n",
    "README.md": "A Kubernaut-shaped repository for tests.\n",
    "go.mod": "module example.com/kubernaut\n\ngo 1.25\n",
    "go.sum": "",
    "cmd/datastorage/main.go": "package main\n",
    "cmd/aianalysis/main.go": "package main\n",
    "migrations/001_initial_schema.sql": "-- +goose Up\n",
    "docker/data-storage.Dockerfile": "FROM scratch\nCOPY go.mod go.sum ./\nCOPY . .\n",
    "docker/aianalysis.Dockerfile": "FROM scratch\nCOPY go.mod go.sum ./\nCOPY . .\n",
    "holmesgpt-api/Dockerfile": (
        "FROM scratch AS builder\nCOPY dependencies/ ../dependencies/\n"
        "COPY holmesgpt-api/requirements.txt ./\nCOPY holmesgpt-api/src/ ./src/\n"
    ),
    "holmesgpt-api/requirements.txt": "../dependencies/holmesgpt/\n",
    "holmesgpt-api/src/main.py": "",
    CRD: yaml.safe_dump(aianalysis_crd(), sort_keys=False),
}


@pytest.fixture(scope="module")
def git_tool():
    if shutil.which("git") is None:
        if IN_CI:
            pytest.fail("git is needed (CI=true: install it in .ci/run)")
        pytest.skip("git is not installed")


@pytest.fixture(scope="module")
def kv():
    if IN_CI:
        import kubernetes_validate

        return kubernetes_validate
    return pytest.importorskip("kubernetes_validate")


def git(cwd, *args) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120, env={**os.environ, **GIT_ENV}
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def write(folder: Path, files: dict):
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


class Upstream:
    """A Kubernaut-shaped repository with a holmesgpt submodule, and clones of it."""

    def __init__(self, root: Path, record_submodule=True):
        self.root = root
        holmesgpt = root / "holmesgpt"
        holmesgpt.mkdir(parents=True)
        git(holmesgpt, "init", "-q", "-b", "main")
        write(holmesgpt, {"pyproject.toml": "[project]\nname = 'holmesgpt'\n"})
        git(holmesgpt, "add", "-A")
        git(holmesgpt, "commit", "-q", "-m", "holmesgpt")
        self.repo = root / "upstream"
        self.repo.mkdir()
        git(self.repo, "init", "-q", "-b", "main")
        write(self.repo, KUBERNAUT_FILES)
        if record_submodule:
            git(self.repo, "submodule", "add", "-q", holmesgpt.as_uri(), "dependencies/holmesgpt")
        else:  # as at Kubernaut eb5185b: declared in .gitmodules, no commit recorded for it
            write(
                self.repo,
                {
                    ".gitmodules": '[submodule "dependencies/holmesgpt"]\n'
                    "\tpath = dependencies/holmesgpt\n"
                    f"\turl = {holmesgpt.as_uri()}\n"
                },
            )
        self.seed = self.commit("seed")

    def commit(self, message) -> str:
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "-m", message)
        return git(self.repo, "rev-parse", "HEAD")

    def clone(self, name, *options) -> Path:
        git(self.root, "clone", "-q", *options, self.repo.as_uri(), name)
        return self.root / name


def seed_era_stack(tmp_path, revision, edit=None) -> Path:
    """A copy of stacks/kubernaut-2025-12.yaml (and its folder) declaring `revision`."""
    folder = tmp_path / "kindling"
    shutil.copytree(ROOT / "stacks", folder / "stacks", ignore=shutil.ignore_patterns(".kindling"))
    path = folder / STACK
    document = yaml.safe_load(path.read_text())
    document["source"]["revision"] = revision
    if edit:
        edit(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def stack_check(path, source, *args, **env):
    return invoke(
        ["stack.check", *args],
        {
            "E2E_STACK": str(path),
            "E2E_SOURCE": str(source),
            "KINDLING_NODE_IMAGE": "kindest/node:v1.36.1",
            **env,
        },
    )


def problem_lines(result) -> list:
    """The problems of a failed check, each with its fix line."""
    text = result.stderr.split(" problem(s) in ", 1)[1].split("\n", 1)[1]
    return text.rstrip("\n").split("\n")


# --------------------------------------------------------------------------
# the seed-era stack against Kubernaut-shaped checkouts


def test_seed_era_stack_passes_at_its_revision_then_lists_drift(git_tool, kv, tmp_path):
    upstream = Upstream(tmp_path / "git")
    checkout = upstream.clone("kubernaut")  # without --recurse-submodules: the submodule folder is empty
    path = seed_era_stack(tmp_path, upstream.seed)

    result = stack_check(path, checkout)
    assert result.returncode == 1, result.stdout + result.stderr
    assert problem_lines(result) == [
        f"{checkout}/holmesgpt-api/Dockerfile: line 2: COPY dependencies/: dependencies/holmesgpt is a git "
        f"submodule (.gitmodules in {checkout}) that is not checked out: its folder is empty",
        f"  fix: git -C {checkout} submodule update --init dependencies/holmesgpt",
    ]

    git(checkout, "-C", str(checkout), "submodule", "update", "--init", "dependencies/holmesgpt")  # the fix
    result = stack_check(path, checkout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"note: source {checkout} is at {upstream.seed}, the stack's source.revision\n" in result.stdout
    assert "stack.check: no problems in 6 services" in result.stdout

    # Upstream moves on: HolmesGPT-API goes, Data Storage's Dockerfile and the CRD change.
    (upstream.repo / "holmesgpt-api/Dockerfile").unlink()
    write(
        upstream.repo,
        {
            "docker/data-storage.Dockerfile": "FROM scratch\nCOPY . .\n",
            CRD: yaml.safe_dump(aianalysis_crd(selectable_fields=True), sort_keys=False),
            "docs/agent.md": "The agent replaces HolmesGPT-API.\n",
        },
    )
    head = upstream.commit("replace HolmesGPT-API")
    git(checkout, "pull", "-q", "--ff-only")
    result = stack_check(path, checkout)
    assert result.returncode == 1
    warning = result.stdout.split("warning: ", 1)[1].split("\n  postgresql", 1)[0]
    assert warning.splitlines() == [
        f"source {checkout} is at {head}, not at the stack's source.revision {upstream.seed}; what the stack "
        f"uses changed in between (git -C {checkout} diff --name-status {upstream.seed[:12]} {head[:12]} -- "
        "PATH shows each):",
        "  services.datastorage.build.containerfile: docker/data-storage.Dockerfile modified",
        "  services.datastorage.build (COPY ., line 2): 4 file(s) changed under .: "
        f"{CRD} (modified), docker/data-storage.Dockerfile (modified), docs/agent.md (added), "
        "holmesgpt-api/Dockerfile (deleted)",
        "  services.holmesgpt-api.build.containerfile: holmesgpt-api/Dockerfile deleted",
        "  services.aianalysis.build (COPY ., line 3): 4 file(s) changed under .: "
        f"{CRD} (modified), docker/data-storage.Dockerfile (modified), docs/agent.md (added), "
        "holmesgpt-api/Dockerfile (deleted)",
        f"  services.aianalysis.manifests[0]: {CRD} modified",
    ]
    assert problem_lines(result) == [
        f"{path}: services.holmesgpt-api.build.containerfile: file {checkout}/holmesgpt-api/Dockerfile does "
        "not exist",
        "  fix: correct the path (relative paths start at `source`)",
    ]


def test_a_revision_missing_from_a_shallow_clone_is_said_plainly(git_tool, kv, tmp_path):
    upstream = Upstream(tmp_path / "git")
    write(upstream.repo, {"migrations/002_add_index.sql": "-- +goose Up\n"})
    head = upstream.commit("a migration")
    shallow = upstream.clone("shallow", "--depth", "1", "--recurse-submodules")
    path = seed_era_stack(tmp_path, upstream.seed)

    result = stack_check(path, shallow)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"warning: source.revision {upstream.seed} is not in the checkout {shallow} (the checkout is a "
        f"shallow clone), so what changed since cannot be listed; the checkout is at {head}\n"
        f"  fix: git -C {shallow} fetch --unshallow (or correct source.revision)\n"
    ) in result.stdout

    git(shallow, "fetch", "-q", "--unshallow")  # the fix
    result = stack_check(path, shallow)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "  services.datastorage-migrations.build (COPY migrations/, line 10): 1 file(s) changed under "
        "migrations: migrations/002_add_index.sql (added)\n"
    ) in result.stdout


def test_every_problem_in_one_run(git_tool, kv, tmp_path):
    """Stack file, build contexts and manifests: each problem with its file, where, and fix; then exit 1."""
    upstream = Upstream(tmp_path / "git", record_submodule=False)
    write(upstream.repo, {".dockerignore": KUBERNAUT_FILES[".dockerignore"] + "migrations\n"})
    upstream.commit("leave migrations out")
    checkout = upstream.clone("kubernaut")

    def break_it(document):
        services = document["services"]
        services["redis"]["readiness"] = {"timeout": 10}  # unknown key
        services["postgresql"]["manifests"].append("kubernaut-2025-12/manifests/missing.yaml")
        services["datastorage"]["depends_on"].append("valkey")
        document["timeouts"] = {"build": -1}

    path = seed_era_stack(tmp_path, upstream.seed, break_it)
    manifests = path.parent / "kubernaut-2025-12/manifests"
    redis = manifests / "redis.yaml"
    redis.write_text(redis.read_text().replace("containerPort: 6379", "containerPort: '6379'", 1))

    result = stack_check(path, checkout)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"kindling: stack.check: 7 problem(s) in {path}:" in result.stderr
    assert problem_lines(result) == [
        f"{path}: timeouts.build: must be a positive number of seconds, got -1",
        f"{path}: services.postgresql.manifests[2]: file {manifests}/missing.yaml does not exist",
        "  fix: correct the path (relative paths start at the stack file's folder)",
        f"{path}: services.redis.readiness: unknown key",
        "  fix: did you mean 'ready'? allowed keys: build, coverage, depends_on, helm, image, kustomize, "
        "load, manifests, ready, run",
        f"{path}: services.datastorage.depends_on: unknown service 'valkey'",
        "  fix: depend on one of: postgresql, redis, datastorage-migrations, holmesgpt-api, aianalysis",
        "kubernaut-2025-12/datastorage-migrations.Containerfile: line 10: COPY migrations/: migrations is "
        f"left out of the build context by {checkout}/.dockerignore line 5 (migrations), so the build "
        "cannot copy it",
        "  fix: narrow that pattern, or add an exception after it: !migrations",
        f"{checkout}/holmesgpt-api/Dockerfile: line 2: COPY dependencies/: dependencies/holmesgpt is a git "
        f"submodule (.gitmodules in {checkout}) and is missing; the checked-out commit records no commit "
        "for it, so `git submodule update` cannot fetch it",
        f"  fix: clone it there (git clone {(tmp_path / 'git/holmesgpt').as_uri()} "
        f"{checkout}/dependencies/holmesgpt), or check out a commit of the project that records the "
        "submodule",
        "kubernaut-2025-12/manifests/redis.yaml: Deployment/redis: spec.template.spec.containers[0].ports[0]"
        ".containerPort: '6379' is not of type 'integer'",
    ]


# --------------------------------------------------------------------------
# the Kubernetes version: the one the cluster will run


def test_version_from_the_pinned_node_image(git_tool, kv, tmp_path):
    upstream = Upstream(tmp_path / "git")
    write(upstream.repo, {CRD: yaml.safe_dump(aianalysis_crd(selectable_fields=True), sort_keys=False)})
    upstream.commit("selectableFields")
    checkout = upstream.clone("kubernaut", "--recurse-submodules")

    def pin(document):
        document["cluster"]["image"] = "kindest/node:v1.30.13"

    path = seed_era_stack(tmp_path, upstream.seed, pin)
    old = stack_check(path, checkout, KINDLING_NODE_IMAGE="kindest/node:v1.29.14")
    assert old.returncode == 1
    assert (
        "Kubernetes 1.29 schemas (the cluster's: node image kindest/node:v1.29.14 (KINDLING_NODE_IMAGE); "
        "kubernetes-validate"
    ) in old.stdout
    assert problem_lines(old) == [
        f"{checkout}/{CRD}: CustomResourceDefinition/aianalyses.kubernaut.ai: "
        "spec.versions[0]: Additional properties are not allowed "
        "('selectableFields' was unexpected)"
    ]
    pinned = stack_check(path, checkout, KINDLING_NODE_IMAGE="")
    assert pinned.returncode == 0, pinned.stdout + pinned.stderr
    assert (
        "Kubernetes 1.30 schemas (the cluster's: node image kindest/node:v1.30.13 (cluster.image)"
        in pinned.stdout
    )

    # Without a pin, the kind config's control-plane node decides; an option overrides everything.
    path = seed_era_stack(tmp_path / "unpinned", upstream.seed)
    kind_config = path.parent / "kubernaut-2025-12/kind.yaml"
    config = yaml.safe_load(kind_config.read_text())
    config["nodes"] = [
        {"role": "worker", "image": "kindest/node:v1.31.0"},
        {**config["nodes"][0], "image": "kindest/node:v1.29.14"},
    ]
    kind_config.write_text(yaml.safe_dump(config))
    configured = stack_check(path, checkout, KINDLING_NODE_IMAGE="")
    assert configured.returncode == 1
    assert (
        "Kubernetes 1.29 schemas (the cluster's: node image kindest/node:v1.29.14 (the control-plane "
        "node of kubernaut-2025-12/kind.yaml)"
    ) in configured.stdout
    chosen = stack_check(path, checkout, "--kubernetes-version", "1.33", KINDLING_NODE_IMAGE="")
    assert chosen.returncode == 0 and "Kubernetes 1.33 schemas (--kubernetes-version;" in chosen.stdout


def test_version_from_the_installed_kinds_default_node_image(testenv, git_tool, kv, tmp_path):
    """No pin anywhere: the real kind of the test environment (v0.32.0) decides."""
    kind = subprocess.run(["kind", "version"], capture_output=True, text=True, timeout=60).stdout
    upstream = Upstream(tmp_path / "git")
    checkout = upstream.clone("kubernaut", "--recurse-submodules")
    path = seed_era_stack(tmp_path, upstream.seed)
    result = stack_check(path, checkout, KINDLING_NODE_IMAGE="")
    assert result.returncode == 0, result.stdout + result.stderr
    version = re.search(r"kind v(\d+\.\d+\.\d+)", kind)[1]
    tag = nodeversion.KIND_DEFAULT_NODE[tuple(int(p) for p in version.split(".")[:2])]
    minor = ".".join(tag.removeprefix("v").split(".")[:2])
    assert (
        f"Kubernetes {minor} schemas (the cluster's: kind {version}'s default node image, "
        f"kindest/node:{tag}; " in result.stdout
    ), result.stdout


# --------------------------------------------------------------------------
# pure parts


def test_cluster_version_precedence():
    choose = nodeversion.cluster_version
    kind = "kind v0.31.0 go1.25.1 linux/amd64"
    digest = "@sha256:" + "a" * 64
    pinned = choose(
        f"kindest/node:v1.30.13{digest}", "cluster.image", "kindest/node:v1.29.2", "kind.yaml", kind
    )
    assert pinned == nodeversion.Choice("1.30", f"node image kindest/node:v1.30.13{digest} (cluster.image)")
    testenv_image = "localhost/testenv/node:v1.36.3-ddf1"
    assert choose("", "cluster.image", testenv_image, "kind.yaml", kind).version == "1.36"
    assert choose("", "", "", "", kind) == nodeversion.Choice(
        "1.35", "kind 0.31.0's default node image, kindest/node:v1.35.0"
    )
    unknown = choose("", "", "", "", None)
    assert unknown.version == "1.36" and unknown.origin.startswith("kind is not on PATH")
    newer = choose("", "", "", "", "kind v0.99.0")
    assert newer.version == "1.36"
    assert newer.origin.startswith("kind 0.99.0's default node image, taken as kind 0.32's")
    latest = choose("kindest/node:latest", "KINDLING_NODE_IMAGE", "", "", kind)
    assert latest.version == "1.35" and "its tag names no Kubernetes version" in latest.note


def test_kind_config_control_plane_image():
    assert (
        nodeversion.config_image(
            {"nodes": [{"role": "worker", "image": "w:v1.2.3"}, {"image": "cp:v1.30.0"}]}
        )
        == "cp:v1.30.0"
    )
    assert nodeversion.config_image({"nodes": [{"role": "control-plane"}]}) == ""
    assert nodeversion.config_image(None) == "" and nodeversion.config_image({"nodes": "x"}) == ""


def test_schema_version_falls_back_to_shipped_schemas():
    shipped = ["1.29", "1.30", "1.36", "1.37"]
    assert nodeversion.schema_version("1.36", shipped) == ("1.36", "")
    chosen, note = nodeversion.schema_version("1.38", shipped)
    assert chosen == "1.37" and "no schemas for Kubernetes 1.38; validating with 1.37's" in note
    assert nodeversion.schema_version("1.20", shipped)[0] == "1.29"


def test_uses_group_and_lines():
    used = [
        drift.Use("services.api.build.containerfile", "docker/api.Dockerfile"),
        drift.Use("services.api.build (COPY cmd/*.go, line 4)", drift.pathspec("cmd/*.go")),
        drift.Use("services.api.manifests[0]", "config/crd.yaml"),
    ]
    assert used[1].path == "cmd"
    output = "M\0docker/api.Dockerfile\0A\0cmd/new.go\0D\0cmd/old.go\0M\0README.md\0"
    changes = drift.parse_name_status(output)
    assert changes == {"docker/api.Dockerfile": "M", "cmd/new.go": "A", "cmd/old.go": "D", "README.md": "M"}
    assert drift.group(changes, used) == [
        (used[0], [("docker/api.Dockerfile", "M")]),
        (used[1], [("cmd/new.go", "A"), ("cmd/old.go", "D")]),
    ]
    report = drift.Drift(Path("/src"), "a" * 40, current="b" * 40, declared_full="a" * 40, changes=changes)
    [(kind, text)] = drift.report_lines(report, used)
    assert kind == "warning"
    assert text.splitlines()[1:] == [
        "  services.api.build.containerfile: docker/api.Dockerfile modified",
        "  services.api.build (COPY cmd/*.go, line 4): 2 file(s) changed under cmd: cmd/new.go (added), "
        "cmd/old.go (deleted)",
    ]
    many = {f"cmd/{i}.go": "M" for i in range(drift.LISTED + 1)}
    report.changes = many
    assert drift.report_lines(report, used)[0][1].splitlines()[1] == (
        f"  services.api.build (COPY cmd/*.go, line 4): {drift.LISTED + 1} files changed under cmd"
    )
    report.changes = {"README.md": "M"}
    assert drift.report_lines(report, used) == [
        (
            "note",
            f"source /src is at {'b' * 40}, not at the stack's source.revision {'a' * 40}; none of "
            "the 3 paths the stack uses changed in between",
        )
    ]


def test_uses_take_paths_under_the_source_only(tmp_path):
    source = tmp_path / "kubernaut"
    source.mkdir()
    path = seed_era_stack(tmp_path, "0" * 40)
    stack = load_stack(path, env={"E2E_SOURCE": str(source)}, check_files=False)
    migrations = containerfile.copies(
        (path.parent / "kubernaut-2025-12/datastorage-migrations.Containerfile").read_text()
    )
    found = drift.uses(stack, {"datastorage-migrations": migrations})
    assert [(u.field, u.path) for u in found] == [
        ("services.datastorage-migrations.build (COPY migrations/, line 10)", "migrations"),
        ("services.datastorage.build.containerfile", "docker/data-storage.Dockerfile"),
        ("services.holmesgpt-api.build.containerfile", "holmesgpt-api/Dockerfile"),
        ("services.aianalysis.build.containerfile", "docker/aianalysis.Dockerfile"),
        ("services.aianalysis.manifests[0]", CRD),
    ]  # not the kind config: it is this repository's


def test_gitmodules_and_context_sources():
    text = (
        '[submodule "dependencies/holmesgpt"]\n\tpath = dependencies/holmesgpt\n'
        "\turl = https://github.com/robusta-dev/holmesgpt.git\n\tbranch = master\n"
        '[submodule "vendor/x"]\n  url = "https://example.com/x.git"\n  path = "vendor/x/"\n'
    )
    assert buildcontext.parse_gitmodules(text) == [
        buildcontext.Submodule("dependencies/holmesgpt", "https://github.com/robusta-dev/holmesgpt.git"),
        buildcontext.Submodule("vendor/x", "https://example.com/x.git"),
    ]
    assert [buildcontext.context_source(s) for s in ("./a/", "/a/b", "../a", ".", "a/../../b")] == [
        "a",
        "a/b",
        "a",
        ".",
        "b",
    ]


def test_context_check_without_git(tmp_path):
    """A submodule folder that is empty, in a folder that is no git checkout: the fix is git's own."""
    context = tmp_path / "repo"
    gitmodules = '[submodule "sdk"]\n\tpath = libs/sdk\n\turl = https://example.com/sdk.git\n'
    write(
        context,
        {
            ".gitmodules": gitmodules,
            "libs/other/x.txt": "x",
            "app/main.py": "",
            "partly/a.py": "",
            "partly/b.txt": "",
            ".containerignore": "app/*.py\npartly/*.py\n",
        },
    )
    (context / "libs/sdk").mkdir()
    (context / ".git").mkdir()
    check = buildcontext.ContextCheck("podman", context / "Containerfile", context, "Containerfile")
    copies = containerfile.copies(
        "FROM scratch\nCOPY libs/ /libs/\nCOPY app/ /app/\nCOPY . /all/\n"
        "COPY libs/sdk/*.py /sdk/\nCOPY libs/other/x.txt nothing* /x/\n"
        "COPY partly/ /partly/\n"
    )
    lines = [str(p) for p in check.problems(copies)]
    assert lines == [
        f"Containerfile: line 2: COPY libs/: libs/sdk is a git submodule (.gitmodules in {context}) that is "
        f"not checked out: its folder is empty\n  fix: git -C {context} submodule update --init libs/sdk",
        f"Containerfile: line 3: COPY app/: app is left out of the build context by "
        f"{context}/.containerignore line 1 (app/*.py), so the build cannot copy it\n  fix: narrow that "
        "pattern, or add an exception after it: !app",
        f"Containerfile: line 5: COPY libs/sdk/*.py: libs/sdk is a git submodule (.gitmodules in {context}) "
        f"that is not checked out: its folder is empty\n  fix: git -C {context} submodule update --init "
        "libs/sdk",
        f"Containerfile: line 6: COPY nothing*: nothing* is not in the build context {context}\n  fix: "
        "correct the source (COPY sources are relative to the build context), or set the service's "
        "build.context to the folder that holds it",
    ]  # `COPY . /all/` is not taken to need the submodule; `COPY partly/` still copies partly/b.txt


def test_git_queries_through_the_runner(git_tool, tmp_path):
    upstream = Upstream(tmp_path / "git")
    checkout = upstream.clone("kubernaut")
    runner = Runner()
    recorded = drift.gitlink(runner)
    assert recorded(checkout, "dependencies/holmesgpt") is True
    assert recorded(checkout, "holmesgpt-api") is False
    assert recorded(tmp_path, "x") is None  # no git checkout
    plain = tmp_path / "plain"
    plain.mkdir()
    report = drift.inspect(runner, plain, "abc1234", [])
    assert report.current == "" and "is not a git checkout" in report.problem
    assert report.fix == "point E2E_SOURCE (or source.path) at a git clone of the project"
    unfetched = drift.inspect(runner, checkout, "abc1234", [])
    assert unfetched.problem.startswith(
        f"source.revision abc1234 is not in the checkout {checkout} (it was not fetched)"
    )
    assert unfetched.fix == f"git -C {checkout} fetch origin abc1234 (or correct source.revision)"


def test_source_revision_in_the_stack_file(tmp_path):
    (tmp_path / "src").mkdir()
    path = tmp_path / "stack.yaml"

    def load(source, **env):
        document = {"name": "s", "source": source, "services": {"db": {"image": "postgres:16"}}}
        path.write_text(yaml.safe_dump(document))
        return load_stack(path, env=env)

    assert (load("src").source, load("src").source_revision) == (tmp_path / "src", "")
    revision = "eb5185b732844766253a66998d72d0b11eaa73de"
    stack = load({"path": "src", "revision": revision.upper()})
    assert (stack.source, stack.source_revision) == (tmp_path / "src", revision)
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    overridden = load({"path": "src", "revision": "eb5185b"}, E2E_SOURCE=str(elsewhere))
    assert (overridden.source, overridden.source_revision) == (elsewhere, "eb5185b")
    with pytest.raises(StackError) as bad:
        load({"path": "src", "revision": "main"})
    assert str(bad.value) == (
        f"{path}: source.revision: 'main' is not a commit id\n  fix: write the full "
        "commit id the stack was verified against (git rev-parse HEAD in the checkout)"
    )
    with pytest.raises(StackError) as unknown:
        load({"path": "src", "commit": "eb5185b"})
    assert str(unknown.value).startswith(f"{path}: source.commit: unknown key")


def test_load_stack_raises_the_first_problem_or_collects_them_all(tmp_path):
    path = tmp_path / "stack.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "s",
                "timeouts": {"load": 0},
                "services": {
                    "api": {
                        "build": {"containerfile": "missing.Containerfile"},
                        "manifests": ["missing.yaml"],
                    },
                    "db": {"image": "Not An Image"},
                    "web": {"image": "nginx:1.27", "depends_on": ["api", "cache"], "replicas": 2},
                },
            }
        )
    )
    with pytest.raises(StackError) as first:
        load_stack(path, env={})
    assert str(first.value).startswith(f"{path}: timeouts.load: must be a positive number")

    problems = []
    stack = load_stack(path, env={}, problems=problems)
    assert [f"{p.field}: {p.problem}" for p in problems] == [
        "timeouts.load: must be a positive number of seconds, got 0",
        f"services.api.build.containerfile: file {tmp_path}/missing.Containerfile does not exist",
        f"services.api.manifests[0]: file {tmp_path}/missing.yaml does not exist",
        "services.db.image: 'Not An Image': repository path 'Not An Image' must be lowercase letters, digits "
        "and separators (. _ __ -), components joined by /",
        "services.web.replicas: unknown key",
        "services.web.depends_on: unknown service 'cache'",
    ]
    assert list(stack.services) == ["api", "web"]  # what could be read; db's image cannot be used
