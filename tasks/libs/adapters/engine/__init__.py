"""Container engines: one interface (base.Engine) and one module per engine, as kind has one
provider package per engine (pkg/cluster/internal/providers/{podman,docker})."""

from .base import DIGEST_LABEL, STACK_LABEL, Engine
from .docker import Docker
from .podman import Podman

ENGINES = {engine.program: engine for engine in (Podman, Docker)}


def engine_class(program: str) -> type:
    """The engine a stack's `engine:` names (stack parsing refuses any other)."""
    return ENGINES[program]


def for_program(runner, program: str = "podman") -> Engine:
    return ENGINES[program](runner)


__all__ = [
    "DIGEST_LABEL",
    "ENGINES",
    "STACK_LABEL",
    "Docker",
    "Engine",
    "Podman",
    "engine_class",
    "for_program",
]
