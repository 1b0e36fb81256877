"""bench.peers: kindling against Skaffold on the same work, measured side by side in one run.

One kind cluster from KINDLING_NODE_IMAGE is made once, by `invoke cluster.create`, timed apart
from both tools, and shared. A generated stack of N services (samples.write_stack: a Containerfile
that copies a file of its own and runs a 2 s RUN step; a Deployment and a Service each; no
dependencies, since skaffold.yaml has none) is written twice: as a kindling stack, and as the
skaffold.yaml a Skaffold user writes for it (local build with the same concurrency, kubectl deploy,
the status check on, inputDigest tags).

Skaffold is driven as a podman user must drive it: its Docker client talks to podman's API service
(`podman system service`, DOCKER_HOST=unix://...), and `kind load docker-image`, which Skaffold
runs for a kind context, calls `docker save` and `docker image inspect`, so a `docker` that runs
podman (what Debian's podman-docker installs) is first on its PATH. Skaffold's own commands
(kind, kubectl) go through wrappers that count them and exec the real binaries.

Each repetition runs both tools in turn, the order alternating, each a block of three scenarios,
each a process of its own as a user runs it:
- cold: every service's file rewritten, so each image is new to both tools, in an emptied
  namespace;
- warm: the same command again, nothing changed;
- changed: one service's file rewritten, then kindling `deploy.<svc>`, Skaffold `run` again.
A block starts only when the CPUs are idle, so one tool's leftovers do not slow the other.
"""

import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .. import runs
from ..errors import KindlingError
from ..procs.childenv import child_environment
from ..procs.runner import tail
from .peerworkload import Workload, write_workload
from .scale import command_counts

TOOLS = ("kindling", "skaffold")
SCENARIOS = ("cold", "warm", "changed")
DEFAULT_SIZES = "3,20"
DEFAULT_REPEAT = 3
COMMAND_TIMEOUT = 1800  # seconds for one tool command of the largest stack
IDLE_BUSY = 0.35  # a block starts when the CPUs are at most this busy (the idle cluster uses some)
IDLE_WAIT = 120  # seconds to wait for that before starting anyway, said in the output
# The goals the ratios kindling / Skaffold are held to (by scenario).
GOALS = {"cold": 0.8, "warm": 0.5, "changed": 0.7}


@dataclass
class Measured:
    tool: str
    scenario: str
    wall: float  # seconds, as the user waits for the command
    commands: int  # external commands the tool started
    outside: float | None = None  # kindling: seconds outside its graph (start-up, checks, report)
    before: float | None = None  # kindling: of which before it (run.json's before_graph_seconds)


def cpu_times() -> tuple:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_fraction(before: tuple, after: tuple) -> float:
    busy, total = after[0] - before[0], after[1] - before[1]
    return busy / total if total > 0 else 0.0


def wait_for_idle_cpus(sample=2.0, limit=IDLE_BUSY, patience=IDLE_WAIT) -> tuple:
    """Wait until the CPUs are at most `limit` busy over `sample` seconds; (seconds waited, last
    busy fraction). Gives up after `patience` seconds (the caller records it)."""
    started = time.monotonic()
    while True:
        before = cpu_times()
        time.sleep(sample)
        busy = busy_fraction(before, cpu_times())
        if busy <= limit or time.monotonic() - started > patience:
            return time.monotonic() - started - sample, busy


