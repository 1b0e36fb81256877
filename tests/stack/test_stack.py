import textwrap
from pathlib import Path

import pytest

from tasks.libs.errors import StackError
from tasks.libs.stack.model import load_stack, stack_path
from tasks.libs.stack.stackfile import expand_env, parse_size


def write(folder: Path, text: str, name="stack.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "src" / "api").mkdir(parents=True)
    (tmp_path / "src" / "api" / "Containerfile").write_text("FROM scratch\n")
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "api.yaml").write_text("kind: ConfigMap\n")
    (tmp_path / "manifests" / "db.yaml").write_text("kind: ConfigMap\n")
    (tmp_path / "kind.yaml").write_text("kind: Cluster\n")
    return tmp_path


VALID = textwrap.dedent("""\
    name: demo
    engine: podman
    source: src
    namespace: demo
    cluster: {name: demo-e2e, config: kind.yaml}
    services:
      api:
        build: {containerfile: api/Containerfile, context: api, args: {KEY: value, N: 3},
                target: runtime, memory: 3GiB}
        manifests: [manifests/api.yaml]
        depends_on: [db]
        ready: {timeout: 120}
      db:
        image: docker.io/library/postgres:16-alpine
        manifests: [manifests/db.yaml]
    """)


def test_valid_stack_resolves_paths_against_its_folder(tree, monkeypatch):
    monkeypatch.chdir("/")
    stack = load_stack(write(tree, VALID), env={})
    assert stack.name == "demo" and stack.project == "demo" and stack.engine == "podman"
    assert stack.source == tree / "src"
    assert stack.cluster_name == "demo-e2e" and stack.cluster_config == tree / "kind.yaml"
    api = stack.services["api"]
    assert api.build.containerfile == tree / "src" / "api" / "Containerfile"
    assert api.build.context == tree / "src" / "api"
    assert api.build.args == {"KEY": "value", "N": "3"}
    assert api.build.target == "runtime" and api.build.memory == 3 * 1024**3
    assert api.manifests == (tree / "manifests" / "api.yaml",)
    assert api.ready_timeout == 120 and api.depends_on == ("db",)
    db = stack.services["db"]
    assert not db.built and db.image == "docker.io/library/postgres:16-alpine"
    assert stack.order() == ["db", "api"]


def test_e2e_source_overrides_source(tree):
    other = tree / "elsewhere"
    (other / "api").mkdir(parents=True)
    (other / "api" / "Containerfile").write_text("FROM scratch\n")
    stack = load_stack(write(tree, VALID), env={"E2E_SOURCE": str(other)})
    assert stack.services["api"].build.containerfile == other / "api" / "Containerfile"


def test_build_args_expand_environment(tree):
    text = VALID.replace(
        "args: {KEY: value, N: 3}", 'args: {BASE: "${BASE_IMAGE:-busybox:1.36}", U: "${UNSET}"}'
    )
    assert load_stack(write(tree, text), env={}).services["api"].build.args == {
        "BASE": "busybox:1.36",
        "U": "",
    }
    env = {"BASE_IMAGE": "localhost/base:1"}
    assert load_stack(write(tree, text), env=env).services["api"].build.args["BASE"] == "localhost/base:1"


def test_stack_and_source_dir_placeholders(tree):
    (tree / "own.Containerfile").write_text("FROM scratch\n")
    text = VALID.replace(
        "containerfile: api/Containerfile", "containerfile: '${STACK_DIR}/own.Containerfile'"
    )
    text = text.replace("manifests: [manifests/db.yaml]", "manifests: ['${SOURCE_DIR}/api/Containerfile']")
    stack = load_stack(write(tree, text), env={})
    assert stack.services["api"].build.containerfile == tree / "own.Containerfile"
    assert stack.services["db"].manifests == (tree / "src" / "api" / "Containerfile",)


@pytest.mark.parametrize(
    "change,field,words",
    [
        (("engine: podman", "engine: containerd"), "engine", "not supported"),
        (("namespace: demo", "namespace: Demo_NS"), "namespace", "valid name"),
        (("  db:\n", "  db:\n    colour: red\n"), "services.db.colour", "unknown key"),
        (("depends_on: [db]", "depends_on: [cache]"), "services.api.depends_on", "unknown service 'cache'"),
        (("depends_on: [db]", "depends_on: [api]"), "services.api.depends_on", "itself"),
        (("manifests/api.yaml", "manifests/missing.yaml"), "services.api.manifests[0]", "does not exist"),
        (
            ("containerfile: api/Containerfile", "containerfile: api/Nope"),
            "services.api.build.containerfile",
            "does not exist",
        ),
        (("context: api,", "context: nope,"), "services.api.build.context", "does not exist"),
        (("config: kind.yaml", "config: nokind.yaml"), "cluster.config", "does not exist"),
        (
            ("ready: {timeout: 120}", "ready: {timeout: soon}"),
            "services.api.ready.timeout",
            "positive number",
        ),
        (("memory: 3GiB", "memory: lots"), "services.api.build.memory", "not a size"),
        (
            ("image: docker.io/library/postgres:16-alpine", "image: Postgres:16"),
            "services.db.image",
            "repository path",
        ),
        (
            ("image: docker.io/library/postgres:16-alpine", "image: [a]"),
            "services.db.image",
            "non-empty string",
        ),
        (("args: {KEY: value, N: 3}", "args: [KEY]"), "services.api.build.args", "mapping"),
        (
            ("args: {KEY: value, N: 3}", "args: {KEY: {a: 1}}"),
            "services.api.build.args.KEY",
            "string or number",
        ),
        (("  db:\n    image", "  db:\n    build: x\n    image"), "services.db", "exactly one"),
        (("name: demo", "nam: demo"), "nam", "unknown key"),
    ],
)
def test_each_problem_names_file_field_and_fix(tree, change, field, words):
    old, new = change
    assert old in VALID, old
    text = VALID.replace(old, new, 1)
    path = tree / "stack.yaml"
    path.write_text(text)
    with pytest.raises(StackError) as caught:
        load_stack(path, env={})
    error = caught.value
    assert error.path == str(path)
    assert error.field == field, str(error)
    assert words in error.problem, str(error)
    assert str(path) in str(error)


