"""Where a service's Kubernetes objects come from: its manifest files, a local Helm chart
(`helm template`) or a kustomization (`kubectl kustomize`).

Every source gives the same list of objects, parsed by render's loader, so rendered charts and
kustomizations go through the same image substitution, apply order, readiness waits,
diagnostics and teardown as manifests. Rendering only reads: it never talks to a cluster.
"""

import json
from pathlib import Path

from . import render, runspec
from .deployspec import Helm
from .errors import CommandFailed
from .masking import SECRET_NAME_RE, display
from .procs import Runner, tail
from .stack import Service

RENDER_TIMEOUT = 120  # seconds; rendering a local chart or kustomization takes well under one
HELM_INSTALL = "install Helm 3.10 or newer: https://helm.sh/docs/intro/install/ (then `invoke doctor`)"


class SourceError(render.ManifestError):
    """helm or kubectl could not render a service's chart or kustomization."""


def origins(service: Service) -> tuple:
    """Each place the service's objects come from, in the order they are read: its manifest
    files, then its chart folder or kustomization folder."""
    extra = (service.helm.chart,) if service.helm else (service.kustomize,) if service.kustomize else ()
    return (*service.manifests, *extra)


def check_origins(service: Service) -> tuple:
    """What stack.check reads for a service: its origins, then its run step's Job manifest."""
    return (*origins(service), *runspec.files(service))


def run_objects(service: Service, namespace: str) -> list:
    """What the service's run step will create, as stack.check knows it before it has run: its
    ConfigMap with the declared `keys` (runspec.check_objects)."""
    return runspec.check_objects(service, namespace)


def documents(
    service: Service, namespace: str, runner: Runner | None = None, *, log_path=None, timeout=RENDER_TIMEOUT
) -> list:
    """The service's objects from every source it declares, as render.load_documents gives them."""
    return [
        doc
        for origin in origins(service)
        for doc in origin_documents(service, origin, namespace, runner, log_path=log_path, timeout=timeout)
    ]


def origin_documents(
    service: Service,
    origin: Path,
    namespace: str,
    runner: Runner | None = None,
    *,
    log_path=None,
    timeout=RENDER_TIMEOUT,
) -> list:
    """The objects one origin (see origins) gives: read, or rendered by helm or kubectl."""
    if service.helm is not None and origin == service.helm.chart:
        runner = runner or Runner()
        runner.add_secrets(helm_secrets(service.helm))
        return _rendered(
            service, origin, "helm template", helm_argv(service.helm, namespace), runner, log_path, timeout
        )
    if origin == service.kustomize:
        return _rendered(
            service,
            origin,
            "kubectl kustomize",
            kustomize_argv(origin),
            runner or Runner(),
            log_path,
            timeout,
        )
    return render.load_documents(origin)


def helm_argv(helm: Helm, namespace: str) -> list:
    """`helm template` of a local chart.

    --include-crds: helm leaves the chart's crds/ folder out of `template` otherwise, and kindling
    applies CRDs first. --skip-tests: test hooks are for `helm test`, not objects to run. Other
    hooks are applied as ordinary objects (a pre-install Job runs and is waited for like any Job).
    `set:` values go in as --set-json, so each means what the same value means in a values file
    (a quoted "true" stays a string, 1.5 stays a number) and a comma or backslash in a value needs
    no escaping (helm.sh/helm/v3 pkg/strvals/parser.go: --set types its values and splits at commas).
    """
    argv = [
        "helm",
        "template",
        helm.release,
        str(helm.chart),
        "--namespace",
        namespace,
        "--include-crds",
        "--skip-tests",
    ]
    for values_file in helm.values:
        argv += ["--values", str(values_file)]
    for key, value in helm.set_values.items():
        argv += ["--set-json", f"{key}={json.dumps(value)}"]
    return argv


def kustomize_argv(folder: Path) -> list:
    """kubectl's built-in kustomize (kubectl 1.14 and newer)."""
    return ["kubectl", "kustomize", str(folder)]


def helm_secrets(helm: Helm) -> list:
    """`set:` values whose key looks secret (db.password, auth.token): masked wherever kindling prints."""
    return [str(value) for key, value in helm.set_values.items() if SECRET_NAME_RE.search(key)]


def _rendered(
    service: Service, origin: Path, tool: str, argv: list, runner: Runner, log_path, timeout
) -> list:
    """Run a renderer and parse what it prints. stdout is kept out of the step log on purpose: it
    holds the rendered Secrets, which kindling keeps only in mode-0600 files."""
    try:
        result = runner.run(argv, check=False, mutating=False, timeout=timeout)
    except CommandFailed as exc:
        if runner.stopping:
            raise
        fix = f"\n  fix: {HELM_INSTALL}" if exc.returncode == 127 and argv[0] == "helm" else ""
        raise SourceError(
            f"{origin}: service {service.name}: `{tool}` failed: {str(exc).splitlines()[0]}{fix}"
        ) from None
    if log_path:
        _log(log_path, display(argv, secrets=runner.secrets), runner.mask_text(result.stderr))
    if result.exit_code != 0:
        last = runner.mask_text(tail(result.stderr) or tail(result.stdout) or "no output")
        raise SourceError(
            f"{origin}: service {service.name}: `{tool}` failed (exit {result.exit_code}):\n"
            + "\n".join("    " + line for line in last.splitlines())
        )
    return render.parse_documents(result.stdout, f"{origin} ({tool} of service {service.name})")


def _log(log_path: Path, shown: str, stderr: str) -> None:
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as handle:
        handle.write(f"$ {shown}\n{stderr}")