def summarize(measured: list) -> list:
    """Rows (count, scenario, {tool: (median, min, max)}, {tool: median commands}, kindling's median
    seconds (outside its graph, before it), ratio kindling / Skaffold of the medians); measured:
    (count, Measured)."""
    rows = []
    for count in sorted({c for c, _ in measured}):
        for scenario in SCENARIOS:
            walls, commands, outside, before = {}, {}, [], []
            for c, m in measured:
                if c == count and m.scenario == scenario:
                    walls.setdefault(m.tool, []).append(m.wall)
                    commands.setdefault(m.tool, []).append(m.commands)
                    if m.outside is not None:
                        outside.append(m.outside)
                        before.append(m.before or 0.0)
            if not walls:
                continue
            spread = {t: (statistics.median(w), min(w), max(w)) for t, w in walls.items()}
            counts = {t: statistics.median(c) for t, c in commands.items()}
            ratio = None
            if "kindling" in spread and spread.get("skaffold", (0,))[0] > 0:
                ratio = spread["kindling"][0] / spread["skaffold"][0]
            rows.append(
                (
                    count,
                    scenario,
                    spread,
                    counts,
                    (statistics.median(outside), statistics.median(before)) if outside else None,
                    ratio,
                )
            )
    return rows


def table(rows) -> str:
    def wall(spread):
        if spread is None:
            return "-"
        median, low, high = spread
        return f"{median:5.1f} s ({low:.1f}-{high:.1f})"

    lines = [
        f"  {'N':>3}  {'scenario':<8}  {'Skaffold (min-max)':<22}  {'kindling (min-max)':<22}  "
        f"{'kindling / Skaffold':>19}  {'goal':>6}  {'commands S / k':>14}  "
        f"{'kindling outside graph (before)':>31}"
    ]
    for count, scenario, spread, counts, outside, ratio in rows:
        goal = GOALS[scenario]
        verdict = "" if ratio is None else ("  met" if ratio <= goal else "  missed")
        command_cells = f"{counts.get('skaffold', 0):g} / {counts.get('kindling', 0):g}"
        lines.append(
            f"  {count:>3}  {scenario:<8}  {wall(spread.get('skaffold')):<22}  "
            f"{wall(spread.get('kindling')):<22}  {'-' if ratio is None else f'{ratio:.2f}':>19}  "
            f"{f'<= {goal}':>6}{verdict:<8}{command_cells:>8}  "
            f"{'-' if outside is None else f'{outside[0]:.1f} s ({outside[1]:.1f} s)':>31}"
        )
    return "\n".join(lines)


# Counts Skaffold's kind and kubectl calls. A shell script, not the test environment's recording
# wrappers (tests/testenv/wrap/, Python): a Python start costs about 30 ms a call, which would be
# charged to Skaffold (about 2 s of its N = 20 cold run).
COUNTING_WRAPPER = """#!/bin/sh
echo {name} >> {log}
exec {real} "$@"
"""


