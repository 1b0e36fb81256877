"""Preflight checks (`invoke doctor`, and quietly before `e2e.setup`): tools, provider, disk, memory.

Also what kind's podman provider needs of the host (kind's "Rootless" page and
pkg/cluster/internal/providers/podman/provision.go), and version skew: kubectl against
the cluster's API server, kind against the node image.

Each check says what it found and, when it fails, what to install or change, so a
run stops before building instead of failing with "no space left on device" halfway.
"""

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import images
from .errors import CommandFailed
from .runs import ClusterState
from .stack import parse_size

OK, WARN, FAIL = "ok", "warn", "FAIL"
# Oldest versions kindling is known to need: podman 4 for `podman image exists`/label
# filters as used here, kind 0.20 for the podman provider's stability, kubectl 1.26 for `kubectl events`.
MINIMUM_VERSIONS = {
    "podman": (4, 0),
    "docker": (20, 10),
    "kind": (0, 20),
    "kubectl": (1, 26),
    "helm": (3, 10),
}  # helm 3.10 for `template --set-json` (tasks/libs/sources.py)
INSTALL_HINTS = {
    "podman": "install podman (Debian/Ubuntu: apt-get install podman runc)",
    "docker": "install Docker Engine, or set `engine: podman` in the stack",
    "kind": "install kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
    "kubectl": "install kubectl: https://kubernetes.io/docs/tasks/tools/",
    "helm": "install helm 3: https://helm.sh/docs/intro/install/ (a release binary, or e.g. "
    "`brew install helm`, `snap install helm --classic`)",
}
# kubectl's built-in kustomize (`kubectl kustomize`) arrived in kubectl 1.14.
KUSTOMIZE_IN_KUBECTL = (1, 14)
DEFAULT_DISK_BASE = 5 * 1024**3
DEFAULT_DISK_PER_IMAGE = 2 * 1024**3


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4} {self.name:<14} {self.detail}"
        return text + (f"\n     fix: {self.fix}" if self.fix and self.status != OK else "")


def parse_version(text: str):
    match = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return tuple(int(g) for g in match.groups() if g is not None) if match else None


@dataclass(frozen=True)
class Probe:
    """A tool's `version` call: its output, or None with what failed ("" when the tool is not on PATH)."""

    text: str | None
    failure: str = ""


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
    """helm when a service deploys a chart; kubectl's kustomize when one deploys a kustomization."""
    checks = []
    if any(s.helm for s in stack.services.values()):
        if shutil.which("helm") is None:
            found = Probe(None)
        else:
            result, failure = _query(runner, ["helm", "version", "--short"], timeout=30)
            found = Probe(result.stdout if result else None, failure)
        checks.append(version_check("helm", found))
    if any(s.kustomize for s in stack.services.values()):
        checks.append(kustomize_check(kubectl_text))
    return checks


