"""`.dockerignore` rules (tasks/libs/build/ignorefile.py): pure tests of Docker's documented rules,
which ignore file a build reads, and one check that real podman leaves out exactly what the module
says."""

import uuid

import pytest
from conftest import podman_cmd

from tasks.libs.build import ignorefile


def left_out(text, path):
    rule = ignorefile.Matcher(ignorefile.parse(text)).excluded_by(path)
    return None if rule is None else (rule.line, str(rule))


@pytest.mark.parametrize(
    "text,path,expected",
    [
        # Docker's documentation examples
        ("*/temp*", "somedir/temporary.txt", (1, "*/temp*")),
        ("*/temp*", "somedir/temp", (1, "*/temp*")),
        ("*/temp*", "temporary.txt", None),
        ("*/*/temp*", "a/b/temp.txt", (1, "*/*/temp*")),
        ("*/*/temp*", "a/temp.txt", None),
        ("temp?", "tempa", (1, "temp?")),
        ("temp?", "temp", None),
        ("temp?", "tempab", None),
        ("**/*.go", "main.go", (1, "**/*.go")),
        ("**/*.go", "cmd/api/main.go", (1, "**/*.go")),
        ("**/*.go", "cmd/api/main.gox", None),
        # exceptions: the last matching line decides
        ("*.md\n!README.md", "README.md", None),
        ("*.md\n!README.md", "CHANGES.md", (1, "*.md")),
        ("*.md\n!README*.md\nREADME-secret.md", "README-secret.md", (3, "README-secret.md")),
        ("*.md\n!README*.md\nREADME-secret.md", "README-public.md", None),
        # a folder's pattern leaves out what is under it; an exception can put one file back
        ("docs", "docs/a/b.txt", (1, "docs")),
        ("docs\n!docs/keep.txt", "docs/keep.txt", None),
        ("docs\n!docs/keep.txt", "docs/other.txt", (1, "docs")),
        # cleaning: leading and trailing slashes, `..`, repeated slashes, surrounding spaces
        ("/vendor/", "vendor/x/y.go", (1, "vendor")),
        ("a//b/../c", "a/c/d", (1, "a/c")),
        ("  build  ", "build/out", (1, "build")),
        ("! docs/keep.txt", "docs/keep.txt", None),
        # comments start in the first column only
        ("#secret.txt", "#secret.txt", None),
        ("#comment\nsecret.txt", "secret.txt", (2, "secret.txt")),
        # ** on its own, at the end, at the start without a slash
        ("**", "any/thing", (1, "**")),
        ("foo/**", "foo/a/b", (1, "foo/**")),
        ("foo/**", "foo", None),
        ("a/**/b", "a/b", (1, "a/**/b")),
        ("a/**/b", "a/x/y/b", (1, "a/**/b")),
        ("**foo", "barfoo", (1, "**foo")),
        # escapes and classes, as Go's filepath.Match reads them
        ("\\*.txt", "*.txt", (1, "\\*.txt")),
        ("\\*.txt", "a.txt", None),
        ("[ab].txt", "b.txt", (1, "[ab].txt")),
        ("[^ab].txt", "b.txt", None),
        ("[^ab].txt", "c.txt", (1, "[^ab].txt")),
        ("file.txt", "fileXtxt", None),  # '.' is no wildcard
    ],
)
def test_docker_rules(text, path, expected):
    assert left_out(text, path) == expected


def test_the_context_root_is_never_left_out():
    assert left_out("**\n*", ".") is None
    assert left_out("**", "") is None


@pytest.mark.parametrize(
    "text,message",
    [
        ("ok\n[unclosed", "line 2: syntax error in pattern '[unclosed'"),
        ("!", "line 1: illegal exception pattern"),
    ],
)
def test_patterns_the_engine_refuses(text, message):
    with pytest.raises(ignorefile.BadPattern) as caught:
        ignorefile.Matcher(ignorefile.parse(text))
    assert str(caught.value).startswith(message)


def test_which_ignore_file_each_engine_reads(tmp_path):
    """podman, first found: <containerfile>.dockerignore, <containerfile>.containerignore (beside the
    Containerfile, here outside the context as with ${STACK_DIR}), the context's .containerignore, its
    .dockerignore. docker reads only the .dockerignore ones."""
    context = tmp_path / "ctx"
    context.mkdir()
    containerfile = tmp_path / "api.Containerfile"
    assert ignorefile.ignore_file("podman", context, containerfile) is None
    # Added from the lowest precedence up: (file, what podman reads then, what docker reads then).
    steps = [
        (context / ".dockerignore", 0, 0),
        (context / ".containerignore", 1, 0),
        (tmp_path / "api.Containerfile.containerignore", 2, 0),
        (tmp_path / "api.Containerfile.dockerignore", 3, 3),
    ]
    for path, podman_reads, docker_reads in steps:
        path.write_text("x\n")
        assert ignorefile.ignore_file("podman", context, containerfile) == steps[podman_reads][0]
        assert ignorefile.ignore_file("docker", context, containerfile) == steps[docker_reads][0]


CONTEXT_FILES = [
    "a.txt",
    "b.md",
    "README.md",
    "docs/guide.txt",
    "docs/keep.txt",
    "src/x/y.go",
    "temp1",
    "tempab",
]
RULES = "# what the image never needs\n*.md\n!README.md\ndocs\n!docs/keep.txt\n**/*.go\ntemp?\n"


def test_podman_leaves_out_what_the_rules_say(podman, tmp_path):
    """Each file copied alone: podman's build fails exactly for the files the rules leave out. The
    Containerfile's own <name>.dockerignore is the one podman reads (over the context's)."""
    context = tmp_path / "ctx"
    for name in CONTEXT_FILES:
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_text(name)
    (context / ".dockerignore").write_text("*\n")  # overridden by the Containerfile's own file
    containerfile = tmp_path / "probe.Containerfile"
    (tmp_path / "probe.Containerfile.dockerignore").write_text(RULES)
    matcher = ignorefile.read(ignorefile.ignore_file("podman", context, containerfile))
    project = f"kindling-ignore-probe-{uuid.uuid4().hex[:8]}"
    refs = []
    try:
        outcomes = {}
        for i, name in enumerate(CONTEXT_FILES):
            containerfile.write_text(f"FROM scratch\nCOPY {name} /out/\n")
            ref = f"localhost/{project}:{i}"
            built = podman_cmd("build", "-q", "-t", ref, "-f", str(containerfile), str(context), check=False)
            outcomes[name] = built.returncode == 0
            if built.returncode == 0:
                refs.append(ref)
            else:
                assert "filtered out" in built.stderr, built.stderr
        assert outcomes == {name: matcher.excluded_by(name) is None for name in CONTEXT_FILES}
        kept = sorted(name for name, copied in outcomes.items() if copied)
        assert kept == ["README.md", "a.txt", "docs/keep.txt", "tempab"]
    finally:
        if refs:
            podman_cmd("rmi", *refs, check=False)
