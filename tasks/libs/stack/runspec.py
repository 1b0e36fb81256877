"""A service's `run:` section: a command on the host, or a Job in the cluster, run once the services
it depends on are deployed and ready (seeding data, reading what a service assigned). Its output may
become a ConfigMap in the stack's namespace, or a file under the run folder, that later services use.

Pure apart from reading the stack's files: the schema, the inputs digest that decides whether the
step runs again, and turning the output into a ConfigMap. phases/run.py runs it.
"""

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .. import render
from .stackfile import Checker, positive_seconds, show, type_name

RUN_KEYS = {"command", "job", "timeout", "env", "configmap", "file", "keys"}
DEFAULT_RUN_TIMEOUT = 300
# A ConfigMap key as the API server checks it (apimachinery pkg/util/validation IsConfigMapKey).
CONFIGMAP_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
CONFIGMAP_KEY_MAX = 253
# Pod templates of a service that depends on a run step carry the digest of that step's output,
# so a new output rolls the workloads out again (the pattern of Helm's checksum/config annotation).
OUTPUT_ANNOTATION = "kindling.io/run-outputs"
MANAGED_LABELS = {"app.kubernetes.io/managed-by": "kindling"}
MAX_HASHED_FILE = 1024 * 1024  # a command's script counts by content up to this size


@dataclass(frozen=True)
class RunSpec:
    cwd: Path  # the stack file's folder
    command: tuple = ()  # an argument list run on the host; or
    job: Path | None = None  # a Job manifest applied and waited for
    timeout: int = DEFAULT_RUN_TIMEOUT
    env: dict = field(default_factory=dict)  # extra environment for the command
    configmap: str = ""  # the output becomes this ConfigMap's data
    file: str = ""  # the output is written to this path under the run folder
    keys: tuple = ()  # keys the ConfigMap must hold (stack.check checks consumers against them)


# ---- the stack file ---------------------------------------------------------------------------------


def parse(c: Checker, raw, where: str, source: Path | None) -> RunSpec:
    """`run: {command: [...] | job: FILE, timeout, env, configmap, file, keys}`."""
    example = (
        "write e.g. `run: {command: [python3, seed/ids.py], configmap: ids}` or `run: {job: seed/job.yaml}`"
    )
    if not isinstance(raw, dict):
        c.fail(where, f"must be a mapping, got {type_name(raw)}", example)
    c.mapping(raw, where, RUN_KEYS)
    has_command, has_job = raw.get("command") is not None, raw.get("job") is not None
    if has_command == has_job:
        c.fail(where, "needs exactly one of `command` (run on the host) or `job` (a Job manifest)", example)
    timeout = raw.get("timeout", DEFAULT_RUN_TIMEOUT)
    if not positive_seconds(timeout):
        c.fail(
            f"{where}.timeout",
            f"must be a positive number of seconds, got {show(timeout)}",
            f"write e.g. `timeout: {DEFAULT_RUN_TIMEOUT}`",
        )
    env = c.args(raw.get("env"), f"{where}.env")
    if env and has_job:
        c.fail(
            f"{where}.env",
            "applies to `command` only",
            "set the environment of the Job's container in its manifest",
        )
    command, job = (), None
    if has_command:
        command = _command(c, raw["command"], f"{where}.command", source)
    else:
        job = c.existing(c.path_value(raw["job"], f"{where}.job", c.path.parent, source), f"{where}.job")
        if c.check_files and job.is_file():
            job_object(job, c, f"{where}.job")
    configmap = ""
    if raw.get("configmap") is not None:
        configmap = c.name(raw["configmap"], f"{where}.configmap")
    keys = _keys(c, raw.get("keys"), f"{where}.keys")
    if keys and not configmap:
        c.fail(
            f"{where}.keys",
            "lists the keys of the ConfigMap the output becomes, but there is no `configmap`",
            "add `configmap: NAME`, or remove `keys`",
        )
    output_file = _output_file(c, raw.get("file"), f"{where}.file") if raw.get("file") is not None else ""
    return RunSpec(c.path.parent, command, job, int(timeout), env, configmap, output_file, keys)


