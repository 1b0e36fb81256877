"""Where a service's Kubernetes objects come from: its manifest files, and at most one deploy source,
a tool that renders more objects (a local Helm chart, a kustomization).

Every backend is one module here with the same shape (helm.py is the model):
- `KEY`, the service's key in the stack file, and `parse(c, raw, where, service_name, source)`,
  which checks that section and returns the backend's spec;
- the spec, a frozen dataclass with `key`, `tool` (what renders it, for messages),
  `install_hint`, `origin` (the path stack.check and errors name), `files(where)` (every path it
  reads, for stack.check and source drift), `argv(namespace)` (the render command, which only
  reads and prints YAML), `secrets()` (values to mask), and `tool_check(runner, kubectl_text)`
  (doctor's check of the tool, made when a service of the stack uses the backend).
A new deploy source is a new module listed in BACKENDS; nothing else changes.

Every source gives the same list of objects, parsed by render's loader, so rendered charts and
kustomizations go through the same image substitution, apply order, readiness waits,
diagnostics and teardown as manifests. Rendering only reads: it never talks to a cluster.
"""

from pathlib import Path

from .. import render
from ..errors import CommandFailed
from ..procs.masking import display
from ..procs.runner import Runner, tail
from ..stack import runspec
from ..stack.stackfile import Checker
from . import helm, kustomize

BACKENDS = {backend.KEY: backend for backend in (helm, kustomize)}
RENDER_TIMEOUT = 120  # seconds; rendering a local chart or kustomization takes well under one


class SourceError(render.ManifestError):
    """A deploy source's tool could not render a service's objects."""


def parse(c: Checker, raw_service: dict, where: str, service_name: str, source: Path):
    """The service's deploy source (a backend's spec), or None when it has none."""
    given = [key for key in BACKENDS if raw_service.get(key) is not None]
    if len(given) > 1:
        c.fail(
            where,
            f"has both `{given[0]}` and `{given[1]}`",
            "keep one; to change a chart's output with kustomize, render the chart into the "
            "kustomization's resources yourself",
        )
    if not given:
        return None
    key = given[0]
    return BACKENDS[key].parse(c, raw_service[key], f"{where}.{key}", service_name, source)


def origins(service) -> tuple:
    """Each place the service's objects come from, in the order they are read: its manifest files,
    then its deploy source."""
    extra = (service.deploy_source.origin,) if service.deploy_source else ()
    return (*service.manifests, *extra)


def check_origins(service) -> tuple:
    """What stack.check reads for a service: its origins, then its run step's Job manifest."""
    return (*origins(service), *runspec.files(service))


def run_objects(service, namespace: str) -> list:
    """What the service's run step will create, as stack.check knows it before it has run: its
    ConfigMap with the declared `keys` (runspec.check_objects)."""
    return runspec.check_objects(service, namespace)


def files(service, where: str) -> list:
    """(field, path, "file" | "folder") of every file the service's deploy source reads."""
    spec = service.deploy_source
    return spec.files(f"{where}.{spec.key}") if spec else []


def tool_checks(runner, services, kubectl_text) -> list:
    """doctor's check of each deploy source's tool that a service of the stack uses."""
    used = {}
    for service in services:
        if service.deploy_source is not None:
            used.setdefault(service.deploy_source.key, service.deploy_source)
    return [spec.tool_check(runner, kubectl_text) for spec in used.values()]


def documents(
    service, namespace: str, runner: Runner | None = None, *, log_path=None, timeout=RENDER_TIMEOUT
):
    """The service's objects from every source it declares, as render.load_documents gives them."""
    return [
        doc
        for origin in origins(service)
        for doc in origin_documents(service, origin, namespace, runner, log_path=log_path, timeout=timeout)
    ]


def origin_documents(
    service,
    origin: Path,
    namespace: str,
    runner: Runner | None = None,
    *,
    log_path=None,
    timeout=RENDER_TIMEOUT,
) -> list:
    """The objects one origin (see origins) gives: read, or rendered by its tool."""
    spec = service.deploy_source
    if spec is None or origin != spec.origin:
        return render.load_documents(origin)
    runner = runner or Runner()
    runner.add_secrets(spec.secrets())
    return _rendered(service.name, spec, spec.argv(namespace), runner, log_path, timeout)


def _rendered(service_name: str, spec, argv: list, runner: Runner, log_path, timeout) -> list:
    """Run a renderer and parse what it prints. stdout is kept out of the step log on purpose: it
    holds the rendered Secrets, which kindling keeps only in mode-0600 files."""
    where = f"{spec.origin}: service {service_name}: `{spec.tool}` failed"
    try:
        result = runner.run(argv, check=False, mutating=False, timeout=timeout)
    except CommandFailed as exc:
        if runner.stopping:
            raise
        fix = f"\n  fix: {spec.install_hint}" if exc.returncode == 127 and spec.install_hint else ""
        raise SourceError(f"{where}: {str(exc).splitlines()[0]}{fix}") from None
    if log_path:
        _log(log_path, display(argv, secrets=runner.secrets), runner.mask_text(result.stderr))
    if result.exit_code != 0:
        last = runner.mask_text(tail(result.stderr) or tail(result.stdout) or "no output")
        raise SourceError(
            f"{where} (exit {result.exit_code}):\n" + "\n".join("    " + line for line in last.splitlines())
        )
    return render.parse_documents(result.stdout, f"{spec.origin} ({spec.tool} of service {service_name})")


def _log(log_path: Path, shown: str, stderr: str) -> None:
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as handle:
        handle.write(f"$ {shown}\n{stderr}")
