"""`invoke build`: the stack's images, one after another or concurrently."""

from pathlib import Path

from invoke import Collection

from .libs import cli, taskoptions
from .libs.errors import KindlingError


@taskoptions.task(
    "parallel",
    "jobs",
    "only",
    "keep_going",
    "no_cache",
    "memory_budget",
    "dry_run",
    "registry",
    "save_to",
    "push",
    "base_images",
    name="all",
    default=True,
    help={
        "jobs": "With --parallel: at most this many builds at once (default 4).",
        "no-cache": "Build even when an image with the same inputs exists "
        "(and pass --no-cache to the engine).",
        "registry": "Tag the images for this registry (HOST[:PORT]; also IMAGE_REGISTRY) "
        "instead of localhost/.",
    },
)
@cli.reports_errors
def build_images(
    c,
    parallel,
    jobs,
    only,
    keep_going,
    no_cache,
    memory_budget,
    dry_run,
    registry,
    save_to,
    push,
    base_images,
):
    """Build the stack's images (one after another, or --parallel)."""
    env = cli.environment(
        c,
        dry_run=dry_run,
        no_cache=no_cache,
        keep_going=keep_going,
        jobs=(jobs or 4) if parallel else 1,
        registry=registry,
        memory_budget=cli.parse_budget(memory_budget),
        base_images=base_images,
    )
    ctx = env.ctx
    stack = ctx.stack
    if push and not ctx.settings.delivery.pushes:
        raise KindlingError(
            f"build --push: stack {stack.name} has no registry to push to; pass --registry "
            "HOST[:PORT], set IMAGE_REGISTRY, or add `registry: HOST[:PORT]` to "
            f"{stack.path}"
        )
    names = stack.select(only) if only else list(stack.order())
    names = [n for n in names if stack.services[n].built]
    if not names:
        raise KindlingError(f"{stack.path}: no service to build (services with `build:`)")
    how = f"parallel, {ctx.settings.limits['build']} at once" if parallel else "serial"
    ctx.console.line(
        f"building {len(names)} image(s) of stack {stack.name} ({how}); logs in {ctx.run.folder / 'logs'}"
    )
    # Pushes and saves are steps too, each after every build: a failed build pushes or saves nothing.
    steps = env.build_steps(names, push=push, save_to=Path(save_to) if save_to else None)
    result = env.execute(steps, label="build")
    for name in names:
        ctx.console.line(f"  {name:<24} {ctx.refs.get(name, '-')}")
        if push:
            ctx.console.line(f"  pushed {ctx.refs[name]}")
        if save_to:
            ctx.console.line(f"  saved {Path(save_to) / (name + '.tar')}")
    ctx.console.line(f"{len(names)} image(s) in {result['wall_seconds']:.1f} s")


ns = Collection("build")
ns.add_task(build_images)