def _command(c: Checker, raw, where: str, source: Path | None) -> tuple:
    if isinstance(raw, str):
        c.fail(
            where,
            "must be an argument list, not a shell string",
            "write e.g. [python3, seed/ids.py] (run a shell explicitly if you need one: [sh, -c, '...'])",
        )
    if (
        not isinstance(raw, list)
        or not raw
        or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in raw)
    ):
        c.fail(
            where,
            "must be a non-empty list of arguments (strings or numbers)",
            "write e.g. [python3, seed/ids.py]",
        )
    argv = [c.argument(arg, where, source) for arg in raw]
    if not argv[0]:
        c.fail(where, "the program (first argument) is empty", "name the program to run, e.g. python3")
    return tuple(argv)


def _keys(c: Checker, raw, where: str) -> tuple:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(k, str) for k in raw):
        c.fail(where, f"must be a list of ConfigMap keys, got {type_name(raw)}", "write e.g. [workflow_ids]")
    for key in raw:
        problem = configmap_key_problem(key)
        if problem:
            c.fail(where, problem, "use letters, digits, '-', '_' and '.'")
    return tuple(dict.fromkeys(raw))


def _output_file(c: Checker, raw, where: str) -> str:
    text = c.string(raw, where)
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts or os.path.normpath(text) in (".", ""):
        c.fail(
            where,
            f"{show(text)} is not a file path inside the run folder",
            "write a relative path such as out/ids.json (it is made under the run folder, E2E_RUN_DIR)",
        )
    return os.path.normpath(text)


def job_object(path: Path, c: Checker | None = None, where: str = "") -> dict:
    """The one Job a `run.job` file holds. With a Checker, a problem is the stack file's error."""

    def fail(problem, fix):
        if c is None:
            raise render.ManifestError(f"{path}: {problem}")
        c.fail(where, f"{path}: {problem}", fix)

    try:
        docs = render.load_documents(path)
    except render.ManifestError as exc:
        fail(str(exc).removeprefix(f"{path}: "), "fix the manifest")
    jobs = [d for d in docs if d.get("kind") == "Job"]
    if len(docs) != 1 or len(jobs) != 1 or not isinstance(jobs[0]["metadata"].get("name"), str):
        kinds = ", ".join(str(d.get("kind")) for d in docs) or "nothing"
        fail(
            f"must hold exactly one Job with a metadata.name; it holds {kinds}",
            "keep one Job in this file and put the other objects in the service's manifests",
        )
    return jobs[0]


def files(service) -> tuple:
    """The manifest files of the service's run step (stack.check validates them like manifests)."""
    run = getattr(service, "run", None)
    return (run.job,) if run is not None and run.job is not None else ()


def check_objects(service, namespace: str) -> list:
    """What stack.check counts as defined by the run step before it has run: its ConfigMap, holding
    the declared `keys` (so the services that use it are checked against them)."""
    run = getattr(service, "run", None)
    if run is None or not run.configmap:
        return []
    return [configmap_object(run.configmap, namespace, {key: "" for key in run.keys}, service.name)]


# ---- whether it runs again ------------------------------------------------------------------------


