"""`invoke bench.*`: speed measured in one run and printed as ratios.

Each benchmark generates a stack of busybox services whose builds sleep for set
times (standing in for compilers), runs it several ways against real podman, and
removes every image it built.
"""

import io
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from invoke import Collection, task

from .libs import cli, locks, runs, samples
from .libs import report as report_lib
from .libs.adapters.engine import Podman
from .libs.bench import inner as innerloop  # named apart from the tasks scale, peers and inner
from .libs.bench import peers as peerbench
from .libs.bench import peerworkload, setupbench
from .libs.bench import scale as scalebench
from .libs.console import Console
from .libs.environment import Environment
from .libs.errors import KindlingError
from .libs.phases import cluster as cluster_phase
from .libs.phases import teardown as teardown_phase
from .libs.plan import Outcome, StepKind
from .libs.procs.runner import Runner
from .libs.settings import build_settings, process_environment
from .libs.stack.model import load_stack


def _scaled(seconds: float, scale: float) -> str:
    return f"{seconds * scale:g}"


def _environment(stack_path, home, quiet, **options):
    env = {**process_environment(), "KINDLING_HOME": str(home)}
    console = Console(io.StringIO() if quiet else None, env=env)
    stack = load_stack(stack_path, env=env)
    return Environment(stack, build_settings(stack, env, **options), env, console=console)


def _teardown(stack_path, home, **options):
    return teardown_phase.teardown(_environment(stack_path, home, True).ctx, **options)


@task(
    help={
        "scale": "Multiply the build times 1 s, 3 s and 5 s by this factor (default 1).",
        "verbose": "Show each build's progress lines.",
    }
)
@cli.reports_errors
def build(c, scale=1.0, verbose=False):
    """Build 3 images (1 s, 3 s, 5 s RUN steps) serially, then in parallel; print the ratios."""
    scale = float(scale)
    with tempfile.TemporaryDirectory(prefix="kindling-bench-") as folder:
        folder = Path(folder)
        base = samples.ensure_base_image(Podman(Runner()))
        project = f"bench{uuid.uuid4().hex[:6]}"
        path = samples.write_stack(
            folder,
            {
                "fast": {"sleep": _scaled(1, scale)},
                "medium": {"sleep": _scaled(3, scale)},
                "slow": {"sleep": _scaled(5, scale)},
            },
            name="bench-build",
            project=project,
            base_image=base,
        )
        results = {}
        try:
            for label, jobs in (("serial", 1), ("parallel", 3)):
                env = _environment(path, folder / "home", not verbose, no_cache=True, jobs=jobs)
                report = env.execute(env.image_steps(["fast", "medium", "slow"]), label=f"bench {label}")
                results[label] = report
        finally:
            _teardown(path, folder / "home", keep_cluster=True)
    serial, parallel = results["serial"]["wall_seconds"], results["parallel"]["wall_seconds"]
    slowest = max(s["seconds"] for s in results["serial"]["steps"])
    print(
        "bench.build: 3 images, RUN steps of "
        f"{_scaled(1, scale)} s, {_scaled(3, scale)} s, {_scaled(5, scale)} s (real podman, --no-cache)"
    )
    print(f"  serial wall            {serial:7.1f} s")
    print(f"  parallel wall          {parallel:7.1f} s")
    print(f"  slowest single build   {slowest:7.1f} s")
    print(f"  serial / parallel      {serial / parallel:7.2f} x")
    print(f"  parallel / slowest     {parallel / slowest:7.2f}   (1.00 is the floor)")


def _kind_version() -> str:
    result = Runner().run(["kind", "version"], check=False, mutating=False, timeout=30)
    return result.stdout.split()[1] if result.exit_code == 0 and len(result.stdout.split()) > 1 else "?"


