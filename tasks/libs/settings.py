"""Every run setting, read once into a frozen value.

Precedence, lowest first: built-in default, Invoke config (`e2e.*` in invoke.yaml, a `-f`
file, the user's config, or `INVOKE_E2E_*` variables), the environment variable, the task
option. `SETTINGS` is the one table of them; the README prints the same table. Stack-file
overrides (E2E_STACK, E2E_SOURCE, IMAGE_REGISTRY, KINDLING_NODE_IMAGE) are read where the
stack file is loaded (stack.py), because they replace fields of the stack.
"""

import math
import os
from dataclasses import dataclass, field
from types import MappingProxyType

from . import imagerefs
from .checks import preflight
from .delivery import ArchiveDelivery, Delivery, LocalRegistryDelivery, RegistryDelivery
from .delivery.localregistry import DEFAULT_KIND_REGISTRY
from .errors import KindlingError
from .plan import Strategy
from .stack import baseimages, profiles

DEFAULT_LIMITS = {"build": 4, "load": 2, "kube": 4, "cluster": 1}
DEFAULT_TIMEOUTS = {"build": 3600, "save": 900, "load": 900, "cluster": 600, "apply": 300}
DEFAULT_KEEP_RUNS = 50


@dataclass(frozen=True)
class Settings:
    delivery: Delivery
    dry_run: bool = False
    no_cache: bool = False
    coverage: bool = False
    keep_going: bool = False
    recreate: bool = False
    strategy: Strategy = Strategy.PIPELINED
    limits: MappingProxyType = field(default_factory=lambda: MappingProxyType(DEFAULT_LIMITS))
    timeouts: MappingProxyType = field(default_factory=lambda: MappingProxyType(DEFAULT_TIMEOUTS))
    memory_budget: int = 0
    image_tag: str | None = None
    keep_runs: int = DEFAULT_KEEP_RUNS
    lock_wait: float = 0.0
    keep_cluster: bool = False
    base_images: tuple = ()  # (repository, replacement) over the stack's and each build's (baseimages.py)


# (setting, Invoke config key under e2e., environment variable, task option, meaning)
SETTINGS = (
    ("stack file", "stack", "E2E_STACK", "", "the stack file (default e2e.yaml)"),
    (
        "stack profiles",
        "profile",
        "E2E_PROFILE",
        "",
        "the stack's profiles to apply, e.g. offline or offline,ci",
    ),
    ("coverage mode", "coverage", "E2E_COVERAGE", "--coverage", "coverage mode"),
    (
        "delivery",
        "load_via",
        "KINDLING_LOAD_VIA",
        "--load-via",
        "archive, or registry (kind's local registry)",
    ),
    *(
        (
            f"local registry container {key}",
            f"kind_registry.{key}",
            f"KINDLING_KIND_REGISTRY_{key.upper()}",
            "",
            f"the local registry container's {key} (default {DEFAULT_KIND_REGISTRY[key]})",
        )
        for key in DEFAULT_KIND_REGISTRY
    ),
    ("one tag for every image", "image_tag", "IMAGE_TAG", "", "one tag for every built image (CI artifacts)"),
    ("timeouts", "timeouts", "KINDLING_TIMEOUTS", "", "per-kind timeouts, e.g. build=1800,load=300"),
    ("run folders kept", "keep_runs", "KINDLING_KEEP_RUNS", "", "run folders kept (default 50)"),
    (
        "cluster lock wait",
        "lock_wait",
        "KINDLING_LOCK_WAIT",
        "",
        "seconds to wait for another run's cluster lock",
    ),
    (
        "keep a failed run's cluster",
        "keep_cluster",
        "KEEP_CLUSTER",
        "--keep-cluster",
        "keep a cluster a failed run created",
    ),
    ("strategy", "strategy", "", "--strategy", "pipelined, phased, batched or serial"),
    (
        "base images",
        "base_images",
        "KINDLING_BASE_IMAGES",
        "--base-images",
        "REPOSITORY=IMAGE,...: base images for every build, over the stack's `base_images`",
    ),
)


def process_environment() -> dict:
    """This process's environment, copied: the one place the product reads it. The settings, the stack
    file's ${VAR}s and the other knobs (KINDLING_HOME, KINDLING_LOCK_DIR, NO_COLOR, ...) are read from
    the dict a task passes down; children get it through the Runner."""
    return dict(os.environ)


def invoke_config_defaults() -> dict:
    """Every Invoke config key of SETTINGS declared under `e2e` (tasks.py: ns.configure). Invoke reads
    an INVOKE_E2E_<KEY> variable only for a key its defaults declare; None keeps the text as given
    (invoke/env.py _cast), and build_settings parses and checks it as it does a `-f` file's value."""
    section = {}
    for _setting, key, _variable, _option, _meaning in SETTINGS:
        *parents, leaf = key.split(".")
        node = section
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = None
    return {"e2e": section}


