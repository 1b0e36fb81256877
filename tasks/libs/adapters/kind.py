"""A Kind cluster: idempotent ensure/create/load/delete, its own kubeconfig file.

kind must be told the provider on every call: on a host with both Docker and
Podman it silently picks Docker otherwise ("no nodes found"; kind docs,
"Using Podman": KIND_EXPERIMENTAL_PROVIDER=podman).
"""

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from .. import imagerefs
from ..errors import CommandFailed, KindlingError, PipeFailed
from ..procs.runner import Runner
from .engine import engine_class

# Podman-provider failures that go away on a retry: the podman service restarting
# ("server probably quit") and timing races while the control plane starts. A bare
# "exit status 125" is podman refusing the command: retrying repeats the refusal.
TRANSIENT_CREATE_ERRORS = re.compile(
    r"server probably quit|failed to init node|context deadline exceeded", re.I
)
# kind follows `podman logs -f NODE` until the node's entrypoint logs its start
# (pkg/cluster/internal/providers/podman/provision.go); a log driver podman cannot
# follow makes that wait fail every time. The fix is a setting, not a retry
# (kind's "Rootless" page: log_driver = "k8s-file").
LOG_LINE_ERROR = "could not find a log line"
LOG_DRIVER_FIX = (
    'podman could not follow the node\'s log: set `log_driver = "k8s-file"` under '
    "[containers] in containers.conf (/etc/containers/containers.conf, or "
    "~/.config/containers/containers.conf for rootless podman)"
)


# Streamed loads: `<engine> save REF | kind load image-archive /dev/stdin --nodes NODE` (the
# workaround of kind#2729), so no archive is written. kind stats the path, then opens it once per
# selected node, concurrently (sigs.k8s.io/kind@v0.32.0 pkg/cmd/kind/load/image-archive/
# image-archive.go: runE's os.Stat, loadImage's os.Open under errors.UntilErrorConcurrent): nodes
# sharing one pipe would split the stream between them, so each kind call gets one node and a
# save of its own. Loads into different nodes run side by side, at most NODE_LOAD_JOBS at once.
STDIN_ARCHIVE = "/dev/stdin"
NODE_LOAD_JOBS = 3

# kind labels every node container of a cluster (pkg/cluster/internal/providers/podman/constants.go).
CLUSTER_LABEL = "io.x-k8s.kind.cluster"
EXTERNAL_LOAD_BALANCER_SUFFIX = "-external-load-balancer"


