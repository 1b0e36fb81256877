"""Every kubectl command line kindling builds is one that real kubectl clients accept.

The command lines are collected by running kindling's own code (tasks/libs/adapters/kubectl.py,
the direct kubectl calls of the phases in tasks/libs/phases/) with a recording
runner, then each is run through every real kubectl client on the machine against a
server that cannot be reached (https://127.0.0.1:1). Connecting must fail; parsing
must not: no "unknown flag", "unknown command" or usage text. kubectl's supported
skew is one minor version either side of the server, so a cluster of any supported
version may be driven by any of these clients.
"""

import glob
import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import IN_CI, ROOT

from tasks.libs import render
from tasks.libs.adapters.kubectl import Kubectl
from tasks.libs.context import RunContext
from tasks.libs.phases import cluster as cluster_phase
from tasks.libs.phases import deploy as deploy_phase
from tasks.libs.phases import suite as suite_phase
from tasks.libs.phases import teardown as teardown_phase
from tasks.libs.procs.fakerunner import FakeRunner
from tasks.libs.procs.runner import Result
from tasks.libs.samples import write_stack
from tasks.libs.settings import build_settings
from tasks.libs.stack.model import load_stack

VERSIONED = sorted(
    glob.glob("/usr/lib/google-cloud-sdk/bin/kubectl.1.*"), key=lambda p: int(p.rsplit(".", 1)[1])
)
REFUSALS = ("unknown flag", "unknown shorthand flag", "unknown command", "Usage:")
UNREACHABLE = "https://127.0.0.1:1"


def clients() -> list:
    """kubectl.1.27 ... kubectl.1.33 (Google Cloud SDK packages) and the kubectl first on PATH."""
    found = list(VERSIONED)
    on_path = shutil.which("kubectl")
    if on_path:
        found.append(on_path)
    unique = {}
    for path in found:
        unique.setdefault(os.path.realpath(path), path)
    return list(unique.values())


READY_DEPLOYMENT = {
    "kind": "Deployment",
    "metadata": {"name": "a", "generation": 1},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "a"}}},
    "status": {
        "observedGeneration": 1,
        "replicas": 1,
        "updatedReplicas": 1,
        "readyReplicas": 1,
        "availableReplicas": 1,
    },
}
RESTARTED_POD = {
    "metadata": {"name": "a-1"},
    "status": {"containerStatuses": [{"name": "a", "restartCount": 1}]},
}


def healthy_cluster(call):
    """Answers queries as a healthy cluster would (a FakeRunner's answers)."""
    argv = call.argv
    if argv[:2] == ["podman", "ps"]:
        return Result("c1-control-plane\trunning\n", 0)
    if "get" in argv and "json" in argv:
        obj = {"items": [RESTARTED_POD]} if "pods" in argv else READY_DEPLOYMENT
        return Result(json.dumps(obj), 0)
    return None


def kindling_command_lines(tmp_path) -> list:
    """Every kubectl argument list kindling builds, collected by running its code."""
    recorder = FakeRunner(healthy_cluster)
    tmp_path.mkdir(parents=True, exist_ok=True)
    manifest = tmp_path / "objects.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    kubectl = Kubectl(tmp_path / "kubeconfig", recorder)
    kubectl.apply(manifest)
    kubectl.delete("job", "migrate", "ns")
    kubectl.delete("job", "migrate", "ns", cascade="foreground")
    kubectl.delete_pods("k8s-app=kube-dns", "kube-system")
    kubectl.wait_crd_established("things.example.com", 1)
    kubectl.get_json("deployment/a", "ns")
    kubectl.wait_ready("Deployment", "a", "ns", 1)
    kubectl.api_problem()
    kubectl.diagnostics("ns")
    kubectl.logs("Deployment", "a", "ns")
    Kubectl(tmp_path / "kubeconfig", recorder, context="kind-x").run("cluster-info", timeout=30)

    # The phases' own kubectl calls, through their code paths.
    stack_file = write_stack(
        tmp_path / "stack",
        {"a": {}},
        name="contract",
        project="contract",
        base_image="busybox",
        namespace="ns",
    )
    stack = load_stack(stack_file, env={})
    env = {"KINDLING_HOME": str(tmp_path / "home")}
    ctx = RunContext(stack, build_settings(stack, env, memory_budget=0), env, runner=recorder)
    cluster_phase._ensure_existing(ctx)  # cluster-info, the namespace asked for
    ctx.snapshot.is_ready("Deployment", "a", "ns")  # one listing of the stack's workloads
    covered = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "a", "namespace": "ns"},
        "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"spec": {"volumes": [{"name": render.COVERAGE_VOLUME}]}},
        },
    }
    cluster_phase.coverage_dir(ctx).mkdir(parents=True)  # the node's coverage mount, empty
    original = deploy_phase.rendered
    deploy_phase.rendered = lambda ctx, name: [covered]
    try:
        suite_phase.collect_coverage(ctx)  # scale to zero, wait --for=delete
    finally:
        deploy_phase.rendered = original
    ctx.cluster_state.record_deployed("a", {"objects": [["Deployment", "a", "ns"], ["ClusterRole", "r", ""]]})
    teardown_phase._delete_applied_objects(ctx, teardown_phase.TeardownResult())  # with and without -n

    lines = recorder.commands("kubectl")
    unique = {tuple(argv): argv for argv in lines}
    return list(unique.values())


