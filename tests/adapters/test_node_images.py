"""What a node holds: repoTags and repoDigests of `crictl images -o json`, through a scripted runner."""

import json

import pytest

from tasks.libs import imagerefs
from tasks.libs.adapters.engine import Podman
from tasks.libs.adapters.kind import KindCluster
from tasks.libs.errors import KindlingError
from tasks.libs.procs.fakerunner import FakeRunner
from tasks.libs.procs.runner import Result

D = "sha256:" + "d" * 64
E = "sha256:" + "e" * 64


def crictl(*entries):
    """`crictl images -o json` as crictl prints it (k8s.io/cri-api Image: repoTags, repoDigests)."""
    return Result(
        json.dumps(
            {
                "images": [
                    {
                        "id": f"sha256:{i:064x}",
                        "repoTags": tags,
                        "repoDigests": digests,
                        "size": "1000",
                        "pinned": False,
                    }
                    for i, (tags, digests) in enumerate(entries)
                ]
            }
        ),
        0,
    )


def cluster_holding(tmp_path, per_node: dict):
    """A cluster whose nodes answer crictl with per_node[node]; returns (cluster, engine, runner)."""
    answers = [(lambda a: a[:3] == ["kind", "get", "nodes"], Result("\n".join(per_node) + "\n", 0))]
    for node, entries in per_node.items():
        answers.append((lambda a, n=node: a[:3] == ["podman", "exec", n], crictl(*entries)))
    runner = FakeRunner(answers)
    return KindCluster("c1", tmp_path / "kubeconfig", runner), Podman(runner), runner


def test_node_name_of_tags_and_digests():
    assert imagerefs.node_name("postgres:16") == "docker.io/library/postgres:16"
    assert imagerefs.node_name("postgres") == "docker.io/library/postgres:latest"
    # Pinned by digest: containerd drops the tag (reference/docker.ParseDockerRef);
    # repoDigests has repo@digest.
    assert imagerefs.node_name(f"postgres:16@{D}") == f"docker.io/library/postgres@{D}"
    assert imagerefs.node_name(f"quay.io/org/app@{D}") == f"quay.io/org/app@{D}"
    assert imagerefs.node_name(f"docker.io/library/postgres@{D}") == f"docker.io/library/postgres@{D}"


@pytest.mark.parametrize(
    "ref", [f"postgres:16-alpine@{D}", f"postgres@{D}", f"docker.io/library/postgres@{D}"]
)
def test_a_reference_pinned_by_digest_matches_the_nodes_repo_digests(tmp_path, ref):
    held = ([], [f"docker.io/library/postgres@{D}"])  # a digest-only image: no repoTags at all
    cluster, engine, runner = cluster_holding(tmp_path, {"c1-control-plane": [held], "c1-worker": [held]})
    assert cluster.has_image(engine, ref)
    cluster.verify_loaded(engine, ref)  # does not raise
    execs = [argv for argv in runner.commands() if argv[:2] == ["podman", "exec"]]
    assert execs[0] == ["podman", "exec", "c1-control-plane", "crictl", "images", "-o", "json"]


def test_a_pinned_reference_is_not_matched_by_the_tag_or_another_digest(tmp_path):
    # The node has postgres:16-alpine, but of another build (digest E): kubelet resolves the pin by D only.
    held = (["docker.io/library/postgres:16-alpine"], [f"docker.io/library/postgres@{E}"])
    cluster, engine, _ = cluster_holding(tmp_path, {"c1-control-plane": [held]})
    ref = f"postgres:16-alpine@{D}"
    assert not cluster.has_image(engine, ref)
    with pytest.raises(
        KindlingError, match=rf"do not hold docker.io/library/postgres@{D}; it is pinned by digest"
    ):
        cluster.verify_loaded(engine, ref)
    assert cluster.has_image(engine, "postgres:16-alpine")  # the tag itself is still read from repoTags
    assert cluster.has_image(engine, f"postgres@{E}")


def test_every_node_must_hold_the_pinned_image(tmp_path):
    cluster, engine, _ = cluster_holding(
        tmp_path,
        {
            "c1-control-plane": [([], [f"quay.io/org/app@{D}"])],
            "c1-worker": [(["quay.io/org/app:1"], [f"quay.io/org/app@{E}"]), (None, None)],
        },
    )
    assert not cluster.has_image(engine, f"quay.io/org/app@{D}")
    with pytest.raises(KindlingError, match=r"node\(s\) c1-worker do not hold"):
        cluster.verify_loaded(engine, f"quay.io/org/app:1@{D}")