@task(
    help={
        "scale": "Seconds per Kubernaut second: builds are 82/150/233 s times this (default 0.03).",
        "verbose": "Show every step's progress lines.",
        "timelines": "Also print each cold run's timeline (steps, starts, durations, critical path).",
    }
)
@cli.reports_errors
def setup(c, scale=0.03, verbose=False, timelines=False):
    """Cold setups (serial, phased, batched, pipelined), a warm re-run and a partial redeploy; print ratios.

    It uses the kind and kubectl on PATH and KINDLING_NODE_IMAGE: a real cluster, or the test
    environment's (eval "$(scripts/testenv.sh env)")."""
    scale = float(scale)
    with tempfile.TemporaryDirectory(prefix="kindling-bench-") as folder:
        folder = Path(folder)
        home = folder / "home"
        path = setupbench.aianalysis_shaped_stack(folder / "stack", scale)
        rows = []
        try:
            for strategy in ("serial", "phased", "batched", "pipelined"):
                _teardown(path, home)
                env = _environment(path, home, not verbose, strategy=strategy, no_cache=True)
                report = env.execute(env.setup_steps(env.ctx.stack.order()), label=f"bench {strategy}")
                rows.append((f"cold {strategy}", report))
            env = _environment(path, home, not verbose)
            cluster_phase.forget_ensured(env.ctx)  # as a new `invoke e2e.setup` would, check the cluster
            warm = env.execute(env.setup_steps(env.ctx.stack.order()), label="bench warm")
            rows.append(("warm re-run", warm))
            deployed_before = _environment(path, home, True).ctx.cluster_state.deployed()
            (folder / "stack" / "src" / "aianalysis" / "version.txt").write_text("changed\n")
            locks.release_all()  # the redeploy below is another process, as a user's would be
            earlier = set(runs.reports(home))
            started = time.monotonic()
            partial = subprocess.run(
                [sys.executable, "-m", "invoke", "--search-root", str(cli.PROJECT_ROOT), "deploy.aianalysis"],
                env={
                    **process_environment(),
                    "E2E_STACK": str(path),
                    "KINDLING_HOME": str(home),
                    "NO_COLOR": "1",
                },
                capture_output=True,
                text=True,
            )
            partial_wall = time.monotonic() - started
            if partial.returncode != 0:
                raise KindlingError("partial redeploy failed:\n" + partial.stderr[-2000:])
            deployed_after = _environment(path, home, True).ctx.cluster_state.deployed()
            own = setupbench.own_step_seconds(
                [p for p in runs.reports(home) if p not in earlier], "aianalysis"
            )
        finally:
            _teardown(path, home)
    changed = sorted(n for n in deployed_after if deployed_after[n] != deployed_before.get(n))
    warm_builds = [
        s["id"]
        for s in warm["steps"]
        if s["kind"] == StepKind.IMAGE.value and s["outcome"] == Outcome.BUILT.value
    ]
    serial = rows[0][1]["wall_seconds"]
    print(
        "bench.setup: AIAnalysis-shaped stack (postgresql, redis, 3 builds of "
        + ", ".join(f"{v * scale:.2f} s" for v in setupbench.KUBERNAUT_BUILD_SECONDS.values())
        + f"), real podman, kind {_kind_version()}"
        + (
            f", node image {node_image}"
            if (node_image := process_environment().get("KINDLING_NODE_IMAGE"))
            else ""
        )
    )
    print(f"  {'run':<20} {'wall':>8} {'/ serial':>9} {'critical path':>14} {'wall / cp':>10}")
    for label, report in rows:
        print(
            f"  {label:<20} {report['wall_seconds']:7.1f}s {report['wall_seconds'] / serial:9.2f} "
            f"{report['critical_path_seconds']:13.1f}s {report['wall_over_critical_path'] or 0:10.2f}"
        )
    print(
        f"  {'partial redeploy':<20} {partial_wall:7.1f}s {partial_wall / serial:9.2f}   "
        f"(deploy.aianalysis via invoke, pre= chain included)"
    )
    cold = dict(rows)
    pipelined, phased = cold["cold pipelined"]["wall_seconds"], cold["cold phased"]["wall_seconds"]
    print(f"  pipelined / critical path  {cold['cold pipelined']['wall_over_critical_path']:.2f}")
    batched = cold["cold batched"]["wall_seconds"]
    print(f"  pipelined / phased         {pipelined / phased:.2f}   (Kubernaut, December 2025)")
    print(f"  pipelined / batched        {pipelined / batched:.2f}   (Kubernaut's DD-TEST-002 today)")
    print(
        f"  warm / cold pipelined      {warm['wall_seconds'] / pipelined:.2f}   (builds in warm run: "
        f"{len(warm_builds)}; commands {warm['commands']['total']}, mutating {warm['commands']['mutating']})"
    )
    print(f"  partial redeploy changed   {', '.join(changed) or 'nothing'}")
    print(
        f"  partial / its own steps    {partial_wall / max(sum(own.values()), 0.001):.2f}   ("
        + " + ".join(f"{kind.value} {seconds:.1f} s" for kind, seconds in own.items())
        + "; the rest: Invoke, the pre= chain's checks, kindling's start)"
    )
    for label, report in rows if timelines else ():
        print(f"\n{label}:\n{report_lib.table(report)}")


