"""The options of the tasks that build, set up and tear down (build, e2e.setup, e2e.run, e2e.test,
e2e.teardown), each declared once: its default and its help.

Invoke reads a task's options from its body's signature (inspect.signature, which honours a
function's __signature__, PEP 362) and gives short flags in that order, first letter first
(-n --no-cache, -k --keep-cluster). A task body takes **options; `task(...)` gives it the options it
names, in the order of OPTIONS, so every task keeps the short flags it always had.
"""

import inspect
from dataclasses import dataclass

from invoke import task as invoke_task

from .plan import Strategy


@dataclass(frozen=True)
class Option:
    name: str  # the body's keyword; the flag is --name-with-dashes
    default: object
    help: str


DRY_RUN = "Print the commands instead of running them."
OPTIONS = (
    Option(
        "strategy",
        None,
        f"How steps are scheduled: {', '.join(s.value for s in Strategy)} (default pipelined: each step "
        "as soon as its inputs are ready; batched is Kubernaut's DD-TEST-002 order).",
    ),
    Option("parallel", False, "Build concurrently (up to --jobs at once) instead of one after another."),
    Option("jobs", None, "At most this many image builds at once (default 4)."),
    Option("only", "", "Comma-separated services to build (default: every built service)."),
    Option("keep_going", False, "Do not stop at the first failed build; build everything that can be built."),
    Option("no_cache", False, "Rebuild every image even when one with the same inputs exists."),
    Option("keep_cluster", False, "On failure keep a cluster this run created (also KEEP_CLUSTER=1)."),
    Option(
        "memory_budget",
        "",
        "Memory the concurrent builds may declare together, e.g. 12GiB (default: three quarters of "
        "available memory).",
    ),
    Option(
        "coverage",
        False,
        "Coverage mode (also E2E_COVERAGE=true): coverage build args, /coverdata mounts, GOCOVERDIR.",
    ),
    Option("dry_run", False, DRY_RUN),
    Option(
        "args",
        "",
        "Extra arguments for the test command, split like a shell would (or pass them after --: "
        "invoke e2e.test -- --focus=Foo).",
    ),
    Option("no_keep", False, "On failure delete the cluster too (default: keep it for debugging)."),
    Option("keep_images", False, "Keep the images kindling built (the next setup reuses them)."),
    Option(
        "registry",
        "",
        "Registry mode (also IMAGE_REGISTRY, or the stack's registry:): push images to HOST[:PORT] and "
        "let the nodes pull them, instead of kind load. A registry on this host's loopback "
        "(127.0.0.1:PORT, localhost:PORT) is pulled by the Kind nodes from an address of this host they "
        "reach.",
    ),
    Option(
        "save_to", "", "Afterwards save each image to FOLDER/<service>.tar (CI artifacts for --images-from)."
    ),
    Option(
        "push",
        False,
        "Afterwards push each built image to the registry (--registry, IMAGE_REGISTRY or the stack's "
        "registry:; IMAGE_REGISTRY_TLS_VERIFY=false for plain HTTP). Refused without a registry.",
    ),
    Option(
        "context",
        "",
        "With a registry: deploy to this kubeconfig context of an existing cluster (no Kind cluster).",
    ),
    Option("kubeconfig", "", "With a registry: the kubeconfig of an existing cluster (default: KUBECONFIG)."),
    Option(
        "images_from",
        "",
        "Load the image archives (*.tar) in this folder first, e.g. CI artifacts; with IMAGE_TAG they are "
        "used instead of building, and teardown never removes them.",
    ),
    Option("output", "text", "text (default) or json: the run report as JSON on stdout, progress on stderr."),
    Option(
        "load_via",
        "",
        "archive (default: podman save + kind load) or registry: push to a registry container beside Kind "
        "(kind's local-registry pattern), so a reload sends only changed layers.",
    ),
    Option(
        "recreate",
        False,
        "Delete and recreate the stack's Kind cluster when kind lists it but it is not usable (nodes "
        "stopped, API server not answering). A cluster kindling created is recreated anyway.",
    ),
    Option(
        "base_images",
        "",
        "Base images for every build, over the stack's base_images: REPOSITORY=IMAGE[,REPOSITORY=IMAGE] "
        "(also KINDLING_BASE_IMAGES), e.g. a mirror for a registry this machine cannot reach.",
    ),
)
BY_NAME = {option.name: option for option in OPTIONS}
SETUP = (
    "strategy",
    "jobs",
    "no_cache",
    "memory_budget",
    "coverage",
    "registry",
    "context",
    "kubeconfig",
    "images_from",
    "output",
    "load_via",
    "recreate",
    "base_images",
)


def defaults(*names) -> dict:
    return {name: BY_NAME[name].default for name in names}


def task(*names, help=None, **task_options):
    """invoke.task for a body that takes (c, **options): the named options, with their defaults and
    help from OPTIONS (help= overrides a text where a task means something of its own)."""
    unknown = [name for name in names if name not in BY_NAME]
    if unknown:
        raise ValueError(f"no option named {', '.join(unknown)} in OPTIONS")
    chosen = [option for option in OPTIONS if option.name in names]

    def declare(body):
        context = next(iter(inspect.signature(body).parameters.values()))
        keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
        parameters = [inspect.Parameter(o.name, keyword, default=o.default) for o in chosen]
        body.__signature__ = inspect.Signature([context, *parameters])
        texts = {o.name.replace("_", "-"): o.help for o in chosen}
        return invoke_task(help={**texts, **(help or {})}, **task_options)(body)

    return declare
