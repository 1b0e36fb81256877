"""The inner loop, measured (`invoke bench.inner`): a generated Go service rebuilt after a one-line
change without and with build caches, `deploy.<service>` end to end after such a change on a real
kind cluster, and a check that caches change speed only: an image built with caches and one built
from scratch without them hold the same files and their binaries print the same.
"""

import hashlib
import sys
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .. import cli, locks, runs, samples
from ..adapters.engine import Engine, Podman
from ..build import cachelocks
from ..errors import KindlingError
from ..plan import Outcome, StepKind, step_id
from ..procs.runner import Runner
from . import gosample

SERVICE = "api"


@dataclass
class Build:
    seconds: float
    ref: str
    compiled: set  # the module's packages `go build -v` compiled


@dataclass
class Figures:
    packages: int
    lines: int
    go_image: str
    builds: dict = field(default_factory=dict)  # label -> Build
    digests: set = field(default_factory=set)  # inputs digests built: their stage images are removed
    same_files: bool = False
    files: int = 0
    outputs: tuple = ()  # what each image's binary printed: (with caches, without)
    deploy_seconds: float = 0.0
    deploy_build_seconds: float = 0.0
    deploy_outcome: str = ""
    deployed_changed: bool = False


def measure(
    folder: Path, make_environment, teardown, *, packages: int, functions: int, quiet: bool = True
) -> Figures:
    """make_environment(stack_path, home, quiet, **options) -> Environment; teardown(stack_path, home)."""
    engine = Podman(Runner())
    base = samples.ensure_base_image(engine)
    go_image = gosample.ensure_go_image(engine, base)
    project = f"inner{uuid.uuid4().hex[:6]}"
    stack_folder, home = folder / "stack", folder / "home"
    context = stack_folder / "src" / SERVICE
    lines = gosample.write_service(context, packages, functions)
    options = dict(name="bench-inner", project=project, go_image=go_image, base_image=base, service=SERVICE)
    with_caches = gosample.write_stack(stack_folder, caches=("go",), **options)
    without_caches = gosample.write_stack(
        stack_folder, caches=(), stack_file="stack-no-caches.yaml", **options
    )
    figures = Figures(packages, lines, go_image)

    def build(label, stack_path, **settings) -> Build:
        env = make_environment(stack_path, home, quiet, **settings)
        report = env.execute(env.image_steps([SERVICE]), label=f"bench {label}")
        step = next(s for s in report["steps"] if s["id"] == step_id(StepKind.IMAGE, SERVICE))
        if step["outcome"] != Outcome.BUILT.value:
            raise KindlingError(f"bench.inner: {label}: expected a build, got {step['outcome']!r}")
        log = env.ctx.log(StepKind.IMAGE, SERVICE).read_text(errors="replace")
        figures.digests.add(env.ctx.run.current_images()[SERVICE]["digest"])
        figures.builds[label] = Build(step["seconds"], env.ctx.refs[SERVICE], gosample.compiled_packages(log))
        return figures.builds[label]

    try:
        build("cold", with_caches)  # empty caches: it fills them
        gosample.set_version(context, "2")
        build("rebuild without caches", without_caches)
        gosample.set_version(context, "3")
        cached = build("rebuild with caches", with_caches)
        # The same sources from scratch (--no-cache: no layer of the build above is reused).
        fresh = build("check: no caches, no layer cache", without_caches, no_cache=True)
        files = image_files(engine, cached.ref, folder)
        figures.same_files, figures.files = files == image_files(engine, fresh.ref, folder), len(files)
        figures.outputs = (_run_image(engine, cached.ref), _run_image(engine, fresh.ref))
        _deploy(figures, make_environment, with_caches, home, context, quiet)
    finally:
        cachelocks.release_all()
        teardown(with_caches, home)
        gosample.remove_stage_images(engine, figures.digests - {None})
    return figures


