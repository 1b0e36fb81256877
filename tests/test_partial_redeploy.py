"""`invoke deploy.aianalysis` on a Kubernaut-shaped source, on the real test environment: a Go module
with four main packages under cmd/, a shared package, one package each service imports alone, an
embedded prompt and a README; every Dockerfile copies the whole checkout (`COPY . .`), as
Kubernaut's do, and each build says `inputs: go`. An edit rebuilds and rolls out exactly the
services whose compiled code it touches (tasks/libs/build/inputsets.py).

The four services deploy once per module to a namespace of their own on the shared cluster; each
test makes one edit, runs `deploy.aianalysis` (its dependencies first, through pre=) and reads
what every run of that command did from its run.json files."""

import json
from pathlib import Path

import pytest
import yaml
from conftest import StackMaker, invoke

from tasks.libs import samples
from tasks.libs.adapters.engine import Podman
from tasks.libs.bench import gosample
from tasks.libs.procs.runner import Runner

SERVICES = ("aianalysis", "datastorage", "agent", "mockllm")
MODULE = "example.com/shaped"

MAIN = """\
package main

import (
	"os"
	"os/signal"
	"syscall"

	"{module}/pkg/{service}"
	"{module}/pkg/shared"
)

func main() {{
	println({service}.Name(), shared.Version)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	<-stop
}}
"""

# Exec form: the toolchain image has no shell. The Containerfile names its package, as Kubernaut's
# `go build -o aianalysis-controller ./cmd/aianalysis` does.
CONTAINERFILE = """\
ARG GO_IMAGE
ARG BASE_IMAGE
FROM ${{GO_IMAGE}} AS build
WORKDIR /src
COPY . .
RUN ["go", "build", "-o", "/out/app", "./cmd/{service}"]

FROM ${{BASE_IMAGE}}
COPY --from=build /out/app /app
CMD ["/app"]
"""


def write_source(folder: Path) -> None:
    files = {
        "go.mod": f"module {MODULE}\n\ngo 1.21\n",
        "README.md": "# A Kubernaut-shaped module\n",
        "pkg/shared/version.go": 'package shared\n\nconst Version = "1"\n',
    }
    for service in SERVICES:
        files[f"cmd/{service}/main.go"] = MAIN.format(module=MODULE, service=service)
        files[f"pkg/{service}/{service}.go"] = (
            f'package {service}\n\nfunc Name() string {{ return "{service}" }}\n'
        )
        files[f"docker/{service}.Dockerfile"] = CONTAINERFILE.format(service=service)
    files["pkg/aianalysis/aianalysis.go"] = (
        'package aianalysis\n\nimport _ "embed"\n\n//go:embed prompts/system.txt\nvar prompt string\n\n'
        'func Name() string { return "aianalysis " + prompt }\n'
    )
    files["pkg/aianalysis/prompts/system.txt"] = "You investigate incidents.\n"
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def write_stack(folder: Path, project: str, cluster: str, go_image: str, base_image: str) -> Path:
    services = {}
    (folder / "manifests").mkdir(exist_ok=True)
    for service in SERVICES:
        docs = samples.manifests(service, {})
        docs[0]["spec"]["template"]["spec"]["containers"][0]["command"] = ["/app"]
        (folder / "manifests" / f"{service}.yaml").write_text(yaml.safe_dump_all(docs))
        services[service] = {
            "build": {
                "containerfile": f"docker/{service}.Dockerfile",
                "context": ".",
                "args": {"GO_IMAGE": go_image, "BASE_IMAGE": base_image},
                "caches": ["go"],
                "inputs": "go",
            },
            "manifests": [f"manifests/{service}.yaml"],
            "ready": {"timeout": 90},
        }
    services["aianalysis"]["depends_on"] = ["datastorage", "agent", "mockllm"]
    stack = {"name": "shaped", "project": project, "namespace": project, "cluster": {"name": cluster}}
    path = folder / "stack.yaml"
    path.write_text(yaml.safe_dump({**stack, "services": services}, sort_keys=False))
    return path


