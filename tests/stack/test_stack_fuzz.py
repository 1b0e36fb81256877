"""Property tests for the stack loader: whatever a stack file holds, load_stack returns a
Stack or raises a StackError naming the file; nothing else (no TypeError, OverflowError,
OSError, ... that the CLI would show as a traceback).

Inputs: valid base documents with keys dropped, values replaced by random YAML values of
other types, random extra keys, random service names, deep nesting; the same documents
with YAML-level snippets spliced into the text; random text; raw random bytes. Plus one
deterministic regression per problem the fuzzing found.
"""

import atexit
import copy
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import configuration as hypothesis_configuration
from hypothesis import strategies as st

from tasks.libs import samples
from tasks.libs.errors import StackError
from tasks.libs.stack import model as stack_module
from tasks.libs.stack.model import Stack, load_stack

_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="kindling-hypothesis-")
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, ignore_errors=True)  # also after a bare collection
hypothesis_configuration.set_hypothesis_home_dir(_HYPOTHESIS_HOME)

# No example database: it would be written into the repository (.hypothesis/). No shrinking:
# a failure is reported as found (shrinking these documents takes minutes).
FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module", autouse=True)
def hypothesis_home():
    """Hypothesis's caches (charmap, constants) went to a temporary folder, not .hypothesis/ in
    the repository (set at import, below); removed after this module."""
    yield
    hypothesis_configuration.set_hypothesis_home_dir(None)
    shutil.rmtree(_HYPOTHESIS_HOME, ignore_errors=True)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A valid stack (built + prebuilt services, cluster config, timeouts) and its files."""
    folder = tmp_path_factory.mktemp("fuzz")
    path = samples.write_stack(
        folder,
        {
            "a": {},
            "b": {"depends_on": ["a"], "memory": "1GiB"},
            "db": {"image": "docker.io/library/postgres:16-alpine"},
        },
        name="fuzz",
        project="fuzzproj",
        base_image=samples.BASE_IMAGE,
        namespace="fuzzns",
    )
    (folder / "kind.yaml").write_text("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n")
    document = yaml.safe_load(path.read_text())
    document["source"] = "."
    document["engine"] = "podman"
    document["cluster"]["config"] = "kind.yaml"
    document["timeouts"] = {"build": 600, "load": 60}
    document["services"]["a"]["build"]["target"] = ""
    document["services"]["a"]["build"]["coverage_args"] = {"GOFLAGS": "-cover"}
    document["services"]["db"]["load"] = False
    if "test" in stack_module.TOP_KEYS:  # sections newer than this test file's first version
        document["test"] = {
            "command": ["go", "test", "./..."],
            "workdir": ".",
            "env": {"A": "1"},
            "timeout": 60,
        }
    if "registry" in stack_module.TOP_KEYS:
        document["registry"] = {"host": "localhost:5001", "tls_verify": False}
    assert isinstance(load_stack(_write_doc(folder / "base.yaml", document), env={}), Stack)
    return folder, document


def _write_doc(path: Path, document) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return path


def check(path: Path, check_files: bool, env=None):
    """The property: a Stack, or a StackError whose message names the file."""
    try:
        result = load_stack(path, env={} if env is None else env, check_files=check_files)
    except StackError as exc:
        assert str(path) in str(exc), str(exc)[:500]
        assert exc.path == str(path)
        return exc
    assert isinstance(result, Stack), type(result)
    return result


# ---------------------------------------------------------------- strategies

TRICKY_STRINGS = [
    "",
    " ",
    "\t",
    "~",
    "null",
    "0",
    "-1",
    "1e999",
    "${STACK_DIR}/x",
    "${SOURCE_DIR}/manifests/a.yaml",
    "${SOURCE_DIR}",
    "${UNSET}",
    "${X:-y}",
    "..",
    "../../..",
    "/",
    "/etc/passwd",
    "/dev/null",
    "/proc",
    "a" * 300,
    "x/" * 200,
    "Containerfile",
    "manifests/a.yaml",
    "src/a",
    "1GiB",
    "3 Ti",
    "-5MiB",
    "docker.io/library/busybox:1.36",
    "UPPER",
    "a b",
    "a_b",
    "-a",
    "a-",
    "localhost/x/y:z",
    "busybox@sha256:" + "0" * 64,
    "x@sha256:zz",
    "x:" + "t" * 200,
    "ünïcödé",
    "\u202e",
    "\x00",
    "podman",
    "docker",
    "kind.yaml",
]
NUMBERS = st.one_of(
    st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, 2**63, -1, 0, 0.001]),
    st.floats(),
    st.integers(),
    st.from_regex(r"\A[0-9]{1,400}(\.[0-9]+)? ?([KMGT]i?B?)?\Z"),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(TRICKY_STRINGS),
    st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, 2**63, -0.0, 0.5]),
)
KEYS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(TRICKY_STRINGS),
    st.integers(-5, 5),
    st.booleans(),
    st.none(),
    st.sampled_from(
        [
            "name",
            "image",
            "build",
            "services",
            "servces",
            "depends_on",
            "manifests",
            "ready",
            "load",
            "timeout",
            "memory",
            "args",
            "context",
            "containerfile",
            "config",
            "project",
            "source",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)),
    max_leaves=12,
)
SERVICE_NAMES = st.one_of(
    st.text(max_size=70),
    st.sampled_from(TRICKY_STRINGS),
    st.integers(-3, 3),
    st.booleans(),
    st.none(),
    st.sampled_from(["a", "b", "db", "x" * 63, "x" * 64]),
)
DEEP = "__KINDLING_DEEP__"
INTERESTING = {
    "timeout",
    "memory",
    "load",
    "depends_on",
    "manifests",
    "image",
    "name",
    "project",
    "source",
    "containerfile",
    "context",
    "args",
    "timeouts",
    "services",
    "namespace",
    "config",
    "command",
}

# YAML-level constructs a Python value cannot express: complex keys, aliases, tags, merges...
SNIPPETS = [
    "? [a, b]\n: 1",
    "? {a: 1}\n: 2",
    "x: &anchor [1, 2]\ny: *anchor",
    "<<: {name: merged}",
    "a: !!binary aGVsbG8=",
    "a: !!set {x, y}",
    "a: !!timestamp 2001-12-14t21:59:43.10-05:00",
    "a: !!omap [x: 1, y: 2]",
    "a: !!python/object:os.system {}",
    "a: !!float .nan",
    "a: .inf",
    "a: -.inf",
    "a: 0x1F",
    "a: 0o17",
    "a: 1_000",
    "a: ~",
    "---\nname: second",
    "%YAML 1.1\n---",
    "a: |\n  block\n  text",
    "\ta: tab",
    "a: 'unclosed",
    "a: [1, 2",
    "a: {b: 1",
    "*undefined",
    "&a [*a]",
    "a: &r [*r]",
    "\ufeffname: bom",
    "name: x\nname: y",
    "a:\n  - b\n - c",
]


def _paths(node, prefix=()):
    """Every path (tuple of keys/indexes) to a value inside a document."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, prefix + (index,))
    return found