def kustomize_check(kubectl_text) -> Check:
    wanted = ".".join(map(str, KUSTOMIZE_IN_KUBECTL))
    version = parse_version(kubectl_text) if kubectl_text else None
    if version is None:
        return Check(
            "kustomize",
            FAIL,
            "kustomize services are rendered with `kubectl kustomize`, and no working kubectl was found",
            INSTALL_HINTS["kubectl"],
        )
    if version[:2] < KUSTOMIZE_IN_KUBECTL:
        return Check(
            "kustomize",
            FAIL,
            f"kubectl {'.'.join(map(str, version))} has no `kubectl kustomize` (kubectl {wanted}+)",
            f"upgrade kubectl: {INSTALL_HINTS['kubectl']}",
        )
    return Check("kustomize", OK, f"kubectl {'.'.join(map(str, version[:2]))}'s built-in `kubectl kustomize`")


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
    result, failure = _query(runner, argv, env=env, timeout=30)
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

    def __init__(self, runner, engine: str = "podman"):
        self.runner, self.engine = runner, engine
        self._versions = {}
        self._info = None

    def version(self, tool: str) -> Probe:
        if tool not in self._versions:
            self._versions[tool] = tool_version(self.runner, self.engine, tool)
        return self._versions[tool]

    def engine_info(self) -> tuple:
        """(`<engine> info` as a dict, "") or (None, what failed), asked as kind's provider asks it
        (pkg/cluster/internal/providers/{podman,docker}/provider.go): `podman info --format json`,
        `docker info --format {{json .}}`."""
        if self._info is None:
            argv = [self.engine, "info", "--format", "json" if self.engine == "podman" else "{{json .}}"]
            result, failure = _query(self.runner, argv, timeout=60)
            try:
                info = json.loads(result.stdout) if result else None
            except ValueError:
                info, failure = None, f"`{' '.join(argv)}` printed no JSON"
            self._info = (info, "") if isinstance(info, dict) else (None, failure or "no host information")
        return self._info

    def cgroup_version(self) -> str:
        """The host's cgroup version as the engine reports it, "v1" or "v2" (podman's host.cgroupVersion
        "v2", docker's CgroupVersion "2"); "" when it does not say."""
        info, _ = self.engine_info()
        if info is None:
            return ""
        if self.engine == "podman":
            reported = str((info.get("host") or {}).get("cgroupVersion") or "")
        else:
            reported = "v" + str(info.get("CgroupVersion") or "")
        return reported if reported in ("v1", "v2") else ""


def _query(runner, argv, env=None, timeout=30):
    """(result, "") of a read-only command, or (None, what failed: exit code and last stderr line)."""
    shown = " ".join(argv)
    try:
        result = runner.run(argv, env=env, check=False, mutating=False, timeout=timeout)
    except CommandFailed as exc:  # timed out, or not runnable at all
        return (
            None,
            f"`{shown}` failed (exit {exc.returncode}): {_last_line(exc.tail) or str(exc).splitlines()[0]}",
        )
    if result.exit_code != 0:
        last = _last_line(result.stderr) or _last_line(result.stdout) or "no output"
        return None, f"`{shown}` failed (exit {result.exit_code}): {last}"
    return result, ""


def _last_line(text) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


# ---- what kind's provider needs of the host -----------------------------------------------

# Log drivers kind cannot follow: it waits for the node's start line with `podman logs -f`
# (pkg/cluster/internal/providers/podman/provision.go), which has nothing to read with these.
UNFOLLOWABLE_LOG_DRIVERS = {"none", "passthrough", "passthrough-tty"}
FOLLOWABLE_LOG_DRIVERS = {"k8s-file", "json-file"}  # podman's json-file is k8s-file
JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
LOG_DRIVER_FIX = (
    'set `log_driver = "k8s-file"` under [containers] in containers.conf '
    "(/etc/containers/containers.conf, or ~/.config/containers/containers.conf for rootless "
    "podman), as kind's Rootless page shows"
)


def journal_works(runner) -> bool:
    """journald runs (podman's journald driver writes to its socket) and journalctl reads entries back."""
    if not JOURNAL_SOCKET.exists() or shutil.which("journalctl") is None:
        return False
    result, _ = _query(runner, ["journalctl", "--quiet", "--no-pager", "--lines=1"], timeout=10)
    return bool(result and result.stdout.strip())


def podman_checks(runner, journal=journal_works, host=None) -> tuple:
    """([checks], image store) from one `podman info --format json`, the call kind's provider makes."""
    info, failure = (host or HostInfo(runner, "podman")).engine_info()
    if info is None:
        return [
            Check(
                "podman info",
                FAIL,
                failure,
                "run `podman info` to see why; kind's podman provider needs it too",
            )
        ], None
    host = info.get("host") or {}
    graph_root = (info.get("store") or {}).get("graphRoot")
    return [rootless_check(host), log_driver_check(host, lambda: journal(runner))], (
        Path(graph_root) if graph_root else None
    )


