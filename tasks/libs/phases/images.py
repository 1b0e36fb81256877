"""The images phase: each service's image found by its inputs digest, built, or pulled."""

import re
from pathlib import Path

from .. import imagerefs
from ..adapters.engine import DIGEST_LABEL, STACK_LABEL
from ..build import caches as buildcaches
from ..build import digest as cache
from ..build import ignorefile, inputsets
from ..context import RunContext
from ..errors import CommandFailed, KindlingError
from ..plan import Outcome, StepKind
from ..stack import baseimages, buildmounts

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
        ctx.snapshot.forget_images()
        return Outcome.PULLED
    settings = ctx.settings
    build = service.build
    args = build.build_args(settings.coverage)
    naming = ctx.stack.image_name
    repository = imagerefs.repository(ctx.stack.project, name, ctx.registry, naming)
    if settings.image_tag and not settings.no_cache:
        ref = imagerefs.local_ref(ctx.stack.project, name, settings.image_tag, ctx.registry, naming)
        if ctx.snapshot.image_exists(ref):
            # Provided from outside (e.g. CI artifacts): used as is, never removed by teardown.
            ctx.refs[name] = ref
            ctx.run.record_image(name, {"ref": ref, "digest": None, "built_by_kindling": False})
            return Outcome.PRESENT
    # Caches and mounts are no part of the digest: they change how fast a build is, not its output.
    # Nor is kindling's own state, which the build is never sent (state_ignore_file).
    inputs = inputsets.resolve(
        build.inputs, build.containerfile, build.context, args, ctx.runner, [ctx.home], ctx.home / "inputs"
    )
    if inputs.note:
        ctx.console.line(f"{name}: {inputs.note}")
    counted = {"inputs": {"rule": inputs.rule, "files": len(inputs.files)}}
    containerfile = containerfile_to_build(ctx, name, args)
    digest = cache.build_digest(
        containerfile, build.context, args, build.target, left_out=[ctx.home], inputs=inputs
    )
    if not settings.no_cache:
        found = ctx.snapshot.find_built(repository, digest)
        if found:
            ctx.refs[name] = found[0]
            ctx.run.record_image(
                name, {"ref": found[0], "digest": digest, "built_by_kindling": True, **counted}
            )
            return Outcome.CACHED
    ref = imagerefs.local_ref(ctx.stack.project, name, ctx.new_tag(name), ctx.registry, naming)
    ctx.console.state("image", name, "building", str(log))
    for note in buildmounts.skipped(build):
        ctx.console.line(f"[image] {name}: {note}")
    labels = {DIGEST_LABEL: digest, STACK_LABEL: ctx.stack.name}
    for attempt in (1, 2):
        try:
            ctx.engine.build(
                ref,
                containerfile,
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
                ignore_file=state_ignore_file(ctx, name),
                timeout=ctx.timeout("build"),
            )
            break
        except CommandFailed as exc:
            # podman's service can die under load ("server probably quit", exit 125): once more.
            if attempt == 2 or exc.returncode != 125 or not TRANSIENT_BUILD_FAILURE.search(exc.tail):
                raise
    ctx.snapshot.forget_images()
    if not ctx.dry_run and not ctx.engine.image_exists(ref):
        raise KindlingError(f"{name}: the build succeeded but {ref} is not in the image store")
    ctx.refs[name] = ref
    if not ctx.dry_run:
        ctx.run.record_image(name, {"ref": ref, "digest": digest, "built_by_kindling": True, **counted})
    return Outcome.BUILT


def containerfile_to_build(ctx: RunContext, name, args) -> Path:
    """The user's Containerfile, or, when the stack or the base-images setting (which wins) maps a
    base image one of its FROMs names (baseimages.py), a copy with those FROMs rewritten, in the run
    folder; the user's file is never changed. The copy is what the digest covers, so a new mapping
    makes a new image."""
    build = ctx.stack.services[name].build
    mapping = baseimages.merged(ctx.stack.base_images, build.base_images, ctx.settings.base_images)
    if not mapping:
        return build.containerfile
    text = Path(build.containerfile).read_text(encoding="utf-8")
    found = baseimages.substitute(text, args, mapping)
    for repository in found.unused:
        if repository in dict(build.base_images):
            ctx.console.line(
                f"[image] {name}: base_images: no FROM of {build.containerfile} names {repository}"
            )
    if not found.substitutions:
        return build.containerfile
    for change in found.substitutions:
        ctx.console.line(
            f"[image] {name}: FROM {change.original} -> {change.replacement} (line {change.line})"
        )
    generated = ctx.run.folder / "containerfiles" / f"{name}.Containerfile"
    generated.parent.mkdir(parents=True, exist_ok=True)
    generated.write_text(found.text, encoding="utf-8")
    # The ignore file beside a Containerfile (`<name>.dockerignore`) is found by the file's path:
    # the copy gets it too, so the build is sent what it always was.
    for suffix in (".dockerignore", ".containerignore"):
        beside = Path(f"{build.containerfile}{suffix}")
        if beside.is_file():
            Path(f"{generated}{suffix}").write_bytes(beside.read_bytes())
    return generated


def state_ignore_file(ctx: RunContext, name) -> Path | None:
    """kindling's state folder (KINDLING_HOME: runs, logs, kubeconfigs, caches) inside a build's
    context, the common case with `context: .`, would be sent to the build and copied by
    `COPY . .`: podman gets the build's own ignore rules plus one leaving it out (--ignorefile).
    docker takes no such file, so there it must be ignored already."""
    build = ctx.stack.services[name].build
    rules = ignorefile.leaving_out(build.context, build.containerfile, ctx.home)
    if rules is None:
        return None
    if not ctx.engine.takes_ignore_file:
        relative = ctx.home.resolve().relative_to(build.context.resolve()).as_posix()
        source = ignorefile.ignore_file(ctx.engine.program, build.context, build.containerfile)
        if source is not None and ignorefile.read(source).excluded_by(relative) is not None:
            return None
        raise KindlingError(
            f"{name}: kindling's state folder {ctx.home} is inside the build context {build.context}, "
            f"and {ctx.engine.program} build would send it\n  fix: add `{relative}` to "
            f"{source or build.context / '.dockerignore'}, or set KINDLING_HOME to a folder outside "
            f"{build.context}"
        )
    path = ctx.run.folder / f"{name}.ignore"
    path.write_text(rules, encoding="utf-8")
    return path


def save_archive(ctx: RunContext, name, folder) -> Outcome:
    """The image as FOLDER/<service>.tar (CI artifacts, for `e2e.setup --images-from`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.tar"
    ctx.engine.save(
        ctx.refs[name], target, log_path=ctx.log(StepKind.SAVE, name), timeout=ctx.timeout("save")
    )
    return Outcome.SAVED


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