def _parent(document, path):
    node = document
    for part in path[:-1]:
        node = node[part]
    return node


@st.composite
def mutated_documents(draw, base):
    document = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(document) if p]
        op = draw(st.sampled_from(["drop", "replace", "extra", "rename", "deep", "number"]))
        if op == "rename":
            services = document.get("services")
            if not isinstance(services, dict) or not services:
                continue
            old = draw(st.sampled_from(sorted(services, key=repr)))
            new = draw(SERVICE_NAMES)
            document["services"] = {(new if k == old else k): v for k, v in services.items()}
            continue
        if op == "extra":
            mappings = [p for p in _paths(document) if isinstance(_get(document, p), dict)]
            target = _get(document, draw(st.sampled_from(mappings)))
            target[draw(KEYS)] = draw(VALUES)
            continue
        if not paths:
            continue
        interesting = [p for p in paths if p[-1] in INTERESTING]
        path = draw(st.sampled_from(interesting if interesting and draw(st.booleans()) else paths))
        parent = _parent(document, path)
        if op == "number":  # a numeric field gets an edge-case number or numeric text
            numeric = [
                p for p in paths if p[-1] in ("timeout", "memory") or (len(p) > 1 and p[-2] == "timeouts")
            ]
            if numeric:
                path = draw(st.sampled_from(numeric))
                _parent(document, path)[path[-1]] = draw(NUMBERS)
        elif op == "drop":
            del parent[path[-1]]
        elif op == "replace":
            parent[path[-1]] = draw(VALUES)
        else:
            parent[path[-1]] = DEEP
    return document


