"""The thin adapters: argument lists, retries, verification, readiness, without a cluster."""

import pytest

from tasks.libs.adapters.engine import Podman
from tasks.libs.adapters.kind import KindCluster
from tasks.libs.adapters.kubectl import Kubectl
from tasks.libs.errors import CommandFailed, KindlingError
from tasks.libs.procs.fakerunner import FakeRunner
from tasks.libs.procs.masking import mask_argv
from tasks.libs.procs.runner import Result


def test_engine_build_argument_list():
    runner = FakeRunner()
    Podman(runner).build(
        "localhost/p/api:t",
        "/src/Containerfile",
        "/src",
        args={"A": "1", "B": "x y"},
        target="runtime",
        labels={"l": "v"},
        no_cache=True,
    )
    argv = runner.calls[0].argv
    assert argv == [
        "podman",
        "build",
        "-t",
        "localhost/p/api:t",
        "-f",
        "/src/Containerfile",
        "--build-arg",
        "A=1",
        "--build-arg",
        "B=x y",
        "--target",
        "runtime",
        "--label",
        "l=v",
        "--no-cache",
        "/src",
    ]


def test_kind_calls_carry_the_podman_provider(tmp_path):
    runner = FakeRunner([(lambda a: a[1:3] == ["get", "clusters"], Result("other\n", 0))])
    cluster = KindCluster("c1", tmp_path / "kubeconfig", runner, engine="podman")
    assert cluster.ensure() == "created"
    assert [c.argv[1:3] for c in runner.calls] == [["get", "clusters"], ["create", "cluster"]]
    assert all(c.env == {"KIND_EXPERIMENTAL_PROVIDER": "podman"} for c in runner.calls)
    create = runner.calls[1].argv
    assert create[create.index("--kubeconfig") + 1] == str(tmp_path / "kubeconfig")
    # docker too: a user's KIND_EXPERIMENTAL_PROVIDER=podman must not redirect a docker stack.
    assert KindCluster("c", tmp_path / "k", FakeRunner(), engine="docker").env == {
        "KIND_EXPERIMENTAL_PROVIDER": "docker"
    }


def test_create_passes_the_node_image(tmp_path):
    runner = FakeRunner([(lambda a: a[1:3] == ["get", "clusters"], Result("", 0))])
    KindCluster("c1", tmp_path / "k", runner, node_image="localhost/node:v1").ensure()
    create = runner.calls[-1].argv
    assert create[create.index("--image") + 1] == "localhost/node:v1"
    runner = FakeRunner([(lambda a: a[1:3] == ["get", "clusters"], Result("", 0))])
    KindCluster("c1", tmp_path / "k", runner).ensure()
    assert "--image" not in runner.calls[-1].argv  # kind's own default


def listed_cluster(states, readyz_exit=0):
    """A runner for a cluster kind lists, with node containers in these states."""
    return FakeRunner(
        [
            (lambda a: a[1:3] == ["get", "clusters"], Result("c1\n", 0)),
            (lambda a: a[1:3] == ["ps", "-a"], Result("".join(f"{n}\t{s}\n" for n, s in states.items()), 0)),
            (
                lambda a: a[0] == "kubectl" and "/readyz" in a,
                Result("" if readyz_exit else "ok", readyz_exit, "connection refused"),
            ),
        ]
    )


def ensure_listed(runner, kubeconfig, **options):
    """KindCluster.ensure as the cluster phase calls it: the API check through kubectl."""
    cluster = KindCluster("c1", kubeconfig, runner)
    return cluster.ensure(api_problem=Kubectl(kubeconfig, runner).api_problem, **options)