class PeerBench:
    """Runs both tools on one workload against one shared cluster; every cluster, image, process and
    file it makes is removed afterwards, also when a run fails."""

    def __init__(self, folder: Path, root: Path, env: dict, skaffold: str, verbose=False):
        self.folder, self.root, self.skaffold, self.verbose = folder, root, skaffold, verbose
        self.env = {**env, "NO_COLOR": "1", "KINDLING_MIN_FREE_DISK": "1GiB"}
        self.bin = folder / "bin"
        self.skaffold_commands = folder / "skaffold-commands.log"
        self.build_containers_before = set()

    # -- the shared set-up -------------------------------------------------------------------

    @contextmanager
    def podman_service(self):
        """podman's Docker-compatible API on a socket of our own, for as long as the bench runs."""
        socket = self.folder / "podman.sock"
        process = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{socket}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=child_environment(self.env),
        )
        try:
            deadline = time.monotonic() + 30
            while not socket.exists():
                if time.monotonic() > deadline or process.poll() is not None:
                    raise KindlingError("bench.peers: `podman system service` did not open its socket")
                time.sleep(0.1)
            yield f"unix://{socket}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def prepare(self) -> None:
        """Skaffold's home; a `docker` that runs podman (for kind load); kind and kubectl wrappers
        that count Skaffold's calls."""
        (self.folder / "skaffold-home").mkdir(parents=True, exist_ok=True)
        self.build_containers_before = set(build_containers())
        self.bin.mkdir(parents=True, exist_ok=True)
        podman = _which("podman")
        (self.bin / "docker").write_text(f'#!/bin/sh\nexec {shlex.quote(podman)} "$@"\n')
        for name in ("kind", "kubectl"):
            (self.bin / name).write_text(
                COUNTING_WRAPPER.format(
                    name=name, log=shlex.quote(str(self.skaffold_commands)), real=shlex.quote(_which(name))
                )
            )
        for shim in self.bin.iterdir():
            shim.chmod(0o755)

    def kindling(self, work: Workload, home: Path, label: str, *args) -> tuple:
        """Run `invoke ARGS` as a user would; (wall seconds, commands, seconds outside its graph, of
        which before it: start-up, preflight, settings, plan)."""
        folder_of_runs = home / "runs"
        before = set(folder_of_runs.glob("*"))
        env = {**self.env, "E2E_STACK": str(work.stack), "KINDLING_HOME": str(home)}
        argv = [sys.executable, "-m", "invoke", "--search-root", str(self.root), *args]
        wall = self._timed(argv, env, label, cwd=work.folder)
        commands, graph, before_graph = 0, 0.0, 0.0
        for run in sorted(set(folder_of_runs.glob("*")) - before):
            log = run / "commands.log"
            commands += command_counts(log.read_text(encoding="utf-8"))[0] if log.exists() else 0
            report = runs.read_json(run / "run.json", {})
            graph += report.get("wall_seconds", 0.0)
            before_graph += report.get("before_graph_seconds", 0.0)
        return wall, commands, max(wall - graph, 0.0), before_graph

    def skaffold_run(self, work: Workload, docker_host: str, label: str) -> tuple:
        """`skaffold run` as a podman user runs it; (wall seconds, commands Skaffold started)."""
        self.skaffold_commands.write_text("")
        env = {
            **self.env,
            "DOCKER_HOST": docker_host,
            "KUBECONFIG": str(self.folder / "skaffold-kubeconfig"),
            "PATH": f"{self.bin}{os.pathsep}{self.env.get('PATH', os.defpath)}",
            "KIND_EXPERIMENTAL_PROVIDER": "podman",
            "HOME": str(self.folder / "skaffold-home"),  # its global config and survey state
        }
        argv = [
            self.skaffold,
            "run",
            "--filename",
            str(work.skaffold),
            "--kube-context",
            f"kind-{work.cluster}",
            "--namespace",
            work.namespace,
            "--cache-file",
            str(self.folder / "skaffold-cache"),
            "--update-check=false",
            "--interactive=false",
        ]
        wall = self._timed(argv, env, label, cwd=work.folder)
        return wall, len(self.skaffold_commands.read_text().splitlines())

    def _timed(self, argv, env, label, cwd) -> float:
        log = self.folder / f"{label}.log"
        started = time.monotonic()
        with open(log, "wb") as out:
            try:
                code = subprocess.run(
                    argv,
                    env=child_environment(env),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=cwd,
                    timeout=COMMAND_TIMEOUT,
                ).returncode
            except subprocess.TimeoutExpired:
                code = 124
        wall = time.monotonic() - started
        if code != 0:
            raise KindlingError(
                f"bench.peers: {Path(argv[0]).name} {' '.join(argv[1:3])} ({label}) failed with exit code "
                f"{code}; its output:\n{tail(log)}"
            )
        if self.verbose:
            print(f"bench.peers: {label} {wall:.1f} s", file=sys.stderr)
        return wall

    def empty_namespace(self, work: Workload, kubeconfig: Path) -> None:
        kubectl = [_which("kubectl"), "--kubeconfig", str(kubeconfig), "--namespace", work.namespace]
        for argv in (
            [*kubectl, "delete", "deployments,services", "--all", "--wait=true", "--timeout=120s"],
            [*kubectl, "wait", "--for=delete", "pods", "--all", "--timeout=120s"],
        ):
            result = subprocess.run(argv, capture_output=True, text=True, timeout=180)
            if result.returncode != 0:
                raise KindlingError(f"bench.peers: emptying {work.namespace} failed: {result.stderr.strip()}")

    def block(self, tool, work, home, docker_host, kubeconfig, label) -> list:
        """One tool's cold, warm and changed runs."""
        waited, busy = wait_for_idle_cpus()
        if waited > 1 or busy > IDLE_BUSY:
            work.notes.append(f"{label}: waited {waited:.0f} s for idle CPUs (then {busy:.0%} busy)")
        self.empty_namespace(work, kubeconfig)
        measured = []
        for scenario in SCENARIOS:
            if scenario == "cold":
                work.rewrite(work.services, f"{label} {uuid.uuid4().hex}")
            elif scenario == "changed":
                work.rewrite(work.services[:1], f"{label} changed {uuid.uuid4().hex}")
            run_label = f"{label}-{scenario}"
            if tool == "skaffold":
                wall, commands = self.skaffold_run(work, docker_host, run_label)
                measured.append(Measured(tool, scenario, wall, commands))
            else:
                args = ("e2e.setup",) if scenario != "changed" else (f"deploy.{work.services[0]}",)
                wall, commands, outside, before = self.kindling(work, home, run_label, *args)
                measured.append(Measured(tool, scenario, wall, commands, outside, before))
        return measured

    def measure(self, count: int, repeat: int, base_image: str) -> tuple:
        """(cluster seconds, [Measured], notes) for one stack size; the cluster is deleted after."""
        work = write_workload(self.folder / f"stack-{count}", count, base_image)
        home = self.folder / f"home-{count}"
        env = {**self.env, "E2E_STACK": str(work.stack), "KINDLING_HOME": str(home)}
        invoke = [sys.executable, "-m", "invoke", "--search-root", str(self.root)]
        try:
            cluster_seconds = self._timed([*invoke, "cluster.create"], env, f"cluster-{count}", work.folder)
            kubeconfig = runs.ClusterState(home, work.cluster).kubeconfig
            shutil.copy(kubeconfig, self.folder / "skaffold-kubeconfig")
            measured = []
            with self.podman_service() as docker_host:
                for rep in range(repeat):
                    order = TOOLS if rep % 2 == 0 else tuple(reversed(TOOLS))
                    for tool in order:
                        label = f"n{count}-{rep + 1}-{tool}"
                        measured += self.block(tool, work, home, docker_host, kubeconfig, label)
            return cluster_seconds, measured, work.notes
        finally:
            self._clean(work, env, invoke)

    def _clean(self, work: Workload, env: dict, invoke: list) -> None:
        """The cluster and kindling's images (e2e.teardown), then Skaffold's images and the build
        containers its builds left: Skaffold's Docker client asks for rm=0 (it does not set
        types.ImageBuildOptions.Remove), so podman keeps each build's working container."""
        problems = []
        try:
            self._timed([*invoke, "e2e.teardown"], env, f"teardown-{len(work.services)}", work.folder)
        except KindlingError as exc:
            problems.append(str(exc))
        listed = subprocess.run(
            ["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        refs = [r for r in listed.stdout.split() if r.startswith(work.skaffold_repository + "/")]
        left = set(build_containers()) - self.build_containers_before
        if left:
            subprocess.run(["podman", "rm", "--force", *sorted(left)], capture_output=True, timeout=300)
        if refs:
            subprocess.run(["podman", "rmi", "--force", *refs], capture_output=True, timeout=300)
        if problems:
            print("\n".join(problems), file=sys.stderr)


def build_containers() -> list:
    """IDs of the build (working) containers in podman's storage, which `podman ps` alone omits."""
    listed = subprocess.run(
        ["podman", "ps", "--all", "--external", "--format", "{{.ID}} {{.Names}}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return [line.split()[0] for line in listed.stdout.splitlines() if "-working-container" in line]


def _which(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise KindlingError(f'bench.peers needs {name} on PATH: eval "$(scripts/testenv.sh env)"')
    return path