def _deploy(figures: Figures, make_environment, stack_path: Path, home: Path, context: Path, quiet: bool):
    """The stack up on a real cluster, then a one-line change and `invoke deploy.api`, as a user runs it."""
    env = make_environment(stack_path, home, quiet)
    env.execute(env.setup_steps(env.ctx.stack.order()), label="bench inner setup")
    before = env.ctx.cluster_state.deployed().get(SERVICE)
    gosample.set_version(context, "4")
    locks.release_all()  # the deploy below is another process, as a user's would be
    cachelocks.release_all()
    clock = time.monotonic()
    result = Runner().run(
        [sys.executable, "-m", "invoke", "--search-root", str(cli.PROJECT_ROOT), f"deploy.{SERVICE}"],
        env={"E2E_STACK": str(stack_path), "KINDLING_HOME": str(home), "NO_COLOR": "1"},
        check=False,
        timeout=1800,
    )
    figures.deploy_seconds = time.monotonic() - clock
    if result.exit_code != 0:
        raise KindlingError("bench.inner: deploy failed:\n" + (result.stdout + result.stderr)[-3000:])
    steps = {s["id"]: s for s in runs.read_json(runs.reports(home)[-1], {}).get("steps", [])}
    image = steps.get(step_id(StepKind.IMAGE, SERVICE), {})
    figures.deploy_build_seconds, figures.deploy_outcome = image.get("seconds", 0.0), image.get("outcome", "")
    ctx = make_environment(stack_path, home, True).ctx
    after = ctx.cluster_state.deployed().get(SERVICE)
    figures.digests.add((ctx.run.current_images().get(SERVICE) or {}).get("digest"))
    figures.deployed_changed = bool(after) and after != before


def image_files(engine: Engine, ref: str, folder: Path) -> dict:
    """Every path of an image's file system -> (type, mode, owner, size, content hash or link
    target), read from `podman export` of a container created (not started) from it."""
    name = f"kindling-inner-{uuid.uuid4().hex[:8]}"
    archive = folder / f"{name}.tar"
    engine.runner.run([engine.program, "create", "--name", name, ref], timeout=120)
    try:
        engine.runner.run([engine.program, "export", "-o", str(archive), name], timeout=600)
        found = {}
        with tarfile.open(archive) as tar:
            for member in tar:
                content = member.linkname
                if member.isfile():
                    digest = hashlib.sha256()
                    with tar.extractfile(member) as handle:
                        for chunk in iter(lambda: handle.read(1 << 20), b""):
                            digest.update(chunk)
                    content = digest.hexdigest()
                found["/" + member.name.lstrip("./")] = (
                    member.type,
                    member.mode,
                    member.uid,
                    member.gid,
                    member.size,
                    content,
                )
        return found
    finally:
        engine.runner.run([engine.program, "rm", "-f", name], check=False, timeout=120)
        archive.unlink(missing_ok=True)


def _run_image(engine: Engine, ref: str) -> str:
    return engine.runner.run([engine.program, "run", "--rm", ref], timeout=120).stdout.strip()


def report_lines(figures: Figures) -> list:
    builds = figures.builds
    cold, plain = builds["cold"], builds["rebuild without caches"]
    cached = builds["rebuild with caches"]
    same_output = len(set(figures.outputs)) == 1

    def row(label, text):
        return f"  {label:<42} {text}"

    def timed(build):
        return f"{build.seconds:7.1f} s   compiled {len(build.compiled)} packages"

    deploy = (
        f"{figures.deploy_seconds:7.1f} s   (invoke, real kind cluster; its build "
        f"{figures.deploy_build_seconds:.1f} s, {figures.deploy_outcome or 'no build'}; "
        f"rolled out: {'yes' if figures.deployed_changed else 'NO'})"
    )
    check = (
        f"{'same' if figures.same_files else 'DIFFERENT'} files ({figures.files} paths, contents "
        f"hashed); binaries print {'the same' if same_output else 'DIFFERENT output'}: "
        f"{figures.outputs[0]!r}"
    )
    return [
        f"bench.inner: a Go service of {figures.packages} packages, {figures.lines} generated lines "
        f"({figures.go_image}, CGO_ENABLED=0), real podman, caches: [go]",
        row("cold build (empty caches)", timed(cold)),
        row("one-line change, rebuild without caches", timed(plain)),
        row("one-line change, rebuild with caches", timed(cached)),
        row("rebuild with / without caches", f"{cached.seconds / plain.seconds:7.2f}     (goal <= 0.35)"),
        row(f"deploy.{SERVICE} after a one-line change", deploy),
        row("image built with caches vs from scratch", check),
    ]