def test_cycle_is_reported_with_its_path(tree):
    text = VALID + "    depends_on: [api]\n"
    with pytest.raises(StackError) as caught:
        load_stack(write(tree, text), env={})
    assert "cycle" in caught.value.problem
    assert "api" in caught.value.problem and "db" in caught.value.problem


@pytest.mark.parametrize(
    "content,words",
    [
        (b"", "empty"),
        (b"- a\n- b\n", "not a mapping"),
        (b"name: [unclosed\n", "invalid YAML"),
        (b"name: caf\xe9\n", "not UTF-8"),
        (b"name: a\nname: b\nservices: {}\n", "duplicate key"),
    ],
)
def test_unreadable_documents(tmp_path, content, words):
    path = tmp_path / "stack.yaml"
    path.write_bytes(content)
    with pytest.raises(StackError) as caught:
        load_stack(path, env={})
    assert words in str(caught.value)


def test_duplicate_service_is_refused(tree):
    text = VALID + "  api:\n    image: x\n"
    with pytest.raises(StackError) as caught:
        load_stack(write(tree, text), env={})
    assert "duplicate key 'api'" in str(caught.value)


def test_huge_and_missing_files(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * (2 * 1024 * 1024))
    with pytest.raises(StackError, match="at most"):
        load_stack(big, env={})
    with pytest.raises(StackError, match="not found"):
        load_stack(tmp_path / "none.yaml", env={})


def test_check_files_false_loads_without_the_source_tree(tmp_path):
    path = write(tmp_path, VALID.replace("source: src", "source: ../absent"))
    stack = load_stack(path, env={}, check_files=False)
    assert set(stack.services) == {"api", "db"}


def test_closure_and_select(tree):
    stack = load_stack(write(tree, VALID), env={})
    assert stack.closure(["api"]) == ["db", "api"]
    assert stack.select("api, db") == ["api", "db"]
    with pytest.raises(StackError, match="no service named nope"):
        stack.select("nope")


def test_stack_path_precedence(tmp_path):
    assert stack_path(None, env={}, root=tmp_path) == tmp_path / "e2e.yaml"
    assert stack_path("other.yaml", env={}, root=tmp_path) == tmp_path / "other.yaml"
    assert stack_path("other.yaml", env={"E2E_STACK": "/x/s.yaml"}, root=tmp_path) == Path("/x/s.yaml")


def test_expand_env_and_sizes():
    assert expand_env("${A}-${B:-two}-${C:-}", {"A": "one"}) == "one-two-"
    assert parse_size("512MiB") == 512 * 1024**2
    assert parse_size("2G") == 2 * 1000**3
    assert parse_size("1.5GiB") == int(1.5 * 1024**3)
    assert parse_size(1024) == 1024
    for bad in ("", "lots", "3 parsecs", True):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_cluster_names_longer_than_kind_allows_are_refused(tree):
    """kind warns above 50 characters (pkg/cluster/internal/create/create.go clusterNameMax):
    node names append -control-plane or -external-load-balancer."""
    long_name = "c" * 51
    path = write(tree, VALID.replace("cluster: {name: demo-e2e", f"cluster: {{name: {long_name}"))
    with pytest.raises(StackError) as info:
        load_stack(path, env={})
    assert info.value.field == "cluster.name" and "at most 50" in str(info.value)
    path = write(tree, VALID.replace("cluster: {name: demo-e2e", "cluster: {name: " + "c" * 50))
    assert load_stack(path, env={}).cluster_name == "c" * 50


def test_node_image_from_the_stack_or_the_environment(tree):
    path = write(
        tree, VALID.replace("config: kind.yaml}", "config: kind.yaml, image: 'kindest/node:v1.36.1'}")
    )
    assert load_stack(path, env={}).node_image == "kindest/node:v1.36.1"
    assert (
        load_stack(path, env={"KINDLING_NODE_IMAGE": "localhost/node:v1"}).node_image == "localhost/node:v1"
    )
    assert load_stack(write(tree, VALID), env={}).node_image == ""  # kind's own default
    with pytest.raises(StackError) as info:
        load_stack(path, env={"KINDLING_NODE_IMAGE": "Bad Image!"})
    assert info.value.field == "cluster.image (from KINDLING_NODE_IMAGE)"


def test_the_suite_command_names_the_stacks_and_the_sources_folders(tree):
    """As a run step's command does: ${STACK_DIR}, ${SOURCE_DIR}, then the environment."""
    path = write(
        tree,
        VALID
        + textwrap.dedent("""\
            test:
              command: [python3, "${STACK_DIR}/suite.py", "${SOURCE_DIR}/fixtures", "${LEVEL:-info}"]
            """),
    )
    stack = load_stack(path, env={})
    assert stack.test.command == ("python3", f"{tree}/suite.py", f"{tree}/src/fixtures", "info")
