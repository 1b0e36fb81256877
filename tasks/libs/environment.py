"""The E2E environment of one stack: its steps (image, cluster, load, deploy) and how they run.

Each step is an idempotent "ensure": an image whose inputs are unchanged is found
by its inputs digest instead of rebuilt, an image already on the node is not
loaded again, and a service whose image and rendered manifests are unchanged and
whose workloads are ready is not applied again. That is what makes the `pre=`
chains of `deploy.<service>` cheap and a warm `e2e.setup` fast.
"""

import getpass
import os
import re
import shutil
import time
from pathlib import Path

import yaml

from . import cache, images, locks, masking, preflight, render, report, runs
from .console import Console
from .engine import DIGEST_LABEL, STACK_LABEL, Engine
from .errors import CommandFailed, Interrupted, KindlingError, NotReady
from .kind import KindCluster, LocalRegistry, kind_network
from .kubectl import Kubectl
from .procs import SECRET_NAME_RE, Runner
from .scheduler import FAILED, Scheduler, Step, StepFailed
from .stack import positive_seconds

STRATEGIES = ("pipelined", "phased", "serial")
DEFAULT_LIMITS = {"build": 4, "load": 2, "kube": 4, "cluster": 1}
DEFAULT_TIMEOUTS = {"build": 3600, "save": 900, "load": 900, "cluster": 600, "apply": 300}
TRANSIENT_BUILD_FAILURE = re.compile(r"server probably quit", re.I)
NODEPORT_TAKEN = re.compile(r'Service "(?P<service>[^"]+)" is invalid: spec\.ports\[\d+\]\.nodePort: '
                            r"Invalid value: (?P<port>\d+): provided port is already allocated")
_ENSURED_CLUSTERS = set()  # (state home, cluster) ensured by this process


def default_memory_budget() -> int:
    """Three quarters of the memory available now."""
    return preflight.mem_available() * 3 // 4


def parse_timeouts(text: str) -> dict:
    """`build=600,load=120` -> {"build": 600, "load": 120} (KINDLING_TIMEOUTS)."""
    result = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        if key not in DEFAULT_TIMEOUTS:
            raise KindlingError(f"KINDLING_TIMEOUTS: unknown step {key!r}; use {', '.join(DEFAULT_TIMEOUTS)}")
        try:
            result[key] = float(value)
        except ValueError:
            raise KindlingError(f"KINDLING_TIMEOUTS: {part!r} needs a number of seconds") from None
        if not positive_seconds(result[key]):
            raise KindlingError(f"KINDLING_TIMEOUTS: {part!r} must be a positive number of seconds")
    return result


def git_short_sha(runner: Runner, folder: Path) -> str | None:
    result = runner.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"],
                        check=False, mutating=False)
    return result.stdout.strip() or None if result.exit_code == 0 else None


