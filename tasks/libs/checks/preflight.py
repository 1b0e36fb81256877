"""Preflight checks (`invoke doctor`, and quietly before `e2e.setup`): tools, provider, disk, memory.

Also what kind's podman provider needs of the host (kindhost.py), and version skew: kubectl
against the cluster's API server, kind against the node image (skew.py).

Each check says what it found and, when it fails, what to install or change, so a
run stops before building instead of failing with "no space left on device" halfway.
"""

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from .. import deploysources
from ..adapters.engine import engine_class
from ..runs import ClusterState
from ..stack.stackfile import parse_size
from . import enginefacts, kindhost, skew
from .checkresult import FAIL, OK, WARN, Check, Probe, parse_version, query

# Oldest versions kindling is known to need: podman 4 for `podman image exists`/label
# filters as used here, kind 0.20 for the podman provider's stability, kubectl 1.26 for `kubectl events`.
MINIMUM_VERSIONS = {
    "podman": (4, 0),
    "docker": (20, 10),
    "kind": (0, 20),
    "kubectl": (1, 26),
    "helm": (3, 10),
}  # helm 3.10 for `template --set-json` (tasks/libs/deploysources/helm.py)
INSTALL_HINTS = {
    "podman": "install podman (Debian/Ubuntu: apt-get install podman runc)",
    "docker": "install Docker Engine, or set `engine: podman` in the stack",
    "kind": "install kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
    "kubectl": "install kubectl: https://kubernetes.io/docs/tasks/tools/",
    "helm": "install helm 3: https://helm.sh/docs/intro/install/ (a release binary, or e.g. "
    "`brew install helm`, `snap install helm --classic`)",
}
DEFAULT_DISK_BASE = 5 * 1024**3
DEFAULT_DISK_PER_IMAGE = 2 * 1024**3


def version_check(tool: str, found: Probe) -> Check:
    if found.text is None and found.failure:
        return Check(
            tool,
            FAIL,
            f"on PATH, but {found.failure}",
            f"run `{tool} version` to see why; reinstall if it is broken: {INSTALL_HINTS[tool]}",
        )
    if found.text is None:
        return Check(tool, FAIL, "not found on PATH", INSTALL_HINTS[tool])
    version = parse_version(found.text)
    minimum = MINIMUM_VERSIONS[tool]
    wanted = ".".join(map(str, minimum))
    if version is None:
        return Check(tool, WARN, f"version unknown ({found.text.strip()[:60]!r}); needs {wanted} or newer")
    if version[:2] < minimum:
        return Check(
            tool,
            FAIL,
            f"{'.'.join(map(str, version))} is older than {wanted}",
            f"upgrade {tool}: {INSTALL_HINTS[tool]}",
        )
    return Check(tool, OK, f"{'.'.join(map(str, version))} (needs {wanted}+)")


def deploy_source_checks(runner, stack, kubectl_text) -> list:
    """The tool of each deploy source a service uses (helm, kubectl's kustomize): deploysources."""
    return deploysources.tool_checks(runner, stack.services.values(), kubectl_text)


def disk_needed(built_images: int, env) -> int:
    """Free bytes wanted: KINDLING_MIN_FREE_DISK, else a base plus room per built image."""
    if env.get("KINDLING_MIN_FREE_DISK"):
        return parse_size(env["KINDLING_MIN_FREE_DISK"])
    return DEFAULT_DISK_BASE + DEFAULT_DISK_PER_IMAGE * built_images


def disk_check(label: str, path: Path, needed: int) -> Check:
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    detail = f"{_gib(free)} free under {path} (needs {_gib(needed)})"
    if free < needed:
        return Check(
            label,
            FAIL,
            detail,
            f"free space under {existing} (old images: `podman image prune`; "
            "old runs: the runs/ folder), or lower KINDLING_MIN_FREE_DISK",
        )
    return Check(label, OK, detail)


