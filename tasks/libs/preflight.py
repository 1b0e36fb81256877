"""Preflight checks (`invoke doctor`, and quietly before `e2e.setup`): tools, provider, disk, memory.

Each check says what it found and, when it fails, what to install or change, so a
run stops before building instead of failing with "no space left on device" halfway.
"""

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .stack import parse_size

OK, WARN, FAIL = "ok", "warn", "FAIL"
# Oldest versions kindling is known to need: podman 4 for `podman image exists`/label
# filters as used here, kind 0.20 for the podman provider's stability, kubectl 1.25.
MINIMUM_VERSIONS = {"podman": (4, 0), "docker": (20, 10), "kind": (0, 20), "kubectl": (1, 25)}
INSTALL_HINTS = {
    "podman": "install podman (Debian/Ubuntu: apt-get install podman runc)",
    "docker": "install Docker Engine, or set `engine: podman` in the stack",
    "kind": "install kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
    "kubectl": "install kubectl: https://kubernetes.io/docs/tasks/tools/",
}
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


def version_check(tool: str, found: str | None) -> Check:
    if found is None:
        return Check(tool, FAIL, "not found on PATH", INSTALL_HINTS[tool])
    version = parse_version(found)
    minimum = MINIMUM_VERSIONS[tool]
    wanted = ".".join(map(str, minimum))
    if version is None:
        return Check(tool, WARN, f"version unknown ({found.strip()[:60]!r}); needs {wanted} or newer")
    if version[:2] < minimum:
        return Check(tool, FAIL, f"{'.'.join(map(str, version))} is older than {wanted}",
                     f"upgrade {tool}: {INSTALL_HINTS[tool]}")
    return Check(tool, OK, f"{'.'.join(map(str, version))} (needs {wanted}+)")


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
        return Check(label, FAIL, detail, f"free space under {existing} (old images: `podman image prune`; "
                                          "old runs: the runs/ folder), or lower KINDLING_MIN_FREE_DISK")
    return Check(label, OK, detail)


def memory_check(largest_build: int, budget: int, available: int) -> Check:
    detail = f"{_gib(available)} available; build budget {_gib(budget)}; largest declared build {_gib(largest_build)}"
    if largest_build and available and largest_build > available:
        return Check("memory", FAIL, detail, "free memory, or lower the service's build.memory if it is too high")
    if largest_build and budget and largest_build > budget:
        return Check("memory", WARN, detail + ": that build will run alone",
                     "raise --memory-budget if the machine can take more")
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
    """Each tool's version text, or None when it is not installed."""
    found = {}
    probes = {
        engine: [engine, "version", "--format", "{{.Client.Version}}"],
        "kind": ["kind", "version"],
        "kubectl": ["kubectl", "version", "--client", "-o", "json"],
    }
    for tool, argv in probes.items():
        if shutil.which(argv[0]) is None:
            found[tool] = None
            continue
        # Every kind call carries the provider, this one too (see kind.KindCluster.env).
        env = {"KIND_EXPERIMENTAL_PROVIDER": engine} if tool == "kind" and engine == "podman" else None
        result = runner.run(argv, env=env, check=False, mutating=False, timeout=30)
        text = result.stdout
        if tool == "kubectl":
            try:
                text = json.loads(text)["clientVersion"]["gitVersion"]
            except (ValueError, KeyError, TypeError):
                pass
        found[tool] = text if result.exit_code == 0 else None
    return found


def image_store(runner, engine: str) -> Path | None:
    argv = [engine, "info", "--format", "{{.Store.GraphRoot}}" if engine == "podman" else "{{.DockerRootDir}}"]
    result = runner.run(argv, check=False, mutating=False, timeout=60)
    text = result.stdout.strip()
    return Path(text) if result.exit_code == 0 and text else None


def run_checks(stack, runner, home: Path, budget: int, available: int, env=None) -> list:
    env = os.environ if env is None else env
    versions = tool_versions(runner, stack.engine)
    checks = [version_check(tool, versions[tool]) for tool in (stack.engine, "kind", "kubectl")]
    provider = stack.engine if stack.engine == "podman" else "docker"
    checks.append(Check("kind provider", OK, f"{provider} (kindling sets KIND_EXPERIMENTAL_PROVIDER="
                                              f"{provider} on every kind call)" if provider == "podman"
                        else "docker (kind's default)"))
    built = sum(1 for s in stack.services.values() if s.built)
    needed = disk_needed(built, env)
    store = image_store(runner, stack.engine) if versions[stack.engine] else None
    if store is not None:
        checks.append(disk_check("image store", store, needed))
    checks.append(disk_check("run folder", home, needed))
    largest = max((s.build.memory for s in stack.services.values() if s.built), default=0)
    checks.append(memory_check(largest, budget, available))
    return checks