def inputs_digest(run: RunSpec, job_docs: list, dependencies: dict, roots=()) -> str:
    """What decides whether the step runs again: the command (and the scripts it names, by content),
    or the rendered Job; its environment and outputs; and the deployed records of the services it
    depends on (dependencies: name -> record). A dependency rolled out again, even unchanged, counts
    too (its record's run id changes): a store that started afresh has lost what was seeded into it.
    The timeout does not count: it changes nothing the step produces."""
    scripts = {
        arg: _file_digest(Path(run.cwd) / arg) for arg in run.command[1:] if _is_script(run.cwd, arg, roots)
    }
    data = {
        "command": list(run.command),
        "scripts": scripts,
        "env": run.env,
        "job": render.digest(job_docs) if job_docs else "",
        "configmap": run.configmap,
        "file": run.file,
        "keys": list(run.keys),
        "dependencies": dependencies,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _is_script(cwd: Path, arg: str, roots) -> bool:
    """An argument naming a small file under the stack's or the source's folder (a script the
    command runs), not the program or a system file."""
    path = Path(os.path.normpath(Path(cwd) / arg))
    try:
        return (
            any(path.is_relative_to(root) for root in (cwd, *roots))
            and path.is_file()
            and path.stat().st_size <= MAX_HASHED_FILE
        )
    except OSError:
        return False


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def output_digest(data: dict | None, text: str | None) -> str:
    """The digest of what a run step produced (its ConfigMap's data and its output file)."""
    return hashlib.sha256(json.dumps([data, text], sort_keys=True).encode()).hexdigest()


def consumed_outputs(stack, name: str, deployed: dict) -> str:
    """The digest of the outputs of the run steps this service depends on ("" when none)."""
    outputs = {
        d: (deployed.get(d) or {}).get("output", "")
        for d in stack.services[name].depends_on
        if getattr(stack.services[d], "run", None) is not None
    }
    if not any(outputs.values()):
        return ""
    return hashlib.sha256(json.dumps(outputs, sort_keys=True).encode()).hexdigest()[:32]


def annotate_pod_templates(docs: list, digest: str) -> list:
    """Workloads' pod templates annotated with the digest of the outputs they consume: a changed
    ConfigMap changes the template, so the pods are replaced and read it again."""
    for doc in docs:
        spec = doc.get("spec") or {}
        if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job") and isinstance(
            spec.get("template"), dict
        ):
            metadata = spec["template"].setdefault("metadata", {}) or {}
            spec["template"]["metadata"] = metadata
            metadata.setdefault("annotations", {})[OUTPUT_ANNOTATION] = digest
    return docs


# ---- the output ---------------------------------------------------------------------------------


def configmap_key_problem(key) -> str:
    if not isinstance(key, str) or not key:
        return f"{show(key)} is not a ConfigMap key (keys are non-empty strings)"
    if len(key) > CONFIGMAP_KEY_MAX or not CONFIGMAP_KEY_RE.match(key) or key in (".", ".."):
        return (
            f"{show(key)} is not a ConfigMap key: at most {CONFIGMAP_KEY_MAX} letters, digits, '-', '_' "
            "and '.' (not '.' or '..')"
        )
    return ""


class OutputError(ValueError):
    """The output cannot become a ConfigMap's data; the message says why."""


def configmap_data(text: str, keys=()) -> dict:
    """A YAML (or JSON) mapping of string keys to scalar values, as ConfigMap data (all strings:
    true becomes "true", 3 becomes "3"). Every key listed in `keys` must be there."""
    import yaml  # JSON is YAML: one parser for both

    try:
        loaded = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise OutputError(f"it is not YAML or JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(loaded, dict) or not loaded:
        raise OutputError(f"it must be a mapping of keys to values, and it is {type_name(loaded)}")
    data = {}
    for key, value in loaded.items():
        problem = configmap_key_problem(key)
        if problem:
            raise OutputError(problem)
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float)) and not (isinstance(value, float) and not math.isfinite(value)):
            value = str(value)
        elif not isinstance(value, str):
            raise OutputError(
                f"key {key!r}: the value must be a string, number or boolean, and it is "
                f"{type_name(value)} (print nested data as a string, e.g. JSON text)"
            )
        data[key] = value
    missing = [k for k in keys if k not in data]
    if missing:
        raise OutputError(
            f"it has no key {', '.join(missing)}, which `keys` lists (it has: {', '.join(data)})"
        )
    return data


def configmap_object(name: str, namespace: str, data: dict, service: str) -> dict:
    labels = {**MANAGED_LABELS, "kindling.io/service": service}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": dict(data),
    }