def test_a_listed_cluster_is_used_only_when_healthy(tmp_path):
    """kind lists half-created and stopped clusters too (podman provider ListClusters)."""
    kubeconfig = tmp_path / "k"
    export = ["kind", "export", "kubeconfig", "--name", "c1", "--kubeconfig", str(kubeconfig)]
    healthy = listed_cluster({"c1-control-plane": "running"})
    assert ensure_listed(healthy, kubeconfig) == "exists"
    argvs = [a for a in healthy.commands()]
    # No kubeconfig of ours yet: exported, then the API server asked through it.
    assert export in argvs and argvs.index(export) < next(i for i, a in enumerate(argvs) if "/readyz" in a)
    assert not [a for a in argvs if a[1:3] == ["create", "cluster"]]

    kubeconfig.write_text("ours")
    answering = listed_cluster({"c1-control-plane": "running"})
    assert ensure_listed(answering, kubeconfig) == "exists"
    # Ours answers: nothing written, two read-only questions after `kind get clusters`.
    assert [a for a in answering.commands()][1:] == [
        a for a in answering.commands() if a[1:3] == ["ps", "-a"] or "/readyz" in a
    ]

    stopped = listed_cluster({"c1-control-plane": "exited"})
    with pytest.raises(
        KindlingError,
        match=r"not usable: node container\(s\) not running: "
        r"c1-control-plane \(exited\).*--recreate",
    ):
        ensure_listed(stopped, kubeconfig)
    assert not [a for a in stopped.commands() if a[1:3] in (["create", "cluster"], ["delete", "cluster"])]

    dead_api = listed_cluster({"c1-control-plane": "running"}, readyz_exit=1)
    assert ensure_listed(dead_api, kubeconfig, recreate=True) == "recreated"
    # Ours did not answer: re-exported (a cluster recreated elsewhere has a new port) before giving up.
    assert export in [a for a in dead_api.commands()]
    verbs = [a[1:3] for a in dead_api.commands() if a[0] == "kind"]
    assert verbs.index(["delete", "cluster"]) < verbs.index(["create", "cluster"])
    delete = next(a for a in dead_api.commands() if a[1:3] == ["delete", "cluster"])
    assert "--kubeconfig" in delete  # never the user's kubeconfig


def test_nodes_skip_the_external_load_balancer(tmp_path):
    runner = FakeRunner(
        [
            (
                lambda a: a[1:3] == ["get", "nodes"],
                Result("c1-external-load-balancer\nc1-control-plane\nc1-control-plane2\nc1-worker\n", 0),
            )
        ]
    )
    assert KindCluster("c1", tmp_path / "k", runner).nodes() == [
        "c1-control-plane",
        "c1-control-plane2",
        "c1-worker",
    ]


def test_a_log_driver_failure_is_reported_with_its_fix_not_retried(tmp_path):
    no_log = CommandFailed(
        "kind create",
        1,
        "ERROR: failed to create cluster: could not find a log line "
        'that matches "Reached target .*Multi-User System.*"',
    )
    runner = FakeRunner([(lambda a: a[1:3] == ["create", "cluster"], [no_log])])
    with pytest.raises(KindlingError, match='log_driver = "k8s-file"'):
        KindCluster("c1", tmp_path / "k", runner, retry_delay=0).create()
    assert len([a for a in runner.commands() if a[1:3] == ["create", "cluster"]]) == 1
    delete = next(a for a in runner.commands() if a[1:3] == ["delete", "cluster"])  # no half cluster left
    assert delete[delete.index("--kubeconfig") + 1] == str(tmp_path / "k")


def test_create_retries_transient_failures_a_bounded_number_of_times(tmp_path):
    transient = CommandFailed("kind create", 1, "failed with error: podman: server probably quit")
    runner = FakeRunner([(lambda a: a[1:3] == ["create", "cluster"], [transient, transient, Result("", 0)])])
    KindCluster("c1", tmp_path / "k", runner, retry_delay=0).create()
    creates = [a for a in runner.commands() if a[1:3] == ["create", "cluster"]]
    deletes = [a for a in runner.commands() if a[1:3] == ["delete", "cluster"]]
    assert len(creates) == 3 and len(deletes) == 2

    runner = FakeRunner([(lambda a: a[1:3] == ["create", "cluster"], [transient])])
    with pytest.raises(CommandFailed):
        KindCluster("c1", tmp_path / "k", runner, retry_delay=0, create_attempts=2).create()
    assert len([a for a in runner.commands() if a[1:3] == ["create", "cluster"]]) == 2


@pytest.mark.parametrize(
    "tail", ["invalid config: unknown field", "command podman run failed with error: exit status 125"]
)
def test_create_does_not_retry_real_errors(tmp_path, tail):
    """A bare exit 125 is podman refusing the command (a bad port, a name in use): a retry repeats it."""
    fatal = CommandFailed("kind create", 1, tail)
    runner = FakeRunner([(lambda a: a[1:3] == ["create", "cluster"], [fatal])])
    with pytest.raises(CommandFailed):
        KindCluster("c1", tmp_path / "k", runner, retry_delay=0).create()
    assert len(runner.calls) == 1


class NodeEngine:
    def __init__(self, tags):
        self.tags = tags

    def exec_json(self, container, argv):
        assert argv == ["crictl", "images", "-o", "json"]
        return {"images": [{"repoTags": self.tags}]}


