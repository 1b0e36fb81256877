"""`invoke bench.*`: speed measured in one run and printed as ratios.

Each benchmark generates a stack of busybox services whose builds sleep for set
times (standing in for compilers), runs it several ways against real podman, and
removes every image it built.
"""

import io
import os
import tempfile
import uuid
from pathlib import Path

from invoke import Collection, task

from .libs import cli, samples
from .libs.console import Console
from .libs.engine import Engine
from .libs.environment import Environment
from .libs.procs import Runner
from .libs.stack import load_stack


def _scaled(seconds: float, scale: float) -> str:
    return f"{seconds * scale:g}"


def _environment(stack_path, home, quiet, **options):
    env = {**os.environ, "KINDLING_HOME": str(home)}
    console = Console(io.StringIO() if quiet else None)
    return Environment(load_stack(stack_path, env=env), env=env, console=console, **options)


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
        base = samples.ensure_base_image(Engine(Runner()))
        project = f"bench{uuid.uuid4().hex[:6]}"
        path = samples.write_stack(folder, {
            "fast": {"sleep": _scaled(1, scale)},
            "medium": {"sleep": _scaled(3, scale)},
            "slow": {"sleep": _scaled(5, scale)},
        }, name="bench-build", project=project, base_image=base)
        results = {}
        try:
            for label, jobs in (("serial", 1), ("parallel", 3)):
                env = _environment(path, folder / "home", not verbose, no_cache=True, jobs=jobs)
                report = env.execute(env.image_steps(["fast", "medium", "slow"]), label=f"bench {label}")
                results[label] = report
        finally:
            cleanup = _environment(path, folder / "home", True)
            cleanup.teardown(keep_cluster=True)
    serial, parallel = results["serial"]["wall_seconds"], results["parallel"]["wall_seconds"]
    slowest = max(s["seconds"] for s in results["serial"]["steps"])
    print("bench.build: 3 images, RUN steps of "
          f"{_scaled(1, scale)} s, {_scaled(3, scale)} s, {_scaled(5, scale)} s (real podman, --no-cache)")
    print(f"  serial wall            {serial:7.1f} s")
    print(f"  parallel wall          {parallel:7.1f} s")
    print(f"  slowest single build   {slowest:7.1f} s")
    print(f"  serial / parallel      {serial / parallel:7.2f} x")
    print(f"  parallel / slowest     {parallel / slowest:7.2f}   (1.00 is the floor)")


collection = Collection("bench")
collection.add_task(build)