def truthy(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def parse_timeouts(text: str, origin: str = "KINDLING_TIMEOUTS") -> dict:
    """`build=600,load=120` -> {"build": 600.0, "load": 120.0}."""
    result = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        key, _, value = part.partition("=")
        if key not in DEFAULT_TIMEOUTS:
            raise KindlingError(f"{origin}: unknown step {key!r}; use {', '.join(DEFAULT_TIMEOUTS)}")
        try:
            result[key] = float(value)
        except ValueError:
            raise KindlingError(f"{origin}: {part!r} needs a number of seconds") from None
        if not math.isfinite(result[key]) or result[key] <= 0:
            raise KindlingError(f"{origin}: {part!r} must be a positive number of seconds")
    return result


def _layered(config: dict, env, key: str, variable: str, option=None):
    """The option if given, else the environment variable if set, else the Invoke config value."""
    if option not in (None, ""):
        return option, "option"
    if variable and env.get(variable) not in (None, ""):
        return env[variable], variable
    value = config
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value, f"invoke config e2e.{key}"


def base_images_setting(config, env, option=None) -> tuple:
    """((repository, replacement), ...) of --base-images, KINDLING_BASE_IMAGES or e2e.base_images."""
    value, origin = _layered(dict(config or {}), env, "base_images", "KINDLING_BASE_IMAGES", option)
    return baseimages.from_setting(value, "--base-images" if origin == "option" else origin)


def profile_setting(config, env) -> tuple:
    """(names, origin) of the stack profiles E2E_PROFILE or e2e.profile chooses (stack/profiles.py)."""
    value, origin = _layered(dict(config or {}), env, "profile", "E2E_PROFILE")
    return profiles.parse_names(value, origin), origin


def _positive_int(text, origin: str, what: str, low: int = 1, high: int | None = None) -> int:
    value = str(text)
    if not value.isdigit() or int(value) < low or (high is not None and int(value) > high):
        raise KindlingError(f"{origin}: {text!r} must be {what}")
    return int(value)


def _delivery(stack, env, config, load_via, context, kubeconfig) -> Delivery:
    if stack.registry:
        # With a registry, a kubeconfig/context names an existing cluster: no Kind cluster is made.
        return RegistryDelivery(
            stack.registry,
            stack.registry_tls_verify,
            context=context or None,
            kubeconfig=kubeconfig or env.get("KUBECONFIG") or None if (context or kubeconfig) else None,
        )
    if context or kubeconfig:
        raise KindlingError(
            "--context/--kubeconfig deploy to an existing cluster, which cannot receive "
            "`kind load`: also give --registry (or IMAGE_REGISTRY)"
        )
    via, origin = _layered(config, env, "load_via", "KINDLING_LOAD_VIA", load_via)
    via = via or "archive"
    if via not in ("archive", "registry"):
        raise KindlingError(
            f"{'--load-via' if origin == 'option' else origin} {via!r}: use archive or registry"
        )
    if via == "archive":
        return ArchiveDelivery()
    local, origins = {}, {}
    for key, default in DEFAULT_KIND_REGISTRY.items():
        value, origins[key] = _layered(
            config, env, f"kind_registry.{key}", f"KINDLING_KIND_REGISTRY_{key.upper()}"
        )
        local[key] = default if value in (None, "") else value
    local["port"] = _positive_int(local["port"], origins["port"], "a port number", 1, 65535)
    return LocalRegistryDelivery(f"localhost:{local['port']}", kind_registry=MappingProxyType(local))


def build_settings(
    stack,
    env,
    config=None,
    *,
    dry_run=False,
    no_cache=False,
    coverage=False,
    keep_going=False,
    recreate=False,
    strategy=None,
    jobs=None,
    memory_budget=None,
    load_via=None,
    context=None,
    kubeconfig=None,
    keep_cluster=False,
    base_images=None,
) -> Settings:
    """The settings of one run: defaults < Invoke config < environment < task options."""
    config = dict(config or {})
    strategy_text, origin = _layered(config, env, "strategy", "", strategy)
    strategy_text = strategy_text or Strategy.PIPELINED.value
    try:
        chosen = Strategy(strategy_text)
    except ValueError:
        raise KindlingError(
            f"{'--strategy' if origin == 'option' else origin}: unknown strategy {strategy_text!r}: "
            f"use one of {', '.join(s.value for s in Strategy)}"
        ) from None
    limits = dict(DEFAULT_LIMITS)
    if jobs:
        limits["build"] = _positive_int(jobs, "--jobs", "a number of builds, 1 or more")
    timeouts_text, origin = _layered(config, env, "timeouts", "KINDLING_TIMEOUTS")
    timeouts = {**DEFAULT_TIMEOUTS, **stack.timeouts, **parse_timeouts(timeouts_text or "", origin)}
    image_tag, origin = _layered(config, env, "image_tag", "IMAGE_TAG")
    if image_tag:
        try:
            imagerefs.check_tag(str(image_tag))
        except imagerefs.BadReference as exc:
            raise KindlingError(f"{origin}: {exc}") from None
    keep_runs, origin = _layered(config, env, "keep_runs", "KINDLING_KEEP_RUNS")
    lock_wait, lock_origin = _layered(config, env, "lock_wait", "KINDLING_LOCK_WAIT")
    try:
        lock_wait = float(lock_wait or 0)
    except ValueError:
        raise KindlingError(f"{lock_origin}: {lock_wait!r} must be a number of seconds") from None
    return Settings(
        delivery=_delivery(stack, env, config, load_via, context, kubeconfig),
        base_images=base_images_setting(config, env, base_images),
        dry_run=bool(dry_run),
        no_cache=bool(no_cache),
        keep_going=bool(keep_going),
        recreate=bool(recreate),
        coverage=bool(coverage) or truthy(_layered(config, env, "coverage", "E2E_COVERAGE")[0] or ""),
        keep_cluster=bool(keep_cluster)
        or truthy(_layered(config, env, "keep_cluster", "KEEP_CLUSTER")[0] or ""),
        strategy=chosen,
        limits=MappingProxyType(limits),
        timeouts=MappingProxyType(timeouts),
        memory_budget=preflight.mem_available() * 3 // 4 if memory_budget is None else memory_budget,
        image_tag=str(image_tag) if image_tag else None,
        keep_runs=_positive_int(keep_runs or DEFAULT_KEEP_RUNS, origin, "a number of runs, 1 or more"),
        lock_wait=lock_wait,
    )