def _stored_bytes(storage: Path) -> int:
    return sum(p.stat().st_size for p in storage.rglob("*") if p.is_file())


@task(help={"size": "Size of the big layer in MiB (default 200)."})
@cli.reports_errors
def reload(c, size=200):
    """Bytes a reload moves: registry push of a changed image against the archive `kind load` sends."""
    size = int(size)
    engine = Podman(Runner())
    base = samples.ensure_base_image(engine)
    with tempfile.TemporaryDirectory(prefix="kindling-bench-") as folder:
        folder = Path(folder)
        context = folder / "context"
        context.mkdir()
        (context / "version.txt").write_text("1\n")
        # The big layer first, the small changing layer last: the usual shape of an app image.
        (context / "Containerfile").write_text(
            f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\n"
            f'RUN ["/bin/busybox", "dd", "if=/dev/urandom", "of=/big", "bs=1048576", "count={size}"]\n'
            "COPY version.txt /version.txt\n"
        )
        project = f"bench{uuid.uuid4().hex[:6]}"
        refs = []
        with samples.local_registry(folder) as (host, storage):
            try:
                sizes = {}
                for version in ("1", "2"):
                    (context / "version.txt").write_text(version + "\n")
                    ref = f"{host}/{project}/app:v{version}"
                    refs.append(ref)
                    engine.build(ref, context / "Containerfile", context, args={"BASE_IMAGE": base})
                    before = _stored_bytes(storage)
                    engine.push(ref, tls_verify=False)
                    sizes[f"push v{version}"] = _stored_bytes(storage) - before
                    archive = folder / f"v{version}.tar"
                    engine.save(ref, archive)
                    sizes[f"archive v{version}"] = archive.stat().st_size
                    archive.unlink()
            finally:
                engine.remove_images(refs)
    reload_registry, reload_archive = sizes["push v2"], sizes["archive v2"]
    print(
        f"bench.reload: an image with a {size} MiB layer, then a reload after a one-line change "
        "(real podman, real registry)"
    )
    print(
        f"  first load:  registry push {_mib(sizes['push v1'])}, "
        f"archive (kind load) {_mib(sizes['archive v1'])}"
    )
    print(f"  reload:      registry push {_mib(reload_registry)}, archive (kind load) {_mib(reload_archive)}")
    print(f"  reload bytes, archive / registry: {reload_archive / max(reload_registry, 1):.0f} x")


@task(
    help={
        "sizes": f"Numbers of services to measure, comma-separated (default {scalebench.DEFAULT_SIZES}).",
        "archive-baseline": "Also set the largest stack up cold once more with archive-file loads (as where "
        "streaming is unavailable) and print the bytes both wrote to disk (default on).",
    }
)
@cli.reports_errors
def scale(c, sizes=scalebench.DEFAULT_SIZES, archive_baseline=True):
    """Cold and warm `e2e.setup` of stacks of 3, 20 and 50 services: wall times, commands, disk bytes.

    It uses the kind and kubectl on PATH and KINDLING_NODE_IMAGE: a real cluster, or the test
    environment's (eval "$(scripts/testenv.sh env)")."""
    counts = scalebench.parse_sizes(sizes)
    base = samples.ensure_base_image(Podman(Runner()))
    with tempfile.TemporaryDirectory(prefix="kindling-bench-") as folder:
        bench = scalebench.ScaleBench(Path(folder), cli.PROJECT_ROOT, Runner(), process_environment())
        rows, baseline = bench.run(counts, base, archive_baseline=archive_baseline)
    print(scalebench.header(counts, _kind_version(), process_environment().get("KINDLING_NODE_IMAGE", "")))
    print(scalebench.table(rows))
    if len(rows) > 1:
        print(scalebench.ratios(rows))
    if baseline:
        print(scalebench.baseline_lines(baseline, counts[-1]))


