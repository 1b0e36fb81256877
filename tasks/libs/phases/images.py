"""The images phase: each service's image found by its inputs digest, built, or pulled."""

import re
from pathlib import Path

from .. import buildcaches, buildmounts, cache, images
from ..context import RunContext
from ..engine import DIGEST_LABEL, STACK_LABEL
from ..errors import CommandFailed, KindlingError
from ..plan import Outcome, StepKind

TRANSIENT_BUILD_FAILURE = re.compile(r"server probably quit", re.I)


def ensure_image(ctx: RunContext, name) -> Outcome:
    """The image of one service, built only when no image with the same inputs exists."""
    service = ctx.stack.services[name]
    log = ctx.log(StepKind.IMAGE, name)
    if not service.built:
        ctx.refs[name] = service.image
        if ctx.snapshot.image_exists(service.image):
            return Outcome.PRESENT
        ctx.engine.pull(service.image, log_path=log, timeout=ctx.timeout("build"))
        return Outcome.PULLED
    settings = ctx.settings
    build = service.build
    args = build.build_args(settings.coverage)
    # Caches and mounts are no part of the digest: they change how fast a build is, not its output.
    digest = cache.build_digest(build.containerfile, build.context, args, build.target)
    naming = ctx.stack.image_name
    repository = images.repository(ctx.stack.project, name, ctx.registry, naming)
    if settings.image_tag and not settings.no_cache:
        ref = images.local_ref(ctx.stack.project, name, settings.image_tag, ctx.registry, naming)
        if ctx.snapshot.image_exists(ref):
            # Provided from outside (e.g. CI artifacts): used as is, never removed by teardown.
            ctx.refs[name] = ref
            ctx.run.record_image(name, {"ref": ref, "digest": None, "built_by_kindling": False})
            return Outcome.PRESENT
    if not settings.no_cache:
        found = ctx.snapshot.find_built(repository, digest)
        if found:
            ctx.refs[name] = found[0]
            ctx.run.record_image(name, {"ref": found[0], "digest": digest, "built_by_kindling": True})
            return Outcome.CACHED
    ref = images.local_ref(ctx.stack.project, name, ctx.new_tag(name), ctx.registry, naming)
    ctx.console.state("image", name, "building", str(log))
    labels = {DIGEST_LABEL: digest, STACK_LABEL: ctx.stack.name}
    for attempt in (1, 2):
        try:
            ctx.engine.build(
                ref,
                build.containerfile,
                build.context,
                args=args,
                target=build.target,
                labels=labels,
                no_cache=settings.no_cache,
                log_path=log,
                mounts=buildcaches.mounts(
                    ctx.stack, name, build, ctx.home, env=ctx.env, say=ctx.console.line, dry_run=ctx.dry_run
                )
                + buildmounts.volumes(build),
                timeout=ctx.timeout("build"),
            )
            break
        except CommandFailed as exc:
            # podman's service can die under load ("server probably quit", exit 125): once more.
            if attempt == 2 or exc.returncode != 125 or not TRANSIENT_BUILD_FAILURE.search(exc.tail):
                raise
    if not ctx.dry_run and not ctx.engine.image_exists(ref):
        raise KindlingError(f"{name}: the build succeeded but {ref} is not in the image store")
    ctx.refs[name] = ref
    if not ctx.dry_run:
        ctx.run.record_image(name, {"ref": ref, "digest": digest, "built_by_kindling": True})
    return Outcome.BUILT


def import_archives(ctx: RunContext, folder) -> list:
    """Load image archives (e.g. CI artifacts) into the engine; kindling did not build these."""
    folder = Path(folder)
    archives = sorted(folder.glob("*.tar"))
    if not archives:
        raise KindlingError(f"--images-from {folder}: no *.tar image archives there")
    loaded = []
    for archive in archives:
        loaded += ctx.engine.load_archive(archive, timeout=ctx.timeout("save"))
    return loaded
