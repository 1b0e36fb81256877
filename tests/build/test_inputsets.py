"""An image's input set (`build.inputs`): the `go build` commands read from a Containerfile
(tasks/libs/build/gobuilds.py), the files each rule gives (tasks/libs/build/inputsets.py), and the digest that
covers exactly them (tasks/libs/build/digest.py). `go list` is the host's real Go."""

import os
import shutil
from pathlib import Path

import pytest
import yaml

from tasks.libs.build import digest as cache
from tasks.libs.build import gobuilds, inputsets
from tasks.libs.errors import StackError
from tasks.libs.procs.runner import Runner
from tasks.libs.stack.model import load_stack

IN_CI = os.environ.get("CI") == "true"
HOST = {"TARGETARCH": "amd64", "TARGETOS": "linux", "BUILDARCH": "amd64", "BUILDOS": "linux"}

# As Kubernaut's docker/aianalysis.Dockerfile builds (d5a4a870): one package, with or without
# -cover as a build arg chooses, GOARCH from the platform arg, flags with quoted values.
KUBERNAUT_SHAPED = """\
ARG BUILDER_IMAGE=registry.example/go-toolset:1.26
FROM ${BUILDER_IMAGE} AS builder
ARG TARGETARCH
ARG GOOS=linux
ARG GOARCH=${TARGETARCH}
ARG GOFLAGS=""
ARG APP_VERSION=v1.6.0
WORKDIR /opt/app-root/src
COPY --chown=1001:0 go.mod go.sum ./
COPY --chown=1001:0 . .
RUN if [ "${GOFLAGS}" = "-cover" ]; then \\
	echo "Building with coverage instrumentation..."; \\
	CGO_ENABLED=0 GOOS=${GOOS} GOARCH=${GOARCH} GOFLAGS=${GOFLAGS} go build \\
	-mod=mod \\
	-ldflags="-X example.com/k/internal/version.Version=${APP_VERSION}" \\
	-o aianalysis-controller ./cmd/aianalysis; \\
	else \\
	CGO_ENABLED=0 GOOS=${GOOS} GOARCH=${GOARCH} go build \\
	-mod=mod -ldflags="-s -w" \\
	-o aianalysis-controller ./cmd/aianalysis; \\
	fi
FROM scratch
COPY --from=builder /opt/app-root/src/aianalysis-controller /aianalysis-controller
"""


def test_kubernaut_shaped_containerfile_compiles_one_package_for_the_host():
    builds = gobuilds.go_builds(KUBERNAUT_SHAPED, {}, HOST)
    env = (("CGO_ENABLED", "0"), ("GOARCH", "amd64"), ("GOOS", "linux"))
    assert builds == [gobuilds.GoBuild(("./cmd/aianalysis",), (), env)] * 2
    # A build arg wins over the ARG default, and reaches the go command's environment.
    arm = gobuilds.go_builds(KUBERNAUT_SHAPED, {"GOARCH": "arm64", "GOFLAGS": "-cover"}, HOST)
    assert {dict(b.env)["GOARCH"] for b in arm} == {"arm64"}


def test_tags_flags_exec_form_install_and_exports():
    text = """\
FROM go AS build
ENV GOFLAGS=-tags=fromenv
RUN ["go", "build", "-o", "/out/a", "-tags", "one,two", "./cmd/a"]
RUN export GOOS=linux && go install -v ./cmd/b ./cmd/c
RUN /usr/local/go/bin/go build -tags 'x y' -- ./cmd/d
RUN go test ./... && go vet ./... && echo go build ./not/this
"""
    builds = gobuilds.go_builds(text, {}, HOST)
    assert [(b.packages, b.tags) for b in builds] == [
        (("./cmd/a",), ("fromenv", "one", "two")),
        (("./cmd/b", "./cmd/c"), ("fromenv",)),
        (("./cmd/d",), ("fromenv", "x", "y")),
    ]
    assert dict(builds[1].env) == {"GOOS": "linux"}


def test_no_package_means_the_working_folder_and_no_go_build_means_none():
    assert gobuilds.go_builds("FROM go\nRUN go build -o /app\n", {}, HOST)[0].packages == (".",)
    assert gobuilds.go_builds("FROM go\nRUN make build\n", {}, HOST) == []


@pytest.mark.parametrize(
    ("run", "reason"),
    [
        ("go build ./cmd/${SERVICE}", "no ARG default"),
        ("go build -C sub ./cmd/a", "-C"),
        ("go build $(go list ./cmd/...)", "command's output"),
        ("GOARCH=${NOWHERE} go build ./cmd/a", "no ARG default"),
        ("go build 'unclosed", "cannot be read"),
    ],
)
def test_what_cannot_be_told_for_certain_is_unclear(run, reason):
    with pytest.raises(gobuilds.Unclear, match=reason):
        gobuilds.go_builds(f"FROM go\nRUN {run}\n", {}, HOST)