def test_verify_loaded_catches_an_image_that_never_arrived(tmp_path):
    runner = FakeRunner([(lambda a: a[1:3] == ["get", "nodes"], Result("c1-control-plane\n", 0))])
    cluster = KindCluster("c1", tmp_path / "k", runner)
    cluster.verify_loaded(NodeEngine(["localhost/p/api:t"]), "localhost/p/api:t")
    with pytest.raises(KindlingError, match="do not hold localhost/p/api:t"):
        # The node holds the same name without localhost/: containerd reads that as docker.io.
        cluster.verify_loaded(NodeEngine(["docker.io/p/api:t"]), "localhost/p/api:t")
    assert cluster.has_image(NodeEngine(["docker.io/library/nginx:latest"]), "nginx")


def test_mask_argv_hides_secret_like_values():
    argv = [
        "podman",
        "build",
        "--build-arg",
        "DB_PASSWORD=hunter2",
        "--build-arg",
        "GITHUB_TOKEN=ghp_x",
        "--build-arg",
        "GOFLAGS=-cover",
        "--label",
        "x=y",
    ]
    assert mask_argv(argv) == [
        "podman",
        "build",
        "--build-arg",
        "DB_PASSWORD=***",
        "--build-arg",
        "GITHUB_TOKEN=***",
        "--build-arg",
        "GOFLAGS=-cover",
        "--label",
        "x=y",
    ]
    assert mask_argv(["echo", "uses hunter22 here"], secrets={"hunter22"}) == ["echo", "uses *** here"]


def test_local_registry_is_created_once_and_wired_into_each_node():
    from tasks.libs.adapters.localregistry import LocalRegistry

    runner = FakeRunner(
        [
            (lambda a: a[1:4] == ["inspect", "-f", "{{.State.Running}}"], Result("", 125)),
            (lambda a: "{{json .NetworkSettings.Networks}}" in a, Result('{"podman":{}}', 0)),
        ]
    )
    registry = LocalRegistry(runner, "podman", port=5001)
    assert registry.ensure() == "created"
    registry.connect(["c-control-plane", "c-worker"])
    argvs = [a for a in runner.commands()]
    assert argvs[1] == [
        "podman",
        "run",
        "-d",
        "--restart=always",
        "-p",
        "127.0.0.1:5001:5000",
        "--network",
        "bridge",
        "--name",
        "kind-registry",
        "docker.io/library/registry:3",
    ]
    copies = [a for a in argvs if a[:3] == ["podman", "exec", "-i"]]
    assert [a[3] for a in copies] == ["c-control-plane", "c-worker"]
    assert copies[0][-1] == "/etc/containerd/certs.d/localhost:5001/hosts.toml"
    assert argvs[-1] == ["podman", "network", "connect", "kind", "kind-registry"]

    running = FakeRunner(
        [
            (lambda a: a[1:4] == ["inspect", "-f", "{{.State.Running}}"], Result("true\n", 0)),
            (lambda a: "{{json .NetworkSettings.Networks}}" in a, Result('{"kind":{}}', 0)),
        ]
    )
    registry = LocalRegistry(running, "podman")
    assert registry.ensure() == "running"
    registry.connect(["n"])
    assert not [a for a in running.commands() if a[1:3] == ["network", "connect"]]


def test_kind_is_asked_for_its_clusters_once_until_a_create_or_delete(tmp_path):
    """A run asks whether the cluster exists before its graph and again in its cluster step."""
    runner = FakeRunner([(lambda a: a[1:3] == ["get", "clusters"], [Result("", 0), Result("c1\n", 0)])])
    cluster = KindCluster("c1", tmp_path / "k", runner)
    assert not cluster.exists() and not cluster.exists()
    assert len(runner.commands("kind", "get", "clusters")) == 1
    assert cluster.ensure() == "created"
    assert cluster.exists()  # created by this adapter: listed without asking
    assert len(runner.commands("kind", "get", "clusters")) == 1
    cluster.delete()
    assert cluster.exists()  # asked again after the delete; this fake still lists it
    assert len(runner.commands("kind", "get", "clusters")) == 2


def test_a_failed_create_asks_kind_again(tmp_path):
    """A create that failed halfway may leave nodes kind lists, which a teardown must find."""
    runner = FakeRunner(
        [
            (lambda a: a[1:3] == ["get", "clusters"], [Result("", 0), Result("c1\n", 0)]),
            (lambda a: a[1:3] == ["create", "cluster"], Result("", 1, "boom")),
        ]
    )
    cluster = KindCluster("c1", tmp_path / "k", runner, create_attempts=1)
    with pytest.raises(CommandFailed):
        cluster.ensure()
    assert cluster.exists() and len(runner.commands("kind", "get", "clusters")) == 2
