"""bench.scale: how a cold and a warm `e2e.setup` grow with the number of services.

For each size, a generated stack (samples.write_stack: tiny busybox images, a Deployment and a
Service each, every even-numbered service depending on an earlier one) gets a cold
`invoke e2e.setup` (a new cluster; every image built, loaded and deployed), then a warm one
(nothing changed), each a process of its own as a user would run it, then `invoke e2e.teardown`.
What each run did is read from its run folder: the command log (every external command, marked
read-only or mutating) and run.json.

Bytes written to disk are those of the setup's whole process tree (invoke, podman, kind and
their children), from the kernel's I/O accounting: getrusage(RUSAGE_CHILDREN).ru_oublock counts
the 512-byte blocks written by reaped descendants, the write_bytes of /proc/PID/io, which counts
a page when it is dirtied, so a file deleted before it reaches the disk still counts: an archive
needs its room while it exists. Writes of the node's containerd (podman runs it outside our
process tree) are the same whichever way an image is loaded, and are not counted.
"""

import resource
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .. import runs, samples
from ..errors import KindlingError
from ..procs.commandlog import read_command_log
from ..procs.runner import Runner, tail

DEFAULT_SIZES = "3,20,50"
MAX_SIZE = 200
SETUP_TIMEOUT = 3600  # seconds for one setup or teardown of the largest stack

# A cold setup as on a host where streaming is unavailable (kind.KindCluster.stream_problem: no
# such path as the stream's), so the same e2e.setup loads through archive files.
ARCHIVE_LOADS = """\
import sys
root = sys.argv[1]
sys.path.insert(0, root)
import tasks.libs.adapters.kind as kind
kind.STDIN_ARCHIVE = "/nonexistent/stdin"
from invoke.main import program
program.run(["invoke", "--search-root", root, *sys.argv[2:]])
"""


def parse_sizes(text: str) -> list:
    """`3,20,50` -> [3, 20, 50]: distinct service counts, ascending."""
    try:
        sizes = sorted({int(part) for part in str(text).split(",") if part.strip()})
    except ValueError:
        sizes = []
    if not sizes or sizes[0] < 1 or sizes[-1] > MAX_SIZE:
        raise KindlingError(
            f"--sizes {text!r}: give service counts from 1 to {MAX_SIZE}, comma-separated, "
            f"e.g. --sizes {DEFAULT_SIZES}"
        )
    return sizes


def service_name(index: int) -> str:
    return f"svc{index:03d}"


