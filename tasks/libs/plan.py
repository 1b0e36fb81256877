"""The step graph of a run, planned from the stack alone: which steps, what each needs.

Pure: no commands, no files. The environment binds each planned step to the phase function
that performs it; the scheduler runs the graph.
"""

from dataclasses import dataclass
from enum import Enum


class Strategy(Enum):
    """How the step graph is scheduled."""

    PIPELINED = "pipelined"  # each step as soon as its inputs are ready
    PHASED = "phased"  # Kubernaut's December 2025 flow: builds, loads, then deploys one by one
    BATCHED = "batched"  # Kubernaut's DD-TEST-002: builds, cluster, loads, then all deploys at once
    SERIAL = "serial"  # one step at a time


class StepKind(Enum):
    CLUSTER = "cluster"
    REGISTRY = "registry"  # the registry container beside Kind
    REGISTRY_WIRING = "registry-wiring"  # nodes and cluster told about that registry
    IMAGE = "image"
    LOAD = "load"
    PUSH = "push"
    SAVE = "save"  # an image archive for CI (`build --save-to`)
    DEPLOY = "deploy"
    TEST = "test"

    @property
    def pool(self) -> str:
        """The scheduler's limit class this kind of step counts against."""
        return _POOLS[self]


_POOLS = {
    StepKind.CLUSTER: "cluster",
    StepKind.REGISTRY: "cluster",
    StepKind.REGISTRY_WIRING: "kube",
    StepKind.IMAGE: "build",
    StepKind.LOAD: "load",
    StepKind.PUSH: "load",
    StepKind.SAVE: "load",
    StepKind.DEPLOY: "kube",
    StepKind.TEST: "test",
}
SINGLE = (StepKind.CLUSTER, StepKind.REGISTRY, StepKind.REGISTRY_WIRING, StepKind.TEST)


class Outcome(Enum):
    """What a step found or did; the words the console and the run report show."""

    BUILT = "built"
    CACHED = "cached"  # an image with the same inputs digest exists
    PRESENT = "present"  # a prebuilt or provided image is in the engine already
    PULLED = "pulled"
    CREATED = "created"
    RECREATED = "recreated"
    EXISTS = "exists"
    EXISTING = "existing"  # a cluster kindling did not make (registry mode)
    RUNNING = "running"
    STARTED = "started"
    WIRED = "wired"
    LOADED = "loaded"
    STREAMED = "streamed"  # loaded without an archive on disk
    ON_NODE = "on node"
    PUSHED = "pushed"
    SAVED = "saved"
    READY = "ready"
    RAN = "ran"  # a service's run step (its command or Job) ran, after its objects were ready
    UP_TO_DATE = "up to date"
    PASSED = "passed"


def step_id(kind: StepKind, subject: str = "") -> str:
    """The scheduler's key for a step; only the scheduler and the run report use it."""
    return kind.value if kind in SINGLE else f"{kind.value}:{subject}"


@dataclass
class PlannedStep:
    kind: StepKind
    subject: str
    needs: tuple = ()  # step ids

    @property
    def id(self) -> str:
        return step_id(self.kind, self.subject)


def image_plan(stack, names) -> list:
    """An image step for each named service that is built or loaded."""
    return [
        PlannedStep(StepKind.IMAGE, n) for n in names if stack.services[n].built or stack.services[n].load
    ]


def build_plan(stack, names, push: bool = False, save: bool = False) -> list:
    """`invoke build`: the image steps, then a push and/or a save of each built image. Each waits
    for every image step, so a failed build pushes or saves nothing."""
    steps = [PlannedStep(StepKind.IMAGE, n) for n in names]
    after = tuple(s.id for s in steps)
    for kind, wanted in ((StepKind.PUSH, push), (StepKind.SAVE, save)):
        if wanted:
            steps += [PlannedStep(kind, n, after) for n in names]
    return steps


def setup_plan(stack, names, delivery, strategy: Strategy) -> list:
    """Steps to ensure the named services; their dependencies outside `names` are assumed up. The
    delivery mode (delivery/) adds its own steps and the one that brings each image to the nodes."""
    cluster = PlannedStep(StepKind.CLUSTER, stack.cluster_name)
    steps = [cluster, *image_plan(stack, names), *delivery.setup_steps(cluster.id)]
    with_image = {s.subject for s in steps if s.kind is StepKind.IMAGE}
    delivered = {}
    for name in names:
        if name in with_image:
            step = delivery.delivery_step(
                stack.services[name], name, step_id(StepKind.IMAGE, name), cluster.id
            )
            if step is not None:
                steps.append(step)
                delivered[name] = step.id
    selected = set(names)
    for name in names:
        needs = [cluster.id] + ([delivered[name]] if name in delivered else [])
        needs += delivery.deploy_needs()
        needs += [step_id(StepKind.DEPLOY, d) for d in stack.services[name].depends_on if d in selected]
        steps.append(PlannedStep(StepKind.DEPLOY, name, tuple(needs)))
    if strategy is Strategy.PHASED:
        _phased(steps)
    elif strategy is Strategy.BATCHED:
        _batched(steps, {step_id(StepKind.DEPLOY, n) for n in names if stack.services[n].run is not None})
    return steps


def _ids(steps, *kinds) -> list:
    return [s.id for s in steps if s.kind in kinds]


def _add_needs(step, extra) -> None:
    step.needs = tuple(dict.fromkeys([*step.needs, *extra]))


def _phased(steps) -> None:
    """Kubernaut's December 2025 flow: all builds, then all loads, then deploys one by one in order."""
    builds, loads = _ids(steps, StepKind.IMAGE), _ids(steps, StepKind.LOAD, StepKind.PUSH)
    previous = []
    for step in steps:
        if step.kind in (StepKind.LOAD, StepKind.PUSH):
            _add_needs(step, builds)
        elif step.kind is StepKind.DEPLOY:
            _add_needs(step, loads + previous)
            previous = [step.id]


def _batched(steps, ordered=()) -> None:
    """Kubernaut's DD-TEST-002 flow (test/infrastructure/aianalysis_e2e.go): every build, then the
    cluster, then every load, then every deploy at once with one readiness wait at the end; the
    dependency order between services is left to their own retries, as there. The `ordered` deploys
    (run steps: a seeding command does not retry) still wait for their dependencies."""
    builds, loads = _ids(steps, StepKind.IMAGE), _ids(steps, StepKind.LOAD, StepKind.PUSH)
    deploys = set(_ids(steps, StepKind.DEPLOY))
    for step in steps:
        if step.kind is StepKind.CLUSTER:
            _add_needs(step, builds)
        elif step.kind in (StepKind.LOAD, StepKind.PUSH):
            _add_needs(step, builds)
        elif step.kind is StepKind.DEPLOY:
            if step.id not in ordered:
                step.needs = tuple(n for n in step.needs if n not in deploys)
            _add_needs(step, loads)
