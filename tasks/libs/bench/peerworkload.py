"""bench.peers' workload: a generated stack of N services written twice, as a kindling stack and as
the skaffold.yaml a Skaffold user writes for it (local build with the same concurrency, kubectl
deploy, the status check on, inputDigest tags)."""

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .. import samples

BUILD_SECONDS = 2  # each service's RUN step, standing in for a compiler
CONCURRENCY = 4  # builds at once, for both tools: kindling's default
SKAFFOLD_SCHEMA = "skaffold/v4beta13"  # the newest that Skaffold v2.16 reads


@dataclass
class Workload:
    folder: Path
    services: list
    stack: Path  # kindling's stack file
    skaffold: Path  # skaffold.yaml
    namespace: str
    cluster: str
    skaffold_repository: str  # where Skaffold's images are named: localhost/<project>-skaffold
    notes: list = field(default_factory=list)  # blocks that waited for idle CPUs

    def rewrite(self, services, stamp: str) -> None:
        """Give services a new unique file: new images for both tools (both contexts read it)."""
        for service in services:
            (self.folder / "src" / service / "version.txt").write_text(f"{stamp}\n")


def service_names(count: int) -> list:
    return [f"svc{i:03d}" for i in range(1, count + 1)]


def skaffold_config(name: str, services: list, repository: str, base_image: str) -> dict:
    """The skaffold.yaml for the generated stack: one artifact per service, built by the local
    Docker client (podman's API here) CONCURRENCY at a time, deployed with kubectl, status checked."""
    return {
        "apiVersion": SKAFFOLD_SCHEMA,
        "kind": "Config",
        "metadata": {"name": name},
        "build": {
            "local": {"push": False, "concurrency": CONCURRENCY, "useBuildkit": False},
            "tagPolicy": {"inputDigest": {}},
            "artifacts": [
                {
                    "image": f"{repository}/{service}",
                    "context": f"src/{service}",
                    "docker": {"dockerfile": "Containerfile", "buildArgs": {"BASE_IMAGE": base_image}},
                }
                for service in services
            ],
        },
        "manifests": {"rawYaml": [f"skaffold-manifests/{service}.yaml" for service in services]},
        "deploy": {"kubectl": {}, "statusCheck": True},
    }


def write_workload(folder: Path, count: int, base_image: str) -> Workload:
    project = f"peers{uuid.uuid4().hex[:6]}"
    services = service_names(count)
    namespace = "peers"
    stack = samples.write_stack(
        folder,
        {service: {"sleep": BUILD_SECONDS, "timeout": 300} for service in services},
        name=f"peers{count}",
        project=project,
        base_image=base_image,
        namespace=namespace,
    )
    repository = f"localhost/{project}-skaffold"
    (folder / "skaffold-manifests").mkdir(exist_ok=True)
    for service in services:
        kindling_path = folder / "manifests" / f"{service}.yaml"
        docs = list(yaml.safe_load_all(kindling_path.read_text()))
        for doc in docs:
            if doc["kind"] == "Deployment":
                # Emptying the namespace between cold runs should not wait out 30 s of SIGTERM that
                # busybox httpd, as PID 1, ignores.
                doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
        kindling_path.write_text(yaml.safe_dump_all(docs))
        for doc in docs:
            if doc["kind"] == "Deployment":
                doc["spec"]["template"]["spec"]["containers"][0]["image"] = f"{repository}/{service}"
        (folder / "skaffold-manifests" / f"{service}.yaml").write_text(yaml.safe_dump_all(docs))
    skaffold = folder / "skaffold.yaml"
    skaffold.write_text(
        yaml.safe_dump(skaffold_config(f"peers{count}", services, repository, base_image), sort_keys=False)
    )
    cluster = yaml.safe_load(stack.read_text())["cluster"]["name"]
    return Workload(folder, services, stack, skaffold, namespace, cluster, repository)