def scale_services(count: int) -> dict:
    """`count` services for samples.write_stack; service i (from 1) depends on service i // 2 when
    i is even, so half the services wait for another and the longest chain is about log2(count)."""
    return {
        service_name(i): {"sleep": 0, "depends_on": [service_name(i // 2)] if i % 2 == 0 else []}
        for i in range(1, count + 1)
    }


@dataclass
class Measured:
    wall: float  # seconds, as the user waits for the command
    commands: int  # external commands started (a pipe's two sides count two)
    mutating: int  # of which change something (the rest are read-only queries)
    disk_bytes: int  # written by the setup's process tree
    loads: dict  # outcome of the load steps -> how many (streamed, loaded, on node)


def command_counts(log_text: str) -> tuple:
    """(commands, mutating) that ran, from a command log (dry-run lines are not commands)."""
    ran = [c for c in read_command_log(log_text) if c.ran]
    return sum(c.processes for c in ran), sum(c.processes for c in ran if c.mutating)


def written_by_children() -> int:
    """Bytes written to storage by every reaped descendant of this process so far."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock * 512


class ScaleBench:
    def __init__(self, folder: Path, root: Path, runner: Runner, env: dict):
        self.folder, self.root, self.runner = folder, root, runner
        self.env = dict(env)
        # Tiny images: the preflight's default room per image (for real builds) is not needed.
        self.env.setdefault("KINDLING_MIN_FREE_DISK", "1GiB")
        self.env["NO_COLOR"] = "1"

    def run(self, sizes, base_image: str, archive_baseline=True) -> tuple:
        """For each size a cold and a warm setup, then a teardown; with archive_baseline, one more
        cold setup of the largest stack with archive-file loads (the most loads, so the least
        noise). Returns (rows, baseline): rows of (size, cold, warm), baseline a (streamed cold,
        archive cold) pair for the largest size or None. Every cluster and image made is deleted,
        also when a run fails."""
        rows, baseline = [], None
        for count in sizes:
            stack = samples.write_stack(
                self.folder / f"stack-{count}",
                scale_services(count),
                name=f"scale{count}",
                project=f"scale{uuid.uuid4().hex[:6]}",
                base_image=base_image,
                namespace="scale",
            )
            home = self.folder / f"home-{count}"
            with self._torn_down(stack, home, f"teardown-{count}"):
                cold = self.setup(stack, home, f"cold-{count}")
                warm = self.setup(stack, home, f"warm-{count}")
            rows.append((count, cold, warm))
            if archive_baseline and count == max(sizes):
                with self._torn_down(stack, home, f"teardown-archive-{count}"):
                    baseline = (cold, self.setup(stack, home, f"cold-archive-{count}", archive_loads=True))
        return rows, baseline

    @contextmanager
    def _torn_down(self, stack, home, label):
        """Tear the stack down afterwards; after a failure too, without hiding that failure."""
        try:
            yield
        except BaseException:
            try:
                self.teardown(stack, home, label)
            except KindlingError as exc:
                print(f"bench.scale: the teardown after the failure failed too: {exc}", file=sys.stderr)
            raise
        self.teardown(stack, home, label)

    def _invoke(self, stack: Path, home: Path, label: str, *args, archive_loads=False):
        env = {**self.env, "E2E_STACK": str(stack), "KINDLING_HOME": str(home)}
        if archive_loads:
            argv = [sys.executable, "-c", ARCHIVE_LOADS, str(self.root), *args]
        else:
            argv = [sys.executable, "-m", "invoke", "--search-root", str(self.root), *args]
        log = self.folder / f"{label}.log"
        result = self.runner.run(argv, env=env, log_path=log, timeout=SETUP_TIMEOUT, check=False)
        if result.exit_code != 0:
            raise KindlingError(
                f"bench.scale: `invoke {' '.join(args)}` ({label}) failed with exit code "
                f"{result.exit_code}; its output: {log}\n{tail(log)}"
            )

    def setup(self, stack: Path, home: Path, label: str, archive_loads=False) -> Measured:
        folder_of_runs = home / "runs"
        before = set(folder_of_runs.glob("*"))
        written = written_by_children()
        started = time.monotonic()
        self._invoke(stack, home, label, "e2e.setup", archive_loads=archive_loads)
        wall = time.monotonic() - started
        disk = written_by_children() - written
        folders = sorted(set(folder_of_runs.glob("*")) - before)
        if not folders:
            raise KindlingError(f"bench.scale: {label} left no run folder under {folder_of_runs}")
        commands = mutating = 0
        loads = {}
        for folder in folders:
            log = folder / "commands.log"
            counted = command_counts(log.read_text(encoding="utf-8")) if log.exists() else (0, 0)
            commands, mutating = commands + counted[0], mutating + counted[1]
            for step in runs.read_json(folder / "run.json", {}).get("steps", []):
                if step.get("kind") == "load":
                    loads[step.get("outcome")] = loads.get(step.get("outcome"), 0) + 1
        return Measured(wall, commands, mutating, disk, loads)

    def teardown(self, stack: Path, home: Path, label: str) -> None:
        self._invoke(stack, home, label, "e2e.teardown")


def header(sizes, kind_version: str, node_image: str) -> str:
    node = f", node image {node_image}" if node_image else ""
    return (
        f"bench.scale: a cold, then a warm `invoke e2e.setup` (nothing changed) of "
        f"{', '.join(map(str, sizes))} services (busybox images, a Deployment and a Service each, every "
        f"other one depending on another); real podman, kind {kind_version}{node}"
    )


def table(rows) -> str:
    """rows: (services, cold Measured, warm Measured)."""
    header = (
        "services",
        "cold wall",
        "warm wall",
        "cold cmds",
        "warm cmds",
        "warm mutating",
        "cold disk written",
        "cold loads",
    )
    lines = ["  " + "  ".join(f"{h:>{len(h)}}" for h in header[:-1]) + f"  {header[-1]}"]
    for count, cold, warm in rows:
        cells = (
            count,
            f"{cold.wall:.1f}s",
            f"{warm.wall:.1f}s",
            cold.commands,
            warm.commands,
            warm.mutating,
            mib(cold.disk_bytes),
        )
        lines.append(
            "  "
            + "  ".join(f"{cell:>{len(h)}}" for cell, h in zip(cells, header, strict=False))
            + f"  {load_outcomes(cold)}"
        )
    return "\n".join(lines)


def ratios(rows) -> str:
    """The largest size against the smallest: warm wall time and commands (cold commands beside)."""
    (small, small_cold, small_warm), (large, large_cold, large_warm) = rows[0], rows[-1]
    warm_wall = large_warm.wall / small_warm.wall
    warm_commands = large_warm.commands / max(small_warm.commands, 1)
    cold_commands = large_cold.commands / max(small_cold.commands, 1)
    return "\n".join(
        [
            f"  warm({large}) / warm({small})           {warm_wall:6.2f}   (services x{large / small:.1f})",
            f"  commands({large}) / commands({small})   {warm_commands:6.2f}   "
            f"(warm runs; cold runs {cold_commands:.2f})",
        ]
    )


def baseline_lines(baseline, count: int) -> str:
    """Disk written by a cold setup: archive files against streamed loads."""
    streamed, archive = baseline
    per_image = (archive.disk_bytes - streamed.disk_bytes) / max(count, 1)
    ratio = archive.disk_bytes / max(streamed.disk_bytes, 1)
    return "\n".join(
        [
            f"  disk written by a cold setup of {count} services (its whole process tree):",
            f"    archive files (podman save -o, kind load FILE)  {mib(archive.disk_bytes):>10}   "
            f"loads: {load_outcomes(archive)}",
            f"    streamed (podman save | kind load /dev/stdin)   {mib(streamed.disk_bytes):>10}   "
            f"loads: {load_outcomes(streamed)}",
            f"    archive / streamed                              {ratio:>8.2f} x   "
            f"({mib(int(per_image))} more per image with archive files)",
        ]
    )


def load_outcomes(measured: Measured) -> str:
    return ", ".join(f"{n} {outcome}" for outcome, n in sorted(measured.loads.items())) or "none"


def mib(value: int) -> str:
    return f"{value / 1024**2:.1f} MiB"
