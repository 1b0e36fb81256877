"""A service's `build:` in the stack: how its image is built and which files are its inputs."""

from dataclasses import dataclass, field
from pathlib import Path

from ..build import caches as buildcaches
from ..build import inputsets
from . import baseimages, buildmounts, hostfacts
from .stackfile import Checker, parse_size, show

BUILD_KEYS = {
    "containerfile",
    "context",
    "args",
    "coverage_args",
    "target",
    "memory",
    "caches",
    "mounts",
    "inputs",
    "base_images",
}


@dataclass(frozen=True)
class Build:
    containerfile: Path
    context: Path
    args: dict = field(default_factory=dict)
    coverage_args: dict = field(default_factory=dict)
    target: str = ""
    memory: int = 0  # bytes the build needs; 0 = not declared
    caches: tuple = ()  # buildcaches.Cache: compiler caches mounted into every RUN step
    mounts: tuple = ()  # buildmounts.Mount: host folders mounted into every RUN step (read-only)
    inputs: inputsets.Inputs = inputsets.Inputs()  # which files make a new image
    base_images: tuple = ()  # (repository, replacement): this build's own, over the stack's

    def build_args(self, coverage: bool = False) -> dict:
        return {**self.args, **(self.coverage_args if coverage else {})}


def parse(c: Checker, raw, where, source) -> Build:
    """A service's `build:`, a mapping or just the Containerfile's path."""
    if isinstance(raw, str):
        raw = {"containerfile": raw}
    c.mapping(raw, where, BUILD_KEYS)
    # Values first, files last: the error names the first problem a reader would fix.
    target = raw.get("target", "") or ""
    if target:
        c.string(target, f"{where}.target")
    memory = 0
    if raw.get("memory") is not None:
        try:
            memory = parse_size(raw["memory"])
        except ValueError:
            c.fail(f"{where}.memory", f"{show(raw['memory'])} is not a size", "write e.g. 512MiB or 3GiB")
    facts = hostfacts.with_host_facts(c.env)  # ${KINDLING_HOST_GOARCH}, ${KINDLING_HOST_OS}
    args = c.args(raw.get("args"), f"{where}.args", env=facts)
    coverage_args = c.args(raw.get("coverage_args"), f"{where}.coverage_args", env=facts)
    caches = buildcaches.parse(c, raw.get("caches"), f"{where}.caches")
    mounts = buildmounts.parse(c, raw.get("mounts"), f"{where}.mounts", source, caches)
    inputs = inputsets.parse(c, raw.get("inputs"), f"{where}.inputs")
    base_images = baseimages.parse(c, raw.get("base_images"), f"{where}.base_images")
    containerfile = c.path_value(
        raw.get("containerfile", "Containerfile"), f"{where}.containerfile", source, source
    )
    context = c.path_value(raw.get("context", "."), f"{where}.context", source, source)
    c.existing(containerfile, f"{where}.containerfile")
    c.existing(context, f"{where}.context", "folder")
    return Build(
        containerfile, context, args, coverage_args, target, memory, caches, mounts, inputs, base_images
    )