class Environment:
    def __init__(self, stack, *, dry_run=False, console=None, env=None, no_cache=False,
                 coverage=False, keep_going=False, jobs=None, memory_budget=None, strategy="pipelined",
                 limits=None, timeouts=None, context=None, kubeconfig=None, load_via=None, recreate=False):
        if strategy not in STRATEGIES:
            raise KindlingError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
        self.stack = stack
        self.recreate = recreate
        self.env = os.environ if env is None else env
        self.console = console or Console()
        self.no_cache = no_cache
        self.coverage = coverage
        self.keep_going = keep_going
        self.strategy = strategy
        self.limits = {**DEFAULT_LIMITS, **(limits or {})}
        if jobs:
            self.limits["build"] = int(jobs)
        self.memory_budget = default_memory_budget() if memory_budget is None else memory_budget
        self.timeouts = {**DEFAULT_TIMEOUTS, **stack.timeouts, **parse_timeouts(self.env.get("KINDLING_TIMEOUTS", "")),
                         **(timeouts or {})}
        self.home = runs.state_home(stack, self.env)
        self.run = runs.Run(self.home, stack.name)
        keep = self.env.get("KINDLING_KEEP_RUNS") or str(runs.DEFAULT_KEEP_RUNS)
        if not keep.isdigit() or int(keep) < 1:
            raise KindlingError(f"KINDLING_KEEP_RUNS: {keep!r} must be a number of runs, 1 or more")
        runs.prune_runs(self.home, int(keep), current=self.run.id)
        self.runner = Runner(dry_run, self.run.command_log, echo=self.console.line)
        self.runner.add_secrets(v for b in self._builds() for k, v in b.build_args(coverage).items()
                                if SECRET_NAME_RE.search(k))
        self.engine = Engine(self.runner, stack.engine)
        # Registry mode: images are pushed to stack.registry and pulled by the nodes (no save/load).
        self.registry = stack.registry or images.LOCAL_REGISTRY
        self.registry_mode = bool(stack.registry)
        # With a registry, a kubeconfig/context names an existing cluster: no Kind cluster is made.
        kubeconfig = kubeconfig or (self.env.get("KUBECONFIG") if self.registry_mode else None)
        self.existing_cluster = self.registry_mode and bool(context or kubeconfig)
        # --load-via registry: Kind pulls from a registry container beside it (kind's "Local Registry").
        load_via = load_via or self.env.get("KINDLING_LOAD_VIA") or "archive"
        if load_via not in ("archive", "registry"):
            raise KindlingError(f"--load-via {load_via!r}: use archive or registry")
        self.local_registry = None
        if load_via == "registry" and not self.registry_mode:
            port = self.env.get("KINDLING_KIND_REGISTRY_PORT") or "5001"
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise KindlingError(f"KINDLING_KIND_REGISTRY_PORT: {port!r} is not a port number")
            self.local_registry = LocalRegistry(
                self.runner, stack.engine, name=self.env.get("KINDLING_KIND_REGISTRY_NAME") or "kind-registry",
                port=int(port),
                image=self.env.get("KINDLING_KIND_REGISTRY_IMAGE") or LocalRegistry.DEFAULT_IMAGE,
                network=kind_network(stack.engine, self.env))
            self.registry = self.local_registry.host
        self.delivery = "push" if self.registry_mode or self.local_registry else "load"
        if self.existing_cluster:
            self.cluster_state = runs.ClusterState(self.home, f"context-{context or 'current'}")
            self.kubectl = Kubectl(kubeconfig, self.runner, context)
        else:
            self.cluster_state = runs.ClusterState(self.home, stack.cluster_name)
            self.kubectl = Kubectl(self.cluster_state.kubeconfig, self.runner)
        self.cluster = KindCluster(stack.cluster_name, self.cluster_state.kubeconfig, self.runner,
                                   stack.engine, node_image=stack.node_image)
        self.refs = {}  # service -> reference chosen by this run
        self.image_tag = self.env.get("IMAGE_TAG") or None
        if self.image_tag:
            try:
                images.check_tag(self.image_tag)
            except images.BadReference as exc:
                raise KindlingError(f"IMAGE_TAG: {exc}") from None
        self._tag_inputs = None
        self.last_report = None

    @property
    def dry_run(self) -> bool:
        return self.runner.dry_run

    def _builds(self):
        return [s.build for s in self.stack.services.values() if s.built]

    # ---- references -------------------------------------------------------------------------

    def new_tag(self, service) -> str:
        if self.image_tag:
            return self.image_tag
        if self._tag_inputs is None:
            user = self.env.get("USER") or getpass.getuser()
            self._tag_inputs = (user, git_short_sha(self.runner, self.stack.source), int(time.time()))
        user, sha, now = self._tag_inputs
        return images.unique_tag(service, user, sha, now)

    def known_refs(self) -> dict:
        """Every service's reference: this run's choice, else the newest recorded, else prebuilt."""
        refs = {name: s.image for name, s in self.stack.services.items() if not s.built}
        refs.update({name: info["ref"] for name, info in self.run.current_images().items()
                     if name in self.stack.services and self.stack.services[name].built})
        refs.update(self.refs)
        return refs

    # ---- steps ------------------------------------------------------------------------------

    def ensure_image(self, name) -> str:
        service = self.stack.services[name]
        log = self.run.log_path(f"image:{name}")
        if not service.built:
            self.refs[name] = service.image
            if self.engine.image_exists(service.image):
                return "present"
            self.engine.pull(service.image, log_path=log, timeout=self.timeouts["build"])
            return "pulled"
        build = service.build
        args = build.build_args(self.coverage)
        digest = cache.build_digest(build.containerfile, build.context, args, build.target)
        repository = images.repository(self.stack.project, name, self.registry)
        if self.image_tag and not self.no_cache:
            ref = images.local_ref(self.stack.project, name, self.image_tag, self.registry)
            if self.engine.image_exists(ref):
                # Provided from outside (e.g. CI artifacts): used as is, never removed by teardown.
                self.refs[name] = ref
                self.run.record_image(name, {"ref": ref, "digest": None, "built_by_kindling": False})
                return "present"
        if not self.no_cache:
            found = self.engine.find_by_label(repository, DIGEST_LABEL, digest)
            if found:
                self.refs[name] = found[0]
                self.run.record_image(name, {"ref": found[0], "digest": digest, "built_by_kindling": True})
                return "cached"
        ref = images.local_ref(self.stack.project, name, self.new_tag(name), self.registry)
        self.console.state("image", name, "building", str(log))
        labels = {DIGEST_LABEL: digest, STACK_LABEL: self.stack.name}
        for attempt in (1, 2):
            try:
                self.engine.build(ref, build.containerfile, build.context, args=args, target=build.target,
                                  labels=labels, no_cache=self.no_cache, log_path=log,
                                  timeout=self.timeouts["build"])
                break
            except CommandFailed as exc:
                # podman's service can die under load ("server probably quit", exit 125): once more.
                if attempt == 2 or exc.returncode != 125 or not TRANSIENT_BUILD_FAILURE.search(exc.tail):
                    raise
        if not self.dry_run and not self.engine.image_exists(ref):
            raise KindlingError(f"{name}: the build succeeded but {ref} is not in the image store")
        self.refs[name] = ref
        if not self.dry_run:
            self.run.record_image(name, {"ref": ref, "digest": digest, "built_by_kindling": True})
        return "built"

    def ensure_cluster(self) -> str:
        if self.existing_cluster:
            return self._ensure_existing_cluster()
        key = (str(self.home), self.stack.cluster_name)
        if key in _ENSURED_CLUSTERS and not self.dry_run:
            # deploy.<service> pre= chains run several tasks in one process: check once.
            return "exists"
        log = self.run.log_path("cluster")
        config = self.stack.cluster_config
        if self.coverage or self.local_registry:
            config = self.rendered_kind_config()
            if self.coverage and not self.dry_run and self.cluster.exists() and not self.coverage_dir.exists():
                self.console.line(f"warning: cluster {self.stack.cluster_name} was created without the "
                                  "coverage mount; run e2e.teardown first to collect coverage")
        # A broken cluster kindling made is ours to recreate; one made elsewhere only on --recreate.
        outcome = self.cluster.ensure(config, log_path=log, timeout=self.timeouts["cluster"],
                                      recreate=self.recreate or self.cluster_state.created_by_kindling())
        if outcome != "exists" and not self.dry_run:
            self.cluster_state.mark_created()
        self._ensure_namespace(log)
        if not self.dry_run:
            _ENSURED_CLUSTERS.add(key)
        return outcome

    def _ensure_existing_cluster(self) -> str:
        """An existing cluster (registry mode with a kubeconfig/context): reachable? then the namespace."""
        log = self.run.log_path("cluster")
        self.kubectl.run("cluster-info", log_path=log, timeout=self.timeouts["apply"], mutating=False)
        self._ensure_namespace(log)
        return "existing"

    def _ensure_namespace(self, log) -> None:
        namespace_file = self.run.folder / "namespace.yaml"
        namespace_file.write_text(render.dump([render.namespace_doc(self.stack.namespace)]))
        self.kubectl.apply_file(namespace_file, log_path=log, timeout=self.timeouts["apply"])

    def ensure_pushed(self, name) -> str:
        """Registry mode: push the image; layers the registry has are not sent again."""
        ref = self.known_refs()[name]
        # The local Kind registry serves plain HTTP on loopback, as in kind's guide.
        tls_verify = self.stack.registry_tls_verify if self.registry_mode else False
        self.engine.push(ref, tls_verify, log_path=self.run.log_path(f"push:{name}"),
                         timeout=self.timeouts["load"])
        return "pushed"

    def import_archives(self, folder) -> list:
        """Load image archives (e.g. CI artifacts) into the engine; kindling did not build these."""
        folder = Path(folder)
        archives = sorted(folder.glob("*.tar"))
        if not archives:
            raise KindlingError(f"--images-from {folder}: no *.tar image archives there")
        loaded = []
        for archive in archives:
            loaded += self.engine.load_archive(archive, timeout=self.timeouts["save"])
        return loaded

    @property
    def coverage_dir(self) -> Path:
        """Host folder mounted at /coverdata on the nodes in coverage mode."""
        return self.cluster_state.folder / "coverdata"

    def kind_config(self) -> dict | None:
        if self.stack.cluster_config is None:
            return None
        return yaml.safe_load(self.stack.cluster_config.read_text(encoding="utf-8")) or None

    def rendered_kind_config(self) -> Path:
        """A rendered copy of the Kind config (the committed one stays clean): the coverage mount,
        and containerd's registry config folder for --load-via registry."""
        config = self.kind_config()
        if self.coverage:
            self.coverage_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.coverage_dir, 0o777)  # workloads may run as any user
            config = render.coverage_kind_config(config, str(self.coverage_dir))
        if self.local_registry:
            config = render.kind_registry_config(config)
        path = self.run.folder / "kind-config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def ensure_local_registry(self) -> str:
        return self.local_registry.ensure(log_path=self.run.log_path("registry"))

    def wire_local_registry(self) -> str:
        """Once both the cluster and the registry container exist (kind's local-registry guide):
        each node's hosts.toml, the registry on the cluster's network, the hosting ConfigMap."""
        log = self.run.log_path("registry")
        nodes = self.cluster.nodes() if not self.dry_run else [f"{self.stack.cluster_name}-control-plane"]
        self.local_registry.connect(nodes, log_path=log)
        hosting = self.run.folder / "local-registry-hosting.yaml"
        hosting.write_text(render.dump([render.local_registry_hosting(self.local_registry.host)]))
        self.kubectl.apply_file(hosting, log_path=log, timeout=self.timeouts["apply"])
        return "wired"

    def ensure_loaded(self, name) -> str:
        ref = self.known_refs()[name]
        if not self.dry_run and self.cluster.has_image(self.engine, ref):
            return "on node"
        log = self.run.log_path(f"load:{name}")
        tar = self.run.tar_path(name)
        try:
            tar.unlink(missing_ok=True)  # `podman save -o` refuses to overwrite a stale archive
            self.engine.save(ref, tar, log_path=log, timeout=self.timeouts["save"])
            self.cluster.load_archive(tar, log_path=log, timeout=self.timeouts["load"])
        finally:
            tar.unlink(missing_ok=True)
        if not self.dry_run:
            self.cluster.verify_loaded(self.engine, ref)
        return "loaded"

    def rendered(self, name) -> list:
        service = self.stack.services[name]
        docs = [doc for path in service.manifests for doc in render.load_documents(path)]
        refs = self.known_refs()
        used = {render.match_service(str(c.get("image", "")), self.stack.project,
                                     {s: 1 for s in self.stack.services}, self.registry)
                for d in docs for c in render.containers(d)} - {None}
        unknown = sorted(s for s in used if s not in refs)
        if unknown:
            raise KindlingError(f"{name}: its manifests use the image of {', '.join(unknown)}, which "
                                "has not been built yet: run `invoke build` or `invoke e2e.setup` first")
        if self.delivery == "push":
            policies = {s: "IfNotPresent" for s, svc in self.stack.services.items() if svc.built}
        else:
            policies = {s: "Never" for s, svc in self.stack.services.items() if svc.built or svc.load}
        docs = render.render(docs, project=self.stack.project, namespace=self.stack.namespace,
                             service_refs=refs, pull_policies=policies, registry=self.registry)
        if self.coverage:
            covered = {refs[s] for s, svc in self.stack.services.items()
                       if svc.built and svc.build.coverage_args and s in refs}
            docs = render.add_coverage(docs, covered)
        self.runner.add_secrets(render.secret_values(docs))
        return docs

    def ensure_deployed(self, name) -> str:
        service = self.stack.services[name]
        docs = self.rendered(name)
        digest = render.digest(docs)
        ref = self.known_refs().get(name)
        targets = render.readiness_targets(docs)
        wanted = {"image": ref, "manifests": digest}
        previous = self.cluster_state.deployed().get(name)
        # Ready against the manifest: a workload scaled to zero since (coverage mode, a person)
        # is not up to date, whatever its live status says.
        replicas = render.manifest_replicas(docs)
        if (not self.dry_run and previous and {k: previous.get(k) for k in wanted} == wanted
                and all(self.kubectl.is_ready(*t, replicas=replicas.get(t)) for t in targets)):
            return "up to date"
        log = self.run.log_path(f"deploy:{name}")
        crds, rest = render.split_crds(docs)
        folder = self.run.folder / "rendered"
        folder.mkdir(exist_ok=True)
        try:
            if crds:
                path = folder / f"{name}.crds.yaml"
                _write_private(path, render.dump(crds))
                self.kubectl.apply(path, self.stack.namespace, log_path=log, timeout=self.timeouts["apply"])
                for crd in crds:
                    self.kubectl.wait_crd_established(crd["metadata"]["name"], 60, log_path=log)
            for kind, object_name, namespace in targets:
                if kind == "Job":
                    # A Job's pod template is immutable: a new one replaces it. Foreground deletion
                    # waits for the old pods, so an old migration never runs beside the new one.
                    self.kubectl.delete("job", object_name, namespace, log_path=log, cascade="foreground")
            if rest:
                path = folder / f"{name}.yaml"
                _write_private(path, render.dump(rest))
                self.kubectl.apply(path, self.stack.namespace, log_path=log, timeout=self.timeouts["apply"])
            if not self.dry_run:
                for kind, object_name, namespace in targets:
                    self.kubectl.wait_ready(kind, object_name, namespace or self.stack.namespace,
                                            service.ready_timeout, log_path=log)
        except (CommandFailed, NotReady) as exc:
            self.cluster_state.record_deployed(name, None)
            taken = NODEPORT_TAKEN.search(str(exc))
            if taken:
                # The API server's words (pkg/registry/core/service/portallocator): on a shared
                # cluster another Service may hold the port.
                raise KindlingError(
                    f"{name}: Service {taken['service']}: nodePort {taken['port']} is already allocated "
                    f"in this cluster\n  fix: change or remove `nodePort: {taken['port']}` in "
                    f"{', '.join(str(p) for p in service.manifests)} (without it Kubernetes picks a free "
                    "port), or free the port in the cluster") from None
            if not self.dry_run and not self.runner.stopping:
                where = self.write_diagnostics(name, targets)
                detail = self._not_ready_detail(exc) if isinstance(exc, NotReady) else str(exc)
                raise KindlingError(f"{name}: not ready: {detail}\n  diagnostics: {where}") from None
            raise
        if not self.dry_run:
            applied = [[d["kind"], d["metadata"]["name"], d["metadata"].get("namespace", "")] for d in docs
                       if d["kind"] not in render.CLUSTER_SCOPED or d["kind"] == "CustomResourceDefinition"]
            self.cluster_state.record_deployed(name, {**wanted, "run": self.run.id, "objects": applied})
        return "ready"

    def _not_ready_detail(self, exc: NotReady) -> str:
        """The failure as the kubelet put it; for ErrImageNeverPull, what the pod asked for and what
        the nodes hold under that repository (the usual cause: a localhost/ prefix missing or doubled)."""
        verdict = exc.verdict
        text = str(exc)
        if verdict is None or verdict.reason != "ErrImageNeverPull" or not verdict.image:
            return text
        try:
            wanted_repo = images.parse(images.normalize(verdict.image)).repository
        except images.BadReference:
            return text
        held = sorted({ref for names in self.cluster.node_images(self.engine).values() for ref in names
                       if images.parse(ref).repository == wanted_repo})
        return (f"{text}\n  the pod asked for: {verdict.image} ({images.normalize(verdict.image)})\n"
                f"  the nodes hold: {', '.join(held) or 'nothing under ' + wanted_repo}")

    def write_diagnostics(self, name, targets=()) -> Path:
        """Pods, events, workloads, the targets' logs and `kind export logs`, secrets masked."""
        folder = self.run.folder / "diagnostics" / name
        folder.mkdir(parents=True, exist_ok=True)
        for file_name, text in self.kubectl.diagnostics(self.stack.namespace).items():
            _write_private(folder / file_name, self._mask(text))
        for kind, object_name, namespace in targets:
            text = self.kubectl.logs(kind, object_name, namespace)
            _write_private(folder / f"logs-{object_name}.txt", self._mask(text))
        self.cluster.export_logs(folder / "kind-logs", log_path=self.run.log_path("diagnostics"))
        # `kind export logs` copies pod and node logs, which may print secret values.
        masking.mask_folder(folder / "kind-logs", self._mask)
        return folder

    def _mask(self, text: str) -> str:
        return self.runner.mask_text(text)

    def preflight(self) -> list:
        return preflight.run_checks(self.stack, self.runner, self.home, self.memory_budget,
                                    preflight.mem_available(), self.env)

    # ---- the suite ---------------------------------------------------------------------------

    def suite_env(self) -> dict:
        """What the suite is told about the environment (documented in the README)."""
        refs = self.known_refs()
        docs = []
        for name in self.stack.services:
            try:
                docs += self.rendered(name)
            except KindlingError:
                continue
        env = {
            "KUBECONFIG": str(self.cluster_state.kubeconfig),
            "E2E_CLUSTER": self.stack.cluster_name,
            "E2E_NAMESPACE": self.stack.namespace,
            "E2E_STACK_NAME": self.stack.name,
            "E2E_RUN_DIR": str(self.run.folder),
        }
        for name, ref in refs.items():
            env[f"E2E_IMAGE_{render.env_name(name)}"] = ref
        for service, url in render.endpoints(docs, self.kind_config()).items():
            env[f"E2E_URL_{render.env_name(service)}"] = url
        if self.coverage:
            env["E2E_COVERDIR"] = str(self.coverage_dir)
        return env

    def run_suite(self, extra_args=()) -> str:
        spec = self.stack.test
        if spec is None:
            raise KindlingError(f"{self.stack.path}: test: the stack has no `test:` section; add "
                                "`test: {command: [go, test, ./test/e2e/...]}`")
        argv = [*spec.command, *extra_args]
        env = {**spec.env, **self.suite_env()}
        self.console.line(f"[test] {' '.join(argv)} (in {spec.workdir}; log {self.run.log_path('test')})")
        self.runner.run(argv, env=env, cwd=spec.workdir, log_path=self.run.log_path("test"),
                        timeout=spec.timeout, stream=self.console.line)
        return "passed"

    def suite_step(self, extra_args=(), needs=()) -> Step:
        return Step("test", "test", lambda: self.run_suite(extra_args), needs=tuple(needs),
                    subject=self.stack.name, estimate=self._estimate("test", 60))

    def collect_coverage(self) -> Path | None:
        """Scale covered workloads to zero so Go flushes its counters, then copy them out."""
        covered = []
        for name in self.stack.order():
            covered += render.covered_workloads(self.rendered(name))
        if not covered:
            return None
        log = self.run.log_path("coverage")
        # Scaled to zero, these services are no longer as deployed: the next setup rolls them out.
        scaled = {name for _, name, _, _ in covered}
        for service in self.stack.order():
            if scaled & {name for _, name, _ in render.readiness_targets(self.rendered(service))}:
                self.cluster_state.record_deployed(service, None)
        for kind, name, namespace, labels in covered:
            self.kubectl.run("scale", f"{kind.lower()}/{name}", "--replicas=0", "-n", namespace, log_path=log)
            if labels:
                selector = ",".join(f"{k}={v}" for k, v in labels.items())
                self.kubectl.run("wait", "--for=delete", "pod", "-l", selector, "-n", namespace,
                                 "--timeout=120s", log_path=log, check=False, timeout=150)
        target = self.run.folder / "coverdata"
        if not self.dry_run:
            shutil.copytree(self.coverage_dir, target, dirs_exist_ok=True)
        self.console.line(f"coverage data: {target}\n  profile: go tool covdata textfmt -i={target} "
                          f"-o {self.run.folder / 'coverage.out'}")
        return target

    # ---- graphs -----------------------------------------------------------------------------

    def image_steps(self, names) -> list:
        steps = []
        for name in names:
            service = self.stack.services[name]
            if service.built or service.load:
                memory = service.build.memory if service.built else 0
                steps.append(Step(f"image:{name}", "build", lambda n=name: self.ensure_image(n),
                                  subject=name, memory=memory, estimate=self._estimate(f"image:{name}", 60)))
        return steps

    def setup_steps(self, names) -> list:
        """Steps to ensure the named services (their dependencies outside `names` are assumed up)."""
        steps = [Step("cluster", "cluster", self.ensure_cluster, subject=self.stack.cluster_name,
                      estimate=self._estimate("cluster", 30))]
        steps += self.image_steps(names)
        with_image = {s.subject for s in steps if s.id.startswith("image:")}
        delivery = self.delivery
        if self.local_registry:
            steps.append(Step("registry", "cluster", self.ensure_local_registry, subject=self.local_registry.name,
                              estimate=self._estimate("registry", 2)))
            # After both exist: `podman network connect` needs the container and kind's network.
            steps.append(Step("registry-wiring", "kube", self.wire_local_registry, needs=("cluster", "registry"),
                              subject=self.local_registry.name, estimate=self._estimate("registry-wiring", 2)))
        for name in names:
            if name in with_image and delivery == "push" and not self.stack.services[name].built:
                continue  # a prebuilt image is pulled by the nodes from where it lives
            if name in with_image:
                action = (lambda n=name: self.ensure_pushed(n)) if delivery == "push" else \
                    (lambda n=name: self.ensure_loaded(n))
                if delivery == "push":
                    needs = (f"image:{name}",) + (("registry",) if self.local_registry else ())
                else:
                    needs = ("cluster", f"image:{name}")
                steps.append(Step(f"{delivery}:{name}", "load", action, needs=needs, subject=name,
                                  estimate=self._estimate(f"{delivery}:{name}", 5)))
        delivered = {s.subject for s in steps if s.id.startswith(f"{delivery}:")}
        selected = set(names)
        for name in names:
            needs = ["cluster"] + ([f"{delivery}:{name}"] if name in delivered else [])
            needs += ["registry-wiring"] if self.local_registry else []
            needs += [f"deploy:{dep}" for dep in self.stack.services[name].depends_on if dep in selected]
            steps.append(Step(f"deploy:{name}", "kube", lambda n=name: self.ensure_deployed(n),
                              needs=tuple(needs), subject=name, estimate=self._estimate(f"deploy:{name}", 10)))
        if self.strategy == "phased":
            steps = _phased(steps, names)
        return steps

    def _estimate(self, step_id, default) -> float:
        if not hasattr(self, "_previous"):
            self._previous = {}
            previous_runs = sorted((self.home / "runs").glob("*/run.json"), key=lambda p: p.stat().st_mtime)
            for path in previous_runs[-5:]:
                for step in runs.read_json(path, {}).get("steps", []):
                    if step.get("status") == "ok" and step.get("seconds"):
                        self._previous[step["id"]] = step["seconds"]
        return self._previous.get(step_id, default)

    # ---- running ----------------------------------------------------------------------------

    def lock_cluster(self, what) -> None:
        if self.dry_run:
            return
        wait = float(self.env.get("KINDLING_LOCK_WAIT") or 0)
        note = locks.acquire(self.stack.cluster_name, what, wait, self.env, say=self.console.line)
        if note.startswith("took over"):
            self.console.line(f"cluster {self.stack.cluster_name}: {note}")

    def execute(self, steps, label="setup") -> dict:
        if any(step.id == "cluster" for step in steps):
            self.lock_cluster(label)
        scheduler = Scheduler(
            limits=self.limits, total=1 if self.strategy == "serial" else None,
            memory_budget=self.memory_budget, on_event=self._on_event, keep_going=self.keep_going,
            on_abort=self.runner.terminate_all)
        status = "ok"
        try:
            records = scheduler.run(steps)
        except StepFailed as exc:
            records, status = exc.records, "failed"
            self._write_report(records, label, status)
            raise
        except Interrupted as exc:
            self._cleanup_tars()
            self._write_report(getattr(exc, "records", []), label, "interrupted")
            raise
        finally:
            self.runner.resume()
        return self._write_report(records, label, status)

    def _write_report(self, records, label, status) -> dict:
        data = report.summary(records, self.strategy, self.run.id, status)
        data.update({"stack": self.stack.name, "stack_file": str(self.stack.path), "task": label,
                     "images": self.known_refs(), "dry_run": self.dry_run})
        data = _masked(data, self._mask)
        runs.write_json(self.run.folder / "run.json", data)
        self.last_report = data
        return data

    def _cleanup_tars(self):
        for tar in self.run.folder.glob("*.tar"):
            tar.unlink(missing_ok=True)

    def _on_event(self, record, state):
        kind = record.id.split(":", 1)[0]
        labels = {"load": "loading", "deploy": "deploying", "cluster": "ensuring"}
        if state == "queued":
            self.console.state(kind, record.subject, "queued")
        elif state == "start":
            if kind != "image":  # ensure_image says "building" only when it really builds
                self.console.state(kind, record.subject, labels.get(kind, "running"))
        elif state == "done":
            self.console.state(kind, record.subject, record.outcome, f"in {record.duration:.1f} s")
        elif state == "failed":
            self.console.state(kind, record.subject, "FAILED", f"after {record.duration:.1f} s")
        else:
            self.console.state(kind, record.subject, "cancelled")

    def failure_details(self, records) -> str:
        parts = []
        for record in records:
            if record.status == FAILED:
                parts.append(f"{record.id} failed:\n{self._mask(record.error)}")
        return "\n".join(parts)

    # ---- teardown ---------------------------------------------------------------------------

    def _delete_applied_objects(self) -> list:
        """Existing cluster: delete exactly what kindling applied, in reverse apply order. Every
        wait is bounded; an object a finalizer holds is reported, and the rest still go."""
        done = []
        deployed = self.cluster_state.deployed()
        objects = [o for name in reversed(self.stack.order()) for o in (deployed.get(name) or {}).get("objects", [])]
        log = self.run.log_path("teardown")
        for kind, object_name, namespace in render.teardown_order(objects):
            where = ["-n", namespace] if namespace else []
            result = self.kubectl.run("delete", kind.lower(), object_name, *where, "--ignore-not-found",
                                      "--wait=true", "--timeout=30s", log_path=log, check=False, timeout=60)
            if result.exit_code == 0:
                done.append(f"deleted {kind}/{object_name}" + (f" in {namespace}" if namespace else ""))
                continue
            live = self.kubectl.get_json(f"{kind.lower()}/{object_name}", namespace or "default") or {}
            finalizers = (live.get("metadata") or {}).get("finalizers") or []
            done.append(f"could not delete {kind}/{object_name}"
                        + (f" in {namespace}" if namespace else "")
                        + (f": held by finalizers {', '.join(finalizers)}" if finalizers else
                           f" (kubectl exit {result.exit_code}; see {log})"))
        if not self.dry_run:
            for name in self.stack.order():
                self.cluster_state.record_deployed(name, None)
        return done

    def teardown(self, keep_cluster=False, keep_images=False) -> list:
        """Delete the cluster, its kubeconfig, leftover tars and the images kindling built."""
        done = []
        if self.existing_cluster:
            done += self._delete_applied_objects()
            keep_cluster = True  # never an existing cluster
        if not keep_cluster:
            self.lock_cluster("teardown")
        _ENSURED_CLUSTERS.discard((str(self.home), self.stack.cluster_name))
        if not keep_cluster:
            listed = self.dry_run or self.cluster.exists()
            # `kind delete cluster` succeeds for a missing cluster and also removes the nodes of a
            # creation that was interrupted before kind listed the cluster.
            self.cluster.delete(log_path=self.run.log_path("teardown"))
            if listed:
                done.append(f"deleted cluster {self.stack.cluster_name}")
            if not self.dry_run:
                self.cluster_state.forget()
        for tar in (t for t in (self.home / "runs").glob("*/*.tar") if runs.is_run_of(self.stack.name, t.parent.name)):
            if not self.dry_run:
                tar.unlink(missing_ok=True)
            done.append(f"removed {tar.name}")
        if not keep_images:
            built = list(self.run.built_images())
            failed = self.engine.remove_images(built)
            if not self.dry_run:
                self.run.forget_built([r for r in built if r not in failed])
                runs.write_json(self.run.stack_folder / "images.json", {})
            done += [f"removed image {r}" for r in built if r not in failed]
            done += [f"could not remove image {r} (in use?)" for r in failed]
        return done


def _phased(steps, names) -> list:
    """Kubernaut's December 2025 flow: all builds, then all loads, then deploys one by one in order."""
    images_ = [s.id for s in steps if s.id.startswith("image:")]
    loads = [s.id for s in steps if s.id.startswith(("load:", "push:"))]
    previous_deploy = None
    for step in steps:
        if step.id.startswith(("load:", "push:")):
            step.needs = tuple(dict.fromkeys([*step.needs, *images_]))
        if step.id.startswith("deploy:"):
            extra = [*loads] + ([previous_deploy] if previous_deploy else [])
            step.needs = tuple(dict.fromkeys([*step.needs, *extra]))
            previous_deploy = step.id
    return steps


def _write_private(path: Path, text: str):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
        handle.write(text)


def _masked(data, mask):
    if isinstance(data, dict):
        return {k: _masked(v, mask) for k, v in data.items()}
    if isinstance(data, list):
        return [_masked(v, mask) for v in data]
    if isinstance(data, str):
        return mask(data)
    return data