@task(
    help={
        "packages": "Generated Go packages in the service (default 8).",
        "functions": "Generated types and functions per package (default 300; about 25 lines each).",
        "verbose": "Show every step's progress lines.",
    }
)
@cli.reports_errors
def inner(c, packages=8, functions=300, verbose=False):
    """The inner loop: a Go service rebuilt after a one-line change without and with build caches,
    and deploy.<service> end to end on a real kind cluster (KINDLING_NODE_IMAGE, as bench.setup)."""
    with tempfile.TemporaryDirectory(prefix="kindling-bench-") as folder:
        figures = innerloop.measure(
            Path(folder),
            _environment,
            _teardown,
            packages=int(packages),
            functions=int(functions),
            quiet=not verbose,
        )
    for line in innerloop.report_lines(figures):
        print(line)


@task(
    help={
        "sizes": f"Numbers of services, comma-separated (default {peerbench.DEFAULT_SIZES}).",
        "repeat": "Repetitions of each tool's block, alternating which goes first "
        f"(default {peerbench.DEFAULT_REPEAT}).",
        "verbose": "Print each command's wall time as it ends.",
    }
)
@cli.reports_errors
def peers(c, sizes=peerbench.DEFAULT_SIZES, repeat=peerbench.DEFAULT_REPEAT, verbose=False):
    """kindling against Skaffold on the same generated stacks and cluster: cold, warm, one service changed.

    It needs the test environment with its peers (scripts/testenv.sh build --peers, then
    eval "$(scripts/testenv.sh env)"): Skaffold, kind, kubectl and KINDLING_NODE_IMAGE."""
    skaffold = shutil.which("skaffold")
    if skaffold is None:
        raise KindlingError(
            "bench.peers needs skaffold on PATH: scripts/testenv.sh build --peers, "
            'then eval "$(scripts/testenv.sh env)"'
        )
    counts = scalebench.parse_sizes(sizes)
    repeat = int(repeat)
    if repeat < 1:
        raise KindlingError(f"--repeat {repeat}: give 1 or more repetitions (3 for medians worth reading)")
    version = Runner().run([skaffold, "version"], check=False, mutating=False, timeout=30).stdout.strip()
    base = samples.ensure_base_image(Podman(Runner()))
    results = []
    with tempfile.TemporaryDirectory(prefix="kindling-bench-") as folder:
        bench = peerbench.PeerBench(Path(folder), cli.PROJECT_ROOT, process_environment(), skaffold, verbose)
        bench.prepare()
        for count in counts:
            results.append((count, *bench.measure(count, repeat, base)))
    print(
        f"bench.peers: kindling against Skaffold {version} (podman API socket; kind load docker-image), "
        f"{', '.join(map(str, counts))} services, {repeat} alternating repetitions; real podman, "
        f"kind {_kind_version()}, node image {process_environment().get('KINDLING_NODE_IMAGE', '?')}; "
        f"builds {peerworkload.BUILD_SECONDS} s each, {peerworkload.CONCURRENCY} at once"
    )
    measured = [(count, m) for count, _, runs_of_size, _ in results for m in runs_of_size]
    print(peerbench.table(peerbench.summarize(measured)))
    for count, cluster_seconds, _, notes in results:
        print(f"  cluster for N = {count}: made once, apart from both, in {cluster_seconds:.1f} s")
        for note in notes:
            print(f"  note: {note}")


def _mib(value: int) -> str:
    return f"{value / 1024**2:8.2f} MiB" if value >= 1024**2 else f"{value / 1024:8.1f} KiB"


ns = Collection("bench")
ns.add_task(build)
ns.add_task(setup)
ns.add_task(reload)
ns.add_task(inner)
ns.add_task(scale)
ns.add_task(peers)