class KindCluster:
    def __init__(
        self,
        name,
        kubeconfig,
        runner: Runner,
        engine: str = "podman",
        wait="60s",
        create_attempts=3,
        retry_delay=2.0,
        node_image="",
    ):
        self.name = name
        self.node_image = node_image
        self.kubeconfig = kubeconfig
        self.runner = runner
        self.engine = engine
        self.wait = wait
        self.create_attempts = create_attempts
        self.retry_delay = retry_delay
        self.stdin_path = STDIN_ARCHIVE  # the archive path kind is given for a stream on its stdin
        self._stream_refused = None  # why kind could not read a stream, once it said so
        # Whether `kind get clusters` listed it, asked once until this adapter creates or deletes it:
        # a run asks before its graph (to know whether it made the cluster) and in its cluster step.
        self._listed = None

    @property
    def env(self) -> dict:
        # Always explicit, docker too: a user's own KIND_EXPERIMENTAL_PROVIDER must not
        # send kind to the other engine (pkg/internal/runtime/runtime.go reads it).
        return {"KIND_EXPERIMENTAL_PROVIDER": self.engine}

    def _kind(self, *args, **options):
        return self.runner.run(["kind", *args], env=self.env, **options)

    def exists(self) -> bool:
        if self._listed is None or self.runner.dry_run:
            self._listed = self.name in self._kind("get", "clusters", mutating=False).stdout.split()
        return self._listed

    def create(self, config=None, log_path=None, timeout=None) -> None:
        """config: the kind config's path, or a function returning it (or None), called only here: what the
        config needs may cost questions to the host, which a cluster that exists never asks."""
        if callable(config):
            config = config()
        self._listed = None  # a failed create may leave a cluster kind lists
        argv = [
            "create",
            "cluster",
            "--name",
            self.name,
            "--kubeconfig",
            str(self.kubeconfig),
            "--wait",
            self.wait,
        ]
        if config:
            argv += ["--config", str(config)]
        if self.node_image:
            argv += ["--image", self.node_image]
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, self.create_attempts + 1):
            try:
                self._kind(*argv, log_path=log_path, timeout=timeout)
                break
            except CommandFailed as exc:
                # Nodes left by a creation that was killed halfway: `get clusters` did not list the
                # cluster, yet create finds its nodes. Removing them is what `kind delete` is for.
                leftover = "already exist for a cluster" in (exc.tail or "")
                if LOG_LINE_ERROR in (exc.tail or ""):
                    self.delete(log_path=log_path, check=False)
                    raise KindlingError(f"kind create cluster {self.name}: {LOG_DRIVER_FIX}") from None
                transient = TRANSIENT_CREATE_ERRORS.search(exc.tail or "") or leftover
                if not transient or attempt == self.create_attempts:
                    raise
                # A half-created cluster would make the retry fail with "already exist".
                self.delete(log_path=log_path, check=False)
                time.sleep(self.retry_delay * attempt)
        self._listed = True
        self._protect_kubeconfig()

    def ensure(self, config=None, log_path=None, timeout=None, recreate=False, api_problem=None) -> str:
        """Create the cluster unless a usable one exists; always (re)write our kubeconfig.

        kind lists every cluster whose labelled node containers exist, also half-created or
        stopped ones (pkg/cluster/internal/providers/podman/provider.go ListClusters), so a
        listed cluster is checked before it is used. A broken one is recreated when
        `recreate` is set; otherwise the error says so and what to do. api_problem() says why the
        API server cannot be used with our kubeconfig, or None (Kubectl.api_problem)."""
        if not self.exists():
            self.create(config, log_path, timeout)
            return "created"
        if self.runner.dry_run:
            return "exists"
        problem = self.problem(api_problem, log_path)
        if problem is None:
            return "exists"
        if not recreate:
            raise KindlingError(
                f"cluster {self.name} is listed by kind but not usable: {problem}. Delete it "
                "(`invoke cluster.delete`) and run again, or pass --recreate"
            )
        self.delete(log_path=log_path, check=False)
        self.create(config, log_path, timeout)
        return "recreated"

    def node_states(self) -> dict:
        """node container -> its state (running, exited, created, ...), as the engine reports it."""
        out = self.runner.run(
            [
                self.engine,
                "ps",
                "-a",
                "--filter",
                f"label={CLUSTER_LABEL}={self.name}",
                "--format",
                "{{.Names}}\t{{.State}}",
            ],
            mutating=False,
            timeout=60,
        ).stdout
        return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)

    def problem(self, api_problem=None, log_path=None) -> str | None:
        """Why the listed cluster cannot be used, or None: node containers running, and the API
        server answering through our kubeconfig. The kubeconfig is re-exported only when the API
        server does not answer through it (a cluster recreated elsewhere has a new API port), so a
        usable cluster costs two read-only commands."""
        states = self.node_states()
        if not states:
            return "it has no node containers"
        # docker prints "running"; podman 4 prints "Up 5 minutes ago" for the same column.
        stopped = sorted(
            f"{node} ({state})"
            for node, state in states.items()
            if state.lower() != "running" and not state.startswith("Up ")
        )
        if stopped:
            return (
                f"node container(s) not running: {', '.join(stopped)}; kind's nodes have no "
                "restart policy, so a host reboot or a killed create leaves them so"
            )
        if api_problem is None:
            return None
        if self.kubeconfig.exists() and api_problem() is None:
            return None
        try:
            self.export_kubeconfig(log_path)
        except CommandFailed as exc:
            return f"`kind export kubeconfig` failed: {exc.tail.strip()[-300:]}"
        return api_problem()

    def export_kubeconfig(self, log_path=None) -> None:
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        self._kind(
            "export",
            "kubeconfig",
            "--name",
            self.name,
            "--kubeconfig",
            str(self.kubeconfig),
            log_path=log_path,
            timeout=60,
        )
        self._protect_kubeconfig()

    def _protect_kubeconfig(self):
        if self.kubeconfig.exists():
            os.chmod(self.kubeconfig, 0o600)

    def delete(self, log_path=None, check=True) -> None:
        # Always our kubeconfig: without --kubeconfig kind locks and edits $KUBECONFIG or
        # ~/.kube/config (pkg/cluster/internal/kubeconfig), which kindling never touches.
        self._listed = None
        self._kind(
            "delete",
            "cluster",
            "--name",
            self.name,
            "--kubeconfig",
            str(self.kubeconfig),
            log_path=log_path,
            check=check,
        )

    def nodes(self) -> list:
        """The nodes that run containerd: kind also lists the external load balancer of a cluster
        with several control planes (an haproxy container with no crictl; kind's
        pkg/cluster/constants ExternalLoadBalancerNodeRoleValue), which holds no images."""
        names = self._kind("get", "nodes", "--name", self.name, mutating=False).stdout.split()
        return [n for n in names if not n.endswith(EXTERNAL_LOAD_BALANCER_SUFFIX)]

    def load_archive(self, tar_path, log_path=None, timeout=None, nodes=()) -> None:
        node_flags = ["--nodes", ",".join(nodes)] if nodes else []
        self._kind(
            "load",
            "image-archive",
            str(tar_path),
            "--name",
            self.name,
            *node_flags,
            log_path=log_path,
            timeout=timeout,
        )

    def stream_problem(self) -> str | None:
        """Why an archive cannot be streamed into kind here, or None.

        Detected, not configured: the host must have the path (no /dev/stdin on Windows or in a
        chroot without /dev/fd), and kind must be able to open it, which only trying shows (open(2)
        of /dev/stdin fails with ENXIO when stdin is a socket, and a kind other than v0.32 may read
        its argument differently). Kind's refusal is an error about that path before any byte is
        read, so falling back then is safe; any other failure is a real one and is reported."""
        if self._stream_refused:
            return self._stream_refused
        if not os.path.exists(self.stdin_path):
            return f"{self.stdin_path} does not exist on this host"
        return None

    def load_streamed(
        self, engine, ref, archive: Path, nodes=None, log_path=None, save_timeout=None, load_timeout=None
    ) -> str:
        """Put the image on the nodes (default: every node) and say how: "streamed" (the engine's
        save piped into `kind load`, nothing on disk), or "archive" where streaming is unavailable
        (stream_problem): saved to `archive`, loaded, and removed whatever happens. The step's
        log says which, and why."""
        nodes = list(nodes or []) or self.nodes()
        if not nodes and not self.runner.dry_run:
            raise KindlingError(
                f"cluster {self.name} has no nodes to load {ref} into; recreate it "
                "(`invoke cluster.delete`, then run again)"
            )
        nodes = nodes or [f"{self.name}-control-plane"]  # what kind will name it (dry run)
        problem = self.stream_problem()
        if problem is None:
            _note(
                log_path,
                f"streaming {engine.program} save into `kind load image-archive "
                f"{self.stdin_path}`, one kind call per node ({', '.join(nodes)}): "
                "no archive on disk",
            )
            try:
                self._stream_to_nodes(engine, ref, nodes, log_path, save_timeout, load_timeout)
                return "streamed"
            except PipeFailed as exc:
                problem = self._refusal(exc)
                if problem is None:
                    raise
                self._stream_refused = problem
        _note(log_path, f"loading through an archive file, as streaming is unavailable: {problem}")
        try:
            archive.unlink(missing_ok=True)  # `podman save -o` refuses to overwrite a stale archive
            engine.save(ref, archive, log_path=log_path, timeout=save_timeout)
            self.load_archive(archive, log_path=log_path, timeout=load_timeout, nodes=nodes)
        finally:
            archive.unlink(missing_ok=True)
        return "archive"

    def _stream_to_nodes(self, engine, ref, nodes, log_path, save_timeout, load_timeout) -> None:
        def load(node):
            self.runner.pipe(
                engine.save_argv(ref),
                ["kind", "load", "image-archive", self.stdin_path, "--name", self.name, "--nodes", node],
                right_env=self.env,
                log_path=log_path,
                timeout=load_timeout,
                left_timeout=save_timeout,
            )

        if len(nodes) == 1:
            load(nodes[0])
            return
        with ThreadPoolExecutor(max_workers=min(NODE_LOAD_JOBS, len(nodes))) as pool:
            futures = [pool.submit(load, node) for node in nodes]
            try:
                for future in as_completed(futures):
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()  # loads not started yet; running ones end on their own
                raise

    def _refusal(self, exc: PipeFailed) -> str | None:
        """kind's own words when it could not stat or open the stream's path (a Go *PathError),
        else None."""
        if exc.side != "right":
            return None
        match = re.search(rf"(?:stat|open) {re.escape(self.stdin_path)}: [^\n]*", exc.tail or "")
        return f"kind could not read {self.stdin_path} ({match.group(0)})" if match else None

    def node_images(self, engine) -> dict:
        """node name -> set of the names (imagerefs.node_name) the node's containerd holds.

        kind's docs ("Loading an Image Into Your Cluster") check a node with
        `docker exec <node> crictl images`; the JSON form lists each image's repoTags
        (`repository:tag`) and repoDigests (`repository@sha256:...`, what a reference
        pinned by digest resolves to).
        """
        result = {}
        for node in self.nodes():
            data = engine.exec_json(node, ["crictl", "images", "-o", "json"])
            names = set()
            for image in data.get("images", []):
                for name in (image.get("repoTags") or []) + (image.get("repoDigests") or []):
                    try:
                        names.add(imagerefs.node_name(name))
                    except imagerefs.BadReference:
                        continue
            result[node] = names
        return result

    def has_image(self, engine, ref) -> bool:
        wanted = imagerefs.node_name(ref)
        holdings = self.node_images(engine)
        return bool(holdings) and all(wanted in names for names in holdings.values())

    def verify_loaded(self, engine, ref) -> None:
        wanted = imagerefs.node_name(ref)
        missing = [node for node, names in self.node_images(engine).items() if wanted not in names]
        if missing:
            pinned = (
                "; it is pinned by digest, so the node must list that digest in repoDigests"
                if "@" in wanted
                else ""
            )
            raise KindlingError(
                f"kind reported success loading {ref}, but node(s) {', '.join(missing)} do not hold "
                f"{wanted}{pinned}: the manifests would fail with ErrImageNeverPull. Check that the archive "
                "was saved from this exact reference (podman save -o TAR REF)."
            )

    def export_logs(self, folder, log_path=None) -> None:
        self._kind("export", "logs", str(folder), "--name", self.name, log_path=log_path, check=False)


def kind_network(engine: str, env) -> str:
    """The network kind puts its nodes on: "kind", unless overridden the way kind reads it
    (pkg/cluster/internal/providers/{podman,docker}/provider.go)."""
    return env.get(engine_class(engine).kind_network_variable) or "kind"


def _note(log_path, text: str) -> None:
    """A line of kindling's own in a step's log."""
    if log_path:
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(f"kindling: {text}\n")