def memory_check(largest_build: int, budget: int, available: int) -> Check:
    detail = (
        f"{_gib(available)} available; build budget {_gib(budget)}; "
        f"largest declared build {_gib(largest_build)}"
    )
    if largest_build and available and largest_build > available:
        return Check(
            "memory", FAIL, detail, "free memory, or lower the service's build.memory if it is too high"
        )
    if largest_build and budget and largest_build > budget:
        return Check(
            "memory",
            WARN,
            detail + ": that build will run alone",
            "raise --memory-budget if the machine can take more",
        )
    return Check("memory", OK, detail)


def mem_available() -> int:
    """MemAvailable from /proc/meminfo in bytes (0 when unknown)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _gib(size: int) -> str:
    return f"{size / 1024**3:.1f} GiB"


def tool_versions(runner, engine: str) -> dict:
    """Each tool's Probe: its version text, or why there is none."""
    return {tool: tool_version(runner, engine, tool) for tool in (engine, "kind", "kubectl")}


def tool_version(runner, engine: str, tool: str) -> Probe:
    """One tool's Probe (the engine, kind or kubectl)."""
    argv = {
        engine: [engine, "version", "--format", "{{.Client.Version}}"],
        "kind": ["kind", "version"],
        "kubectl": ["kubectl", "version", "--client", "-o", "json"],
    }[tool]
    if shutil.which(argv[0]) is None:
        return Probe(None)
    # Every kind call carries the provider, this one too (see kind.KindCluster.env).
    env = {"KIND_EXPERIMENTAL_PROVIDER": engine} if tool == "kind" else None
    result, failure = query(runner, argv, env=env, timeout=30)
    if failure:
        return Probe(None, failure)
    text = result.stdout
    if tool == "kubectl":
        try:
            text = json.loads(text)["clientVersion"]["gitVersion"]
        except (ValueError, KeyError, TypeError):
            pass
    return Probe(text)


class HostInfo:
    """What the preflight asks of the host (tool versions, `<engine> info`), asked once and kept for the
    run: the cluster phase reads the host's cgroup version from the answer the preflight already has, and
    asks only what nothing asked before it (`invoke cluster.create` runs no preflight)."""

    def __init__(self, runner, engine: str = "podman", facts_folder: Path | None = None, env=None):
        """facts_folder: where the facts read from `<engine> info` are kept between runs (enginefacts.py);
        env: the environment the engine runs with, which that key covers."""
        self.runner, self.engine = runner, engine
        self.facts_folder, self.env = facts_folder, env
        self._versions = {}
        self._info = None
        self._servers = {}  # kubeconfig -> (API server version or None, why not)

    def version(self, tool: str) -> Probe:
        if tool not in self._versions:
            self._versions[tool] = tool_version(self.runner, self.engine, tool)
        return self._versions[tool]

    def prefetch(self, tools, kubeconfig: Path | None = None) -> None:
        """Ask the tools' versions, `<engine> info` and the API server's version (through kubeconfig)
        at once: each is a process start that waits on nothing the others give, and asked one after
        another they add up (about 0.8 s)."""
        asks = [lambda tool=tool: self.version(tool) for tool in tools]
        if shutil.which(self.engine):
            asks.append(self.engine_info)
        if kubeconfig is not None and shutil.which("kubectl"):
            asks.append(lambda: self.server_version(kubeconfig))
        with ThreadPoolExecutor(max_workers=len(asks)) as pool:
            for future in [pool.submit(ask) for ask in asks]:
                future.result()

    def server_version(self, kubeconfig: Path) -> tuple:
        """(the API server's version, "") or (None, why not), asked once per kubeconfig (skew.py)."""
        if kubeconfig not in self._servers:
            self._servers[kubeconfig] = skew.api_server_version(self.runner, kubeconfig)
        return self._servers[kubeconfig]

    def api_answered(self, kubeconfig: Path) -> bool:
        """The API server answered through kubeconfig in this run, so a health check would tell
        nothing new."""
        return (self._servers.get(kubeconfig) or (None,))[0] is not None

    def engine_info(self) -> tuple:
        """(`<engine> info` as a dict, "") or (None, what failed), asked as kind's provider asks it
        (pkg/cluster/internal/providers/{podman,docker}/provider.go): `podman info --format json`,
        `docker info --format {{json .}}`."""
        facts_key = None
        if self._info is None and self.facts_folder is not None and not self.runner.dry_run:
            facts_key = enginefacts.key(self.engine, self.env or {})
            kept = enginefacts.read(self.facts_folder, self.engine, facts_key)
            if kept is not None:
                self._info = (kept, "")
        if self._info is None:
            argv = [self.engine, "info", "--format", engine_class(self.engine).info_format]
            result, failure = query(self.runner, argv, timeout=60)
            try:
                info = json.loads(result.stdout) if result else None
            except ValueError:
                info, failure = None, f"`{' '.join(argv)}` printed no JSON"
            self._info = (info, "") if isinstance(info, dict) else (None, failure or "no host information")
            if isinstance(info, dict) and facts_key is not None:
                enginefacts.write(self.facts_folder, self.engine, facts_key, info)
        return self._info

    def cgroup_version(self) -> str:
        """The host's cgroup version as the engine reports it, "v1" or "v2" (podman's host.cgroupVersion
        "v2", docker's CgroupVersion "2"); "" when it does not say."""
        info, _ = self.engine_info()
        if info is None:
            return ""
        return engine_class(self.engine).cgroup_version(info)