def parse(value, tmp_path):
    (tmp_path / "Containerfile").write_text("FROM scratch\n")
    stack = {"name": "s", "services": {"api": {"build": {"inputs": value}, "manifests": []}}}
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(stack))
    return load_stack(path, env={}).services["api"].build.inputs


def test_the_stack_names_a_rule(tmp_path):
    assert parse(None, tmp_path) == inputsets.Inputs()
    assert parse("context", tmp_path) == inputsets.Inputs()
    assert parse("go", tmp_path) == inputsets.Inputs("go")
    assert parse({"go": ["./cmd/api"]}, tmp_path) == inputsets.Inputs("go", ("./cmd/api",))
    assert parse(["cmd/api/**", "go.mod"], tmp_path) == inputsets.Inputs(
        "globs", globs=("cmd/api/**", "go.mod")
    )


@pytest.mark.parametrize(
    ("value", "field", "says"),
    [
        ("golang", "services.api.build.inputs", "is not an input rule"),
        ({"go": []}, "services.api.build.inputs.go", "non-empty list"),
        (["../elsewhere/**"], "services.api.build.inputs[0]", "outside the build context"),
        ([3], "services.api.build.inputs[0]", "non-empty string"),
    ],
)
def test_a_bad_rule_names_the_field_and_the_fix(tmp_path, value, field, says):
    with pytest.raises(StackError) as caught:
        parse(value, tmp_path)
    text = str(caught.value)
    assert field in text and says in text and "stack.yaml" in text, text


def write(root: Path, files: dict) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_globs_take_the_files_they_match_after_the_ignore_file(tmp_path):
    context = write(
        tmp_path,
        {
            "Containerfile": "FROM scratch\nCOPY . .\n",
            "cmd/api/main.go": "package main\n",
            "cmd/api/secret.pem": "x",
            "cmd/worker/main.go": "package main\n",
            "go.mod": "module m\n",
            ".dockerignore": "**/*.pem\n",
        },
    )
    found = inputsets.resolve(
        inputsets.Inputs("globs", globs=("cmd/api", "go.*")), context / "Containerfile", context, {}, None
    )
    assert found == inputsets.InputSet("globs", ("cmd/api/main.go", "go.mod"))


# A Kubernaut-shaped module: two main packages under cmd/, a package both import, one each imports
# alone, an embedded file, a file only another platform or build tag compiles, and a README.
MODULE = {
    "go.mod": "module example.com/shaped\n\ngo 1.21\n",
    "README.md": "# shaped\n",
    "cmd/aianalysis/main.go": 'package main\n\nimport (\n\t"example.com/shaped/pkg/aianalysis"\n'
    '\t"example.com/shaped/pkg/shared"\n)\n\nfunc main() { println(aianalysis.Prompt(), shared.Name) }\n',
    "cmd/datastorage/main.go": 'package main\n\nimport (\n\t"example.com/shaped/pkg/datastorage"\n'
    '\t"example.com/shaped/pkg/shared"\n)\n\nfunc main() { println(datastorage.Tables, shared.Name) }\n',
    "pkg/shared/shared.go": 'package shared\n\nconst Name = "shared"\n',
    "pkg/aianalysis/prompt.go": 'package aianalysis\n\nimport _ "embed"\n\n//go:embed prompts/system.txt\n'
    "var prompt string\n\nfunc Prompt() string { return prompt }\n",
    "pkg/aianalysis/prompts/system.txt": "You analyse.\n",
    "pkg/aianalysis/windows_windows.go": "package aianalysis\n",
    "pkg/aianalysis/extra.go": "//go:build extra\n\npackage aianalysis\n",
    "pkg/datastorage/tables.go": "package datastorage\n\nconst Tables = 3\n",
    "config/aianalysis.yaml": "level: info\n",
    "docker/aianalysis.Dockerfile": "FROM go AS build\nWORKDIR /src\nCOPY . .\n"
    "COPY config/aianalysis.yaml /etc/\nRUN CGO_ENABLED=0 GOOS=linux go build -o /out/app ./cmd/aianalysis\n",
    "docker/datastorage.Dockerfile": "FROM go AS build\nWORKDIR /src\nCOPY . .\n"
    "RUN CGO_ENABLED=0 GOOS=linux go build -o /out/app ./cmd/datastorage\n",
}


@pytest.fixture
def go_tool():
    """The host's Go: the test environment needs it, so CI has it."""
    if shutil.which("go") is None:
        if IN_CI:
            pytest.fail("needs go on PATH (CI=true: scripts/test.sh requires it)")
        pytest.skip("needs go on PATH")
    return shutil.which("go")