def _get(document, path):
    node = document
    for part in path:
        node = node[part]
    return node


def _render(document, depth, flavour) -> str:
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    if flavour == "list":
        nested = "[" * depth + "]" * depth
    elif flavour == "map":
        nested = "{a: " * depth + "1" + "}" * depth
    else:
        nested = "- " * depth + "x"
        nested = "\n" + nested
    return text.replace(DEEP, nested)


# ---------------------------------------------------------------- properties


@FUZZ
@given(data=st.data())
def test_mutated_documents_load_or_raise_stack_error(sample, data):
    folder, base = sample
    document = data.draw(mutated_documents(base))
    depth = data.draw(st.one_of(st.integers(1, 50), st.integers(50, 3000)))
    flavour = data.draw(st.sampled_from(["list", "map", "block"]))
    path = folder / "fuzz.yaml"
    path.write_text(_render(document, depth, flavour), encoding="utf-8")
    check(path, check_files=data.draw(st.booleans()))


@FUZZ
@given(data=st.data())
def test_text_level_mutations_load_or_raise_stack_error(sample, data):
    folder, base = sample
    lines = yaml.safe_dump(base, sort_keys=False).splitlines()
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["insert", "delete", "truncate", "indent", "random"]))
        position = data.draw(st.integers(0, max(0, len(lines))))
        if op == "insert":
            snippet = data.draw(st.one_of(st.sampled_from(SNIPPETS), st.text(max_size=40)))
            indent = " " * data.draw(st.sampled_from([0, 2, 4, 6]))
            lines[position:position] = [indent + line for line in snippet.splitlines() or [""]]
        elif op == "delete" and lines:
            del lines[min(position, len(lines) - 1)]
        elif op == "truncate":
            text = "\n".join(lines)
            lines = text[: data.draw(st.integers(0, len(text)))].splitlines()
        elif op == "indent" and lines:
            index = min(position, len(lines) - 1)
            lines[index] = data.draw(st.sampled_from([" ", "\t", "   "])) + lines[index]
        else:
            lines = data.draw(st.text()).splitlines()
    path = folder / "fuzz-text.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    check(path, check_files=data.draw(st.booleans()))


@FUZZ
@given(
    raw=st.one_of(
        st.binary(max_size=4096), st.text(max_size=2000).map(lambda t: t.encode("utf-8", "surrogatepass"))
    ),
    check_files=st.booleans(),
)
def test_raw_bytes_load_or_raise_stack_error(sample, raw, check_files):
    folder, _ = sample
    path = folder / "fuzz-bytes.yaml"
    path.write_bytes(raw)
    check(path, check_files)


# ------------------------------------------------ regressions the fuzzing found