def docker_image_store(host: HostInfo) -> Path | None:
    info, _ = host.engine_info()
    text = str((info or {}).get("DockerRootDir") or "")
    return Path(text) if text else None


def cgroup_check(host: HostInfo, stack, env) -> Check:
    """The host's cgroup version, and whether kindling adds failCgroupV1: false to the kind config for the
    stack's node image (kubeletcgroup.py): information, never a failure."""
    from .. import kubeletcgroup  # imported here: it reads versions through nodeversion, which imports this

    document = None
    if stack.cluster_config is not None:
        try:
            document = yaml.safe_load(Path(stack.cluster_config).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            document = None  # stack.check and kind report it
    decision = kubeletcgroup.decide(
        host.cgroup_version(),
        document,
        stack.node_image,
        kubeletcgroup.pinned_origin(env),
        lambda: host.version("kind").text,
    )
    return Check("cgroup", OK, decision.line + (f"; node image {decision.nodes}" if decision.nodes else ""))


def run_checks(stack, runner, home: Path, budget: int, available: int, env, host=None) -> list:
    """Every check; stack=None (a stack file that does not load) checks podman, the tools and the host.
    host: the run's HostInfo, which keeps what was asked for later steps (a new one by default)."""
    engine = stack.engine if stack is not None else "podman"
    host = host or HostInfo(runner, engine)
    kubeconfig = ClusterState(home, stack.cluster_name).kubeconfig if stack is not None else None
    host.prefetch((engine, "kind", "kubectl"), kubeconfig)
    versions = {tool: host.version(tool) for tool in (engine, "kind", "kubectl")}
    checks = [version_check(tool, versions[tool]) for tool in (engine, "kind", "kubectl")]
    checks.append(
        Check(
            "kind provider",
            OK,
            f"{engine} (kindling sets KIND_EXPERIMENTAL_PROVIDER={engine} on every kind call)",
        )
    )
    store = None
    if versions[engine].text and engine == "podman":
        info_checks, store = kindhost.podman_checks(host)
        checks += info_checks
    elif versions[engine].text:
        store = docker_image_store(host)
    checks.append(kindhost.modules_check())
    if stack is not None:
        server = host.server_version(kubeconfig) if versions["kubectl"].text else None
        checks += skew.skew_checks(
            runner, stack, home, versions["kubectl"].text, versions["kind"].text, server
        )
        if versions[engine].text:
            checks.append(cgroup_check(host, stack, env))
        checks += deploy_source_checks(runner, stack, versions["kubectl"].text)
    services = stack.services.values() if stack is not None else ()
    needed = disk_needed(sum(1 for s in services if s.built), env)
    if store is not None:
        checks.append(disk_check("image store", store, needed))
    checks.append(disk_check("run folder", home, needed))
    if stack is not None:
        largest = max((s.build.memory for s in services if s.built), default=0)
        checks.append(memory_check(largest, budget, available))
    return checks