def test_every_kubectl_verb_in_the_source_is_collected(tmp_path):
    """A new kubectl call site must be added to kindling_command_lines, or this contract misses it."""
    source = "\n".join(p.read_text() for p in (ROOT / "tasks").rglob("*.py"))
    verbs = set(re.findall(r'kubectl\.run\(\s*"([a-z-]+)"', source))
    verbs |= set(
        re.findall(r'self\.run\(\s*"([a-z-]+)"', (ROOT / "tasks/libs/adapters/kubectl.py").read_text())
    )
    verbs |= set(
        re.findall(
            r'\(\s*"(get|describe|events|logs)",', (ROOT / "tasks/libs/adapters/kubectl.py").read_text()
        )
    )
    collected = set()
    for argv in kindling_command_lines(tmp_path):
        args = argv[1:]
        while args and args[0] in ("--kubeconfig", "--context"):
            args = args[2:]
        collected.add(args[0])
    assert verbs, "no kubectl calls found in tasks/: the pattern above is out of date"
    assert verbs <= collected, f"not collected: {sorted(verbs - collected)}"


def run_client(client, argv, kubeconfig, home):
    args = list(argv[1:])
    if "--kubeconfig" in args:
        args[args.index("--kubeconfig") + 1] = str(kubeconfig)
    else:
        args = ["--kubeconfig", str(kubeconfig), *args]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home)}
    try:
        done = subprocess.run([client, *args], capture_output=True, text=True, env=env, timeout=90)
    except subprocess.TimeoutExpired:
        return client, argv, None, "timed out after 90 s"
    return client, argv, done.returncode, done.stdout + done.stderr


def test_real_kubectl_clients_accept_every_command_line(tmp_path):
    found = clients()
    if not found:
        message = "no kubectl client found (/usr/lib/google-cloud-sdk/bin/kubectl.1.*, or kubectl on PATH)"
        if IN_CI:
            pytest.fail(message + " (CI=true: install them)")
        pytest.skip(message)
    kubeconfig = tmp_path / "unreachable-kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        f"clusters: [{{name: x, cluster: {{server: '{UNREACHABLE}', insecure-skip-tls-verify: true}}}}]\n"
        "users: [{name: x, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: x, user: x}},\n"
        "           {name: kind-x, context: {cluster: x, user: x}}]\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    lines = kindling_command_lines(tmp_path / "collect")
    jobs = [(client, argv) for client in found for argv in lines]
    with ThreadPoolExecutor(max_workers=min(32, len(jobs))) as pool:
        results = list(pool.map(lambda job: run_client(*job, kubeconfig, home), jobs))
    refused = []
    for client, argv, code, output in results:
        if code is None or code == 0 or any(word in output for word in REFUSALS):
            # exit 0 would mean a server answered: the unreachable address is not unreachable
            refused.append(
                f"{client} {' '.join(argv[1:])} (exit {code}):\n    "
                + "\n    ".join(output.strip().splitlines()[:6])
            )
    assert not refused, f"{len(refused)} of {len(results)} runs were refused:\n" + "\n".join(refused)
    assert len(lines) >= 20 and len(found) >= 1
