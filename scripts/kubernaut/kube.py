"""kubectl for the Kubernaut run steps: argument lists, a timeout on every call, and errors that
say which command failed and why. The cluster is the one KUBECONFIG names; kindling sets it to
the cluster's own kubeconfig and E2E_NAMESPACE to the stack's namespace."""

import json
import os
import subprocess
import sys

TIMEOUT = 120  # seconds for one kubectl call


class StepError(Exception):
    """A run step cannot go on: the message says what failed and how to fix it."""


def namespace() -> str:
    value = os.environ.get("E2E_NAMESPACE", "")
    if not value:
        raise StepError(
            "E2E_NAMESPACE is not set: run this through kindling (a `run:` step), or "
            "export E2E_NAMESPACE and KUBECONFIG yourself"
        )
    return value


def kubectl(*args, stdin: str | None = None, timeout: int = TIMEOUT) -> str:
    """Run kubectl; stdout on success. stdin is never echoed (it may hold Secrets)."""
    argv = ["kubectl", *args]
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise StepError("kubectl is not on PATH: install it (kindling needs it too)") from None
    except subprocess.TimeoutExpired:
        raise StepError(f"`{' '.join(argv)}` did not finish within {timeout} s") from None
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise StepError(f"`{' '.join(argv)}` failed (exit {done.returncode}): {tail}")
    return done.stdout


def get_items(resource: str, ns: str) -> list:
    return json.loads(kubectl("get", resource, "-n", ns, "-o", "json")).get("items", [])


def apply(documents: list, ns: str) -> None:
    """Apply objects given as dicts (JSON is YAML: no YAML library needed). Server-side: a
    client-side apply would copy each object, Secrets' keys included, into an annotation."""
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=kubernaut-run-step",
        "-n",
        ns,
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": documents}),
    )


def main(run) -> None:
    """Run a step's main function: a StepError becomes one line on stderr and exit status 1."""
    try:
        run()
    except StepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