REGRESSIONS = {
    # _UniqueKeyLoader: `key in seen` with a list/dict key raises TypeError (unhashable).
    "complex-mapping-key": ("? [a, b]\n: 1\nname: x\nservices: {db: {image: busybox}}\n", ""),
    "complex-key-in-services": ("name: x\nservices:\n  ? {a: 1}\n  : {image: busybox}\n", ""),
    # _service: int(timeout) of .inf / .nan (OverflowError / ValueError).
    "ready-timeout-inf": (
        "name: x\nservices: {db: {image: busybox, ready: {timeout: .inf}}}\n",
        "services.db.ready.timeout",
    ),
    "ready-timeout-nan": (
        "name: x\nservices: {db: {image: busybox, ready: {timeout: .nan}}}\n",
        "services.db.ready.timeout",
    ),
    "test-timeout-inf": (
        "name: x\ntest: {command: [go], timeout: .inf}\nservices: {db: {image: busybox}}\n",
        "test.timeout",
    ),
    # parse_size: int(inf) raises OverflowError, which _build does not catch.
    "memory-inf": ("name: x\nservices: {a: {build: {memory: .inf}}}\n", "services.a.build.memory"),
    "memory-huge-text": (
        "name: x\nservices: {a: {build: {memory: '" + "9" * 400 + "GiB'}}}\n",
        "services.a.build.memory",
    ),
    # Path.is_dir()/is_file() raise OSError(ENAMETOOLONG) instead of returning False.
    "source-too-long": ("name: x\nsource: " + "s" * 5000 + "\nservices: {db: {image: busybox}}\n", "source"),
    "manifest-name-too-long": (
        "name: x\nservices: {db: {image: busybox, manifests: [" + "m" * 5000 + "]}}\n",
        "services.db.manifests[0]",
    ),
    "containerfile-name-too-long": (
        "name: x\nservices: {a: {build: {containerfile: " + "c" * 300 + "}}}\n",
        "services.a.build.containerfile",
    ),
}


@pytest.mark.parametrize("case", sorted(REGRESSIONS))
def test_regression_inputs_raise_stack_error(tmp_path, case):
    text, field = REGRESSIONS[case]
    path = tmp_path / "stack.yaml"
    path.write_text(text)
    for check_files in (True, False):
        try:
            load_stack(path, env={}, check_files=check_files)
        except StackError as exc:
            assert str(path) in str(exc)
            assert field in str(exc)
        except Exception as exc:  # noqa: BLE001 - exactly what must not happen
            pytest.fail(f"{case}: {type(exc).__name__}: {str(exc)[:200]} (check_files={check_files})")
        else:
            pytest.fail(f"{case}: accepted (check_files={check_files})")


ALIAS_BOMB_CHILD = textwrap.dedent("""\
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (256 << 20, 256 << 20))
    sys.path.insert(0, sys.argv[2])
    from tasks.libs.errors import StackError
    from tasks.libs.stack.model import load_stack
    try:
        load_stack(sys.argv[1], env={}, check_files=False)
    except StackError as exc:
        print("STACKERROR", len(str(exc)))
    except BaseException as exc:
        print("OTHER", type(exc).__name__)
    else:
        print("ACCEPTED")
    """)


def test_alias_bomb_gives_a_short_error(tmp_path):
    """A 300-byte file whose value is a YAML alias tree of 8**8 leaves: the error message must
    not echo the value in full (today it is ~100 MB; two more levels make it ~6 GB). Run in a
    child with a 256 MiB address-space limit so a failure cannot take the machine's memory."""
    levels = ["&l0 [x, x, x, x, x, x, x, x]"]
    levels += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 8) + "]" for i in range(1, 8)]
    path = tmp_path / "stack.yaml"
    path.write_text(
        "name: n\nservices: {db: {image: busybox, ready: {timeout: [" + ", ".join(levels) + "]}}}\n"
    )
    assert path.stat().st_size < 1000
    result = subprocess.run(
        [sys.executable, "-c", ALIAS_BOMB_CHILD, str(path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    words = result.stdout.split()
    assert words[:1] == ["STACKERROR"], result.stdout + result.stderr[-2000:]
    assert int(words[1]) < 10_000, f"the error message is {words[1]} characters long"