class Shaped:
    def __init__(self, folder: Path, home: Path, env: dict, testenv, cluster):
        self.folder, self.home, self.env, self.testenv = folder, home, env, testenv
        self.kubeconfig = home / "clusters" / cluster.name / "kubeconfig"

    def edit(self, name: str, text: str) -> None:
        path = self.folder / name
        path.write_text(path.read_text() + text)

    def deploy(self):
        """deploy.aianalysis; (its output, {step id: [outcomes]} over every run it made)."""
        before = set(self.home.glob("runs/*/run.json"))
        result = invoke(["deploy.aianalysis"], self.env)
        assert result.returncode == 0, result.stdout + result.stderr
        outcomes = {}
        for path in set(self.home.glob("runs/*/run.json")) - before:
            for step in json.loads(path.read_text())["steps"]:
                outcomes.setdefault(step["id"], []).append(step["outcome"])
        return result.stdout, outcomes

    def images(self) -> dict:
        """Each Deployment's image on the cluster."""
        found = self.testenv.kubectl_json(self.kubeconfig, "get", "deployments", "-n", self.namespace)
        return {
            d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
            for d in found["items"]
        }

    @property
    def namespace(self) -> str:
        return yaml.safe_load((self.folder / "stack.yaml").read_text())["namespace"]


def built(outcomes: dict) -> list:
    return sorted(
        step.split(":", 1)[1]
        for step, seen in outcomes.items()
        if step.startswith("image:") and "built" in seen
    )


@pytest.fixture(scope="module")
def shaped(testenv, shared_cluster, base_image, tmp_path_factory):
    folder = tmp_path_factory.mktemp("shaped")
    home = folder.parent / f"{folder.name}-home"
    maker = StackMaker(folder, base_image)  # a project of its own, its images removed after
    go_image = gosample.ensure_go_image(Podman(Runner()), base_image)
    write_source(folder)
    path = write_stack(folder, maker.project, shared_cluster.name, go_image, base_image)
    env = {
        "E2E_STACK": str(path),
        "KINDLING_HOME": str(home),
        "KINDLING_LOCK_DIR": str(folder.parent / f"{folder.name}-locks"),
        "KINDLING_MIN_FREE_DISK": "50MiB",
    }
    world = Shaped(folder, home, env, testenv, shared_cluster)
    try:
        first = invoke(["e2e.setup"], env, timeout=900)
        assert first.returncode == 0, first.stdout + first.stderr
        yield world
    finally:
        # The shared cluster stays (no teardown): its namespace goes, and the images and build stages.
        testenv.kubectl(
            shared_cluster.kubeconfig, "delete", "namespace", maker.project, "--wait=false", check=False
        )
        digests = {
            image.get("digest")
            for images in home.glob("runs/*/images.json")
            for image in json.loads(images.read_text()).values()
        }
        maker.cleanup()
        gosample.remove_stage_images(Podman(Runner()), digests - {None})


def test_an_edit_only_aianalysis_compiles_rebuilds_and_rolls_out_aianalysis_alone(shaped):
    before = shaped.images()
    shaped.edit("pkg/aianalysis/aianalysis.go", "\n// a change in the controller\n")
    _, outcomes = shaped.deploy()
    assert built(outcomes) == ["aianalysis"], outcomes
    assert outcomes["deploy:aianalysis"] == ["ready"], outcomes
    assert all(outcomes[f"deploy:{s}"] == ["up to date"] for s in SERVICES if s != "aianalysis"), outcomes
    after = shaped.images()
    assert [s for s in SERVICES if after[s] != before[s]] == ["aianalysis"], (before, after)


def test_an_edit_in_the_package_all_four_import_rebuilds_all_four(shaped):
    before = shaped.images()
    shaped.edit("pkg/shared/version.go", "\n// a shared change\n")
    _, outcomes = shaped.deploy()
    assert built(outcomes) == sorted(SERVICES), outcomes
    after = shaped.images()
    assert all(after[s] != before[s] for s in SERVICES), (before, after)


def test_an_edit_to_the_readme_rebuilds_nothing_and_says_so(shaped):
    before = shaped.images()
    shaped.edit("README.md", "More words.\n")
    stdout, outcomes = shaped.deploy()
    assert built(outcomes) == [], outcomes
    assert all(outcomes[f"deploy:{s}"] == ["up to date"] for s in SERVICES), outcomes
    assert "aianalysis: up to date" in stdout and "nothing changed" in stdout, stdout
    assert shaped.images() == before


def test_an_edit_to_an_embedded_file_rebuilds_the_image_that_embeds_it(shaped):
    before = shaped.images()
    shaped.edit("pkg/aianalysis/prompts/system.txt", "Be brief.\n")
    _, outcomes = shaped.deploy()
    assert built(outcomes) == ["aianalysis"], outcomes
    after = shaped.images()
    assert [s for s in SERVICES if after[s] != before[s]] == ["aianalysis"], (before, after)