def go_set(context, service, args=None):
    return inputsets.resolve(
        inputsets.Inputs("go"), context / "docker" / f"{service}.Dockerfile", context, args or {}, Runner()
    )


def test_go_inputs_are_the_import_closure_its_embeds_and_what_is_copied_by_name(go_tool, tmp_path):
    context = write(tmp_path, MODULE)
    assert go_set(context, "aianalysis") == inputsets.InputSet(
        "go",
        (
            "cmd/aianalysis/main.go",
            "config/aianalysis.yaml",
            "docker/aianalysis.Dockerfile",
            "go.mod",
            "pkg/aianalysis/prompt.go",
            "pkg/aianalysis/prompts/system.txt",
            "pkg/shared/shared.go",
        ),
    )
    assert go_set(context, "datastorage").files == (
        "cmd/datastorage/main.go",
        "docker/datastorage.Dockerfile",
        "go.mod",
        "pkg/datastorage/tables.go",
        "pkg/shared/shared.go",
    )
    # A build tag in the Containerfile brings its files in.
    dockerfile = context / "docker" / "aianalysis.Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("go build", "go build -tags extra"))
    assert "pkg/aianalysis/extra.go" in go_set(context, "aianalysis").files


def test_the_digest_changes_only_with_the_images_own_inputs(go_tool, tmp_path):
    context = write(tmp_path, MODULE)

    def digests():
        found = {}
        for service in ("aianalysis", "datastorage"):
            containerfile = context / "docker" / f"{service}.Dockerfile"
            found[service] = cache.build_digest(containerfile, context, {}, inputs=go_set(context, service))
        return found

    def edit(name, text):
        (context / name).write_text((context / name).read_text() + text)
        after = digests()
        changed = sorted(s for s in after if after[s] != before[s])
        before.update(after)
        return changed

    before = digests()
    assert edit("README.md", "more\n") == []
    assert edit("pkg/datastorage/tables.go", "// edit\n") == ["datastorage"]
    assert edit("pkg/aianalysis/prompts/system.txt", "Be brief.\n") == ["aianalysis"]
    assert edit("pkg/shared/shared.go", "// edit\n") == ["aianalysis", "datastorage"]
    assert edit("go.mod", "// edit\n") == ["aianalysis", "datastorage"]
    assert edit("pkg/aianalysis/windows_windows.go", "// another platform's file\n") == []


def test_without_go_or_when_go_list_fails_the_whole_context_counts_and_says_why(
    go_tool, tmp_path, monkeypatch
):
    context = write(tmp_path / "src", MODULE)
    everything = tuple(cache.context_files(context))
    with monkeypatch.context() as patch:
        patch.setenv("PATH", str(tmp_path / "no-tools"))
        found = go_set(context, "aianalysis")
    assert found.rule == "context" and found.files == everything
    assert "fell back to the whole context" in found.note and "go is not on PATH" in found.note
    # A real failure: an import no module provides.
    main = context / "cmd" / "aianalysis" / "main.go"
    main.write_text(main.read_text().replace('"example.com/shaped/pkg/shared"', '"example.com/nowhere/pkg"'))
    broken = go_set(context, "aianalysis")
    assert broken.rule == "context" and broken.files == everything
    assert "example.com/nowhere/pkg" in broken.note, broken.note


def test_a_containerfile_whose_builds_cannot_be_read_falls_back(go_tool, tmp_path):
    context = write(tmp_path, MODULE)
    (context / "docker" / "aianalysis.Dockerfile").write_text("FROM go\nCOPY . .\nRUN make\n")
    found = go_set(context, "aianalysis")
    assert found.rule == "context" and "no `go build`" in found.note and "inputs: {go:" in found.note


def test_a_go_input_set_is_kept_until_a_file_or_the_containerfile_changes(go_tool, tmp_path, monkeypatch):
    context = write(tmp_path / "src", MODULE)
    memory = tmp_path / "home" / "inputs"
    dockerfile = context / "docker" / "aianalysis.Dockerfile"
    listed = []
    real = inputsets.go_list_files
    monkeypatch.setattr(inputsets, "go_list_files", lambda *a, **k: listed.append(a[2]) or real(*a, **k))

    def resolve():
        return inputsets.resolve(inputsets.Inputs("go"), dockerfile, context, {}, Runner(), (), memory)

    first = resolve()
    assert first.rule == "go" and len(listed) == 1 and len(list(memory.iterdir())) == 1
    assert resolve() == first and len(listed) == 1  # nothing changed: no `go list`
    (context / "README.md").write_text("# edited\n")  # any file of the context: listed again
    assert resolve() == first and len(listed) == 2
    dockerfile.write_text(dockerfile.read_text().replace("go build", "go build -tags extra"))
    again = resolve()
    assert "pkg/aianalysis/extra.go" in again.files and len(listed) == 3
    assert len(list(memory.iterdir())) == 1  # one kept set per build
