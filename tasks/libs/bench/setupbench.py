"""bench.setup's stack and what it reads from the runs: a stack shaped like Kubernaut's AIAnalysis
E2E, whose builds sleep for Kubernaut's measured build times, scaled."""

import uuid
from pathlib import Path

from .. import runs, samples
from ..adapters.engine import Podman
from ..plan import StepKind, step_id
from ..procs.runner import Runner

# Kubernaut's measured builds (December 2025): Data Storage 1:22, HolmesGPT-API 2:30,
# AIAnalysis 3:53, i.e. 82 : 150 : 233 seconds.
KUBERNAUT_BUILD_SECONDS = {"datastorage": 82, "holmesgpt-api": 150, "aianalysis": 233}


def aianalysis_shaped_stack(folder: Path, scale: float) -> Path:
    """Kubernaut's AIAnalysis stack in shape: its services, dependencies and build times (scaled)."""
    base = samples.ensure_base_image(Podman(Runner()))
    build_seconds = {k: f"{v * scale:.2f}" for k, v in KUBERNAUT_BUILD_SECONDS.items()}
    return samples.write_stack(
        folder,
        {
            # Prebuilt images stand in for PostgreSQL and Redis: loaded into Kind, since no
            # registry may be reachable from the nodes.
            "postgresql": {"image": base, "load": True},
            "redis": {"image": base, "load": True},
            "datastorage": {
                "sleep": build_seconds["datastorage"],
                "depends_on": ["postgresql", "redis"],
                "configmap": True,
            },
            "holmesgpt-api": {"sleep": build_seconds["holmesgpt-api"], "depends_on": ["datastorage"]},
            "aianalysis": {
                "sleep": build_seconds["aianalysis"],
                "depends_on": ["datastorage", "holmesgpt-api"],
            },
        },
        name="bench-setup",
        project=f"bench{uuid.uuid4().hex[:6]}",
        base_image=base,
        namespace="kubernaut-system",
    )


def own_step_seconds(reports: list, service: str) -> dict:
    """StepKind -> seconds of the service's own image, load and deploy steps in these run reports:
    what a partial redeploy cannot do without."""
    wanted = {step_id(kind, service): kind for kind in (StepKind.IMAGE, StepKind.LOAD, StepKind.DEPLOY)}
    found = {}
    for path in reports:
        for step in runs.read_json(path, {}).get("steps", []):
            kind = wanted.get(step.get("id"))
            if kind is not None and step.get("status") == "ok":
                found[kind] = found.get(kind, 0.0) + float(step.get("seconds") or 0.0)
    return {kind: found[kind] for kind in wanted.values() if kind in found}
