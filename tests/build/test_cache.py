import os

import pytest

from tasks.libs.build.digest import build_digest, context_files, is_ignored, read_ignore_rules


@pytest.fixture
def context(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.go").write_text("package main\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.md").write_text("docs\n")
    (tmp_path / "Containerfile").write_text("FROM scratch\nCOPY app /app\n")
    return tmp_path


def digest(ctx, args=None, target=""):
    return build_digest(ctx / "Containerfile", ctx, args or {}, target)


def test_same_inputs_same_digest(context):
    assert digest(context) == digest(context)


@pytest.mark.parametrize(
    "change",
    [
        lambda c: (c / "app" / "main.go").write_text("package main // changed\n"),
        lambda c: (c / "app" / "new.go").write_text("x"),
        lambda c: (c / "app" / "main.go").unlink(),
        lambda c: (c / "Containerfile").write_text("FROM scratch\nCOPY app /srv\n"),
        lambda c: (c / "app" / "main.go").rename(c / "app" / "other.go"),
        lambda c: os.chmod(c / "app" / "main.go", 0o755),
    ],
)
def test_changes_to_inputs_invalidate(context, change):
    before = digest(context)
    change(context)
    assert digest(context) != before


def test_args_and_target_invalidate(context):
    base = digest(context, {"A": "1"})
    assert digest(context, {"A": "2"}) != base
    assert digest(context, {"A": "1", "B": ""}) != base
    assert digest(context, {"A": "1"}, target="runtime") != base
    assert digest(context, {"A": "1"}) == base


@pytest.mark.parametrize("ignore_file", [".containerignore", ".dockerignore"])
def test_ignored_files_do_not_invalidate(context, ignore_file):
    (context / ignore_file).write_text("# comment\ndocs\n*.log\n")
    before = digest(context)
    (context / "docs" / "readme.md").write_text("edited\n")
    (context / "build.log").write_text("noise\n")
    assert digest(context) == before


def test_git_and_kindling_state_never_count(context):
    before = digest(context)
    (context / ".git").mkdir()
    (context / ".git" / "HEAD").write_text("ref\n")
    (context / ".kindling" / "runs").mkdir(parents=True)
    (context / ".kindling" / "runs" / "x.log").write_text("log\n")
    assert digest(context) == before


def test_ignore_semantics_follow_docker(tmp_path):
    (tmp_path / ".dockerignore").write_text("**/*.tmp\nvendor\n!vendor/keep.txt\n/build/*.o\n")
    rules = read_ignore_rules(tmp_path)
    assert is_ignored("a/b/c.tmp", rules) and is_ignored("c.tmp", rules)
    assert is_ignored("vendor/x/y.go", rules)
    assert not is_ignored("vendor/keep.txt", rules)
    assert is_ignored("build/x.o", rules) and not is_ignored("src/build/x.o", rules)
    assert not is_ignored("main.go", rules)


def test_context_files_lists_what_is_sent(context):
    (context / ".dockerignore").write_text("docs\n")
    assert context_files(context) == [".dockerignore", "Containerfile", "app/main.go"]