def rootless_check(host: dict) -> Check:
    """kind's Rootless page: rootless podman needs cgroup v2 (with the cpu controller delegated)."""
    rootless = bool((host.get("security") or {}).get("rootless"))
    cgroup = host.get("cgroupVersion") or "unknown"
    if not rootless:
        return Check("podman mode", OK, f"rootful (cgroup {cgroup})")
    if cgroup == "v2":
        return Check(
            "podman mode",
            OK,
            "rootless with cgroup v2 (kind's Rootless page also wants the cpu "
            "controller delegated: systemd 252+ does it)",
        )
    return Check(
        "podman mode",
        FAIL,
        f"rootless with cgroup {cgroup}: kind's rootless provider needs cgroup v2",
        'boot with cgroup v2 (GRUB_CMDLINE_LINUX="systemd.unified_cgroup_hierarchy=1", '
        "`sudo update-grub`, reboot; see https://kind.sigs.k8s.io/docs/user/rootless/), or run podman "
        "rootful (sudo)",
    )


def log_driver_check(host: dict, journal_ok) -> Check:
    driver = host.get("logDriver") or ""
    if driver in FOLLOWABLE_LOG_DRIVERS:
        return Check("log driver", OK, driver)
    if driver == "journald":
        if journal_ok():
            return Check("log driver", OK, "journald (the journal answers)")
        return Check(
            "log driver",
            FAIL,
            "journald, but no journal answers here (no journald running): "
            "kind's `podman logs -f` wait for the node would fail",
            LOG_DRIVER_FIX,
        )
    if driver in UNFOLLOWABLE_LOG_DRIVERS:
        return Check(
            "log driver",
            FAIL,
            f"{driver}: podman keeps no log, so kind's `podman logs -f` wait for the node would fail",
            LOG_DRIVER_FIX,
        )
    return Check(
        "log driver",
        WARN,
        f"{driver or 'unknown'}: kind follows node logs with `podman logs -f`",
        LOG_DRIVER_FIX,
    )


def modules_check(modules=Path("/lib/modules")) -> Check:
    """kind mounts /lib/modules read-only into every node (provision.go of each provider): it must exist."""
    if modules.is_dir():
        return Check("/lib/modules", OK, "exists (kind mounts it into every node)")
    return Check(
        "/lib/modules",
        FAIL,
        "missing: kind mounts it read-only into every node, and the node container cannot start without it",
        f"sudo mkdir -p {modules}",
    )


# ---- version skew -----------------------------------------------------------------------------

# The default node image of each kind release (pkg/apis/config/defaults/image.go at its
# tag): the newest Kubernetes that release supports. Newer node images need a newer kind.
KIND_DEFAULT_NODE = {
    (0, 20): "v1.27.3",
    (0, 21): "v1.29.1",
    (0, 22): "v1.29.2",
    (0, 23): "v1.30.0",
    (0, 24): "v1.31.0",
    (0, 25): "v1.31.2",
    (0, 26): "v1.32.0",
    (0, 27): "v1.32.2",
    (0, 28): "v1.33.1",
    (0, 29): "v1.33.1",
    (0, 30): "v1.34.0",
    (0, 31): "v1.35.0",
    (0, 32): "v1.36.1",
}
KUBECTL_SKEW = 1  # kubernetes.io version skew policy: kubectl within one minor of kube-apiserver


def skew_checks(runner, stack, home: Path, kubectl_text, kind_text) -> list:
    checks = []
    if kubectl_text:
        checks.append(
            kubectl_skew_check(
                runner, ClusterState(home, stack.cluster_name).kubeconfig, stack.cluster_name, kubectl_text
            )
        )
    if kind_text:
        checks.append(node_image_check(kind_text, stack.node_image))
    return checks


def kubectl_skew_check(runner, kubeconfig: Path, cluster: str, client_text: str) -> Check:
    if not kubeconfig.exists():
        return Check("kubectl skew", OK, f"no cluster yet ({cluster}); checked once it is up")
    result, failure = _query(
        runner,
        ["kubectl", "--kubeconfig", str(kubeconfig), "version", "-o", "json", "--request-timeout=5s"],
        timeout=15,
    )
    try:
        server = json.loads(result.stdout)["serverVersion"]["gitVersion"] if result else None
    except (ValueError, KeyError, TypeError):
        server = None
    if server is None:
        return Check(
            "kubectl skew",
            OK,
            f"no cluster yet: {cluster}'s API server did not answer ({failure or 'no serverVersion'})",
        )
    client, server_version = parse_version(client_text), parse_version(server)
    if not client or not server_version:
        return Check(
            "kubectl skew", WARN, f"cannot compare kubectl {client_text!r} with the server's {server!r}"
        )
    server = f"{server_version[0]}.{server_version[1]}"
    shown = f"kubectl {client[0]}.{client[1]}, cluster {cluster} Kubernetes {server}"
    if abs(client[1] - server_version[1]) <= KUBECTL_SKEW and client[0] == server_version[0]:
        return Check("kubectl skew", OK, shown)
    return Check(
        "kubectl skew",
        WARN,
        f"{shown}: kubectl supports one minor version either side of the API "
        "server (kubernetes.io version skew policy)",
        f"use kubectl {server_version[0]}.{server_version[1] - 1}-{server_version[0]}."
        f"{server_version[1] + 1}: https://kubernetes.io/docs/tasks/tools/",
    )


def node_image_check(kind_text: str, node_image: str) -> Check:
    kind = parse_version(kind_text)
    if kind is None:
        return Check("node image", WARN, f"kind version unknown ({kind_text.strip()[:60]!r})")
    kind_shown = ".".join(map(str, kind))
    if not node_image:
        return Check("node image", OK, f"kind {kind_shown}'s default")
    try:
        tag = images.parse(node_image).tag
    except images.BadReference:
        tag = ""  # load_stack has reported it
    match = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", tag)
    default = KIND_DEFAULT_NODE.get(kind[:2])
    if not match or default is None:
        why = (
            "its tag is not vX.Y.Z"
            if not match
            else f"kindling knows kind releases up to 0.{max(KIND_DEFAULT_NODE)[1]}"
        )
        return Check("node image", OK, f"{node_image} with kind {kind_shown} (not compared: {why})")
    wanted, newest = (int(match[1]), int(match[2])), parse_version(default)[:2]
    if wanted > newest:
        return Check(
            "node image",
            WARN,
            f"{node_image} is Kubernetes {wanted[0]}.{wanted[1]}, newer than kind "
            f"{kind_shown} supports (its newest node image is {default})",
            f"upgrade kind to a release whose notes list {wanted[0]}.{wanted[1]} node images, or set "
            f"cluster.image (or KINDLING_NODE_IMAGE) to kindest/node:{default}",
        )
    return Check("node image", OK, f"{node_image} (kind {kind_shown} supports up to {default})")


def docker_image_store(host: HostInfo) -> Path | None:
    info, _ = host.engine_info()
    text = str((info or {}).get("DockerRootDir") or "")
    return Path(text) if text else None


def cgroup_check(host: HostInfo, stack, env) -> Check:
    """The host's cgroup version, and whether kindling adds failCgroupV1: false to the kind config for the
    stack's node image (kubeletcgroup.py): information, never a failure."""
    from . import kubeletcgroup  # imported here: it reads versions through nodeversion, which imports this

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


def run_checks(stack, runner, home: Path, budget: int, available: int, env=None, host=None) -> list:
    """Every check; stack=None (a stack file that does not load) checks podman, the tools and the host.
    host: the run's HostInfo, which keeps what was asked for later steps (a new one by default)."""
    env = os.environ if env is None else env
    engine = stack.engine if stack is not None else "podman"
    host = host or HostInfo(runner, engine)
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
        info_checks, store = podman_checks(runner, host=host)
        checks += info_checks
    elif versions[engine].text:
        store = docker_image_store(host)
    checks.append(modules_check())
    if stack is not None:
        checks += skew_checks(runner, stack, home, versions["kubectl"].text, versions["kind"].text)
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
