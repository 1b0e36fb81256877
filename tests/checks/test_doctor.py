"""`invoke doctor`: kind's podman needs, version skew, failing tools, and a stack that does not load."""

import dataclasses
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ROOT, invoke

from tasks.libs.adapters.kubectl import Kubectl
from tasks.libs.checks import kindhost, preflight, skew
from tasks.libs.checks.checkresult import FAIL, OK, WARN, Probe
from tasks.libs.phases import cluster as cluster_phase
from tasks.libs.procs.fakerunner import FakeRunner
from tasks.libs.procs.runner import Result, Runner
from tasks.libs.runs import ClusterState
from tasks.libs.stack.model import load_stack


def podman_info(rootless=False, cgroup="v2", driver="k8s-file", graph_root="/var/lib/containers/storage"):
    """The parts of `podman info --format json` kind's provider reads (provider.go podmanInfo),
    and logDriver."""
    return Result(
        json.dumps(
            {
                "host": {"security": {"rootless": rootless}, "cgroupVersion": cgroup, "logDriver": driver},
                "store": {"graphRoot": graph_root},
            }
        ),
        0,
    )


def info_runner(**info):
    return FakeRunner([(lambda a: a[:2] == ["podman", "info"], podman_info(**info))])


def by_name(checks):
    return {c.name: c for c in checks}


# ---- 7. what kind's podman provider needs -----------------------------------------------------


@pytest.mark.parametrize(
    "rootless,cgroup,status", [(False, "v1", OK), (False, "v2", OK), (True, "v2", OK), (True, "v1", FAIL)]
)
def test_rootless_podman_needs_cgroup_v2(rootless, cgroup, status):
    runner = info_runner(rootless=rootless, cgroup=cgroup)
    checks, store = kindhost.podman_checks(preflight.HostInfo(runner), journal=lambda r: True)
    mode = by_name(checks)["podman mode"]
    assert mode.status == status, mode.line()
    if status == FAIL:
        assert "rootless with cgroup v1: kind's rootless provider needs cgroup v2" in mode.detail
        assert "systemd.unified_cgroup_hierarchy=1" in mode.fix and "rootful" in mode.fix
    assert str(store) == "/var/lib/containers/storage"
    # one podman info call serves every podman check and the image store
    assert [argv for argv in runner.commands()] == [["podman", "info", "--format", "json"]]


@pytest.mark.parametrize(
    "driver,journal,status",
    [
        ("k8s-file", False, OK),
        ("json-file", False, OK),
        ("journald", True, OK),
        ("journald", False, FAIL),
        ("none", True, FAIL),
        ("passthrough", True, FAIL),
        ("something-new", True, WARN),
    ],
)
def test_log_drivers_kind_can_and_cannot_follow(driver, journal, status):
    checks, _ = kindhost.podman_checks(
        preflight.HostInfo(info_runner(driver=driver)), journal=lambda r: journal
    )
    check = by_name(checks)["log driver"]
    assert check.status == status, check.line()
    if status != OK:
        assert 'log_driver = "k8s-file"' in check.fix and "containers.conf" in check.fix
    if status == FAIL:
        assert "podman logs -f" in check.detail


def test_podman_info_failing_is_reported_with_what_failed():
    runner = FakeRunner(
        [(lambda a: a[:2] == ["podman", "info"], Result("", 125, "Error: cannot connect to podman socket\n"))]
    )
    checks, store = kindhost.podman_checks(preflight.HostInfo(runner))
    assert store is None
    assert [c.line() for c in checks] == [
        "FAIL podman info    `podman info --format json` failed (exit 125): Error: cannot connect to podman "
        "socket\n     fix: run `podman info` to see why; kind's podman provider needs it too"
    ]


def test_lib_modules_must_exist(tmp_path):
    assert kindhost.modules_check(tmp_path).status == OK
    missing = kindhost.modules_check(tmp_path / "modules")
    assert missing.status == FAIL and "kind mounts it read-only into every node" in missing.detail
    assert missing.fix == f"sudo mkdir -p {tmp_path / 'modules'}"


def test_docker_engine_skips_the_podman_only_checks(monkeypatch, tmp_path):
    monkeypatch.setattr(preflight.shutil, "which", lambda name, **_: f"/usr/bin/{name}")
    runner = FakeRunner(
        [
            (lambda a: a[:2] == ["docker", "version"], Result("24.0.7\n", 0)),
            (lambda a: a[:2] == ["kind", "version"], Result("kind v0.32.0 go1.24.4 linux/amd64\n", 0)),
            (
                lambda a: a[:2] == ["kubectl", "version"],
                Result('{"clientVersion": {"gitVersion": "v1.36.3"}}', 0),
            ),
            (
                lambda a: a[:2] == ["docker", "info"],
                Result(json.dumps({"DockerRootDir": str(tmp_path), "CgroupVersion": "2"}), 0),
            ),
        ]
    )
    stack = dataclasses.replace(load_stack(ROOT / "demo.yaml", env={}), engine="docker")
    checks = preflight.run_checks(
        stack, runner, tmp_path / "home", 1024**3, 2 * 1024**3, env={"KINDLING_MIN_FREE_DISK": "1MiB"}
    )
    names = [c.name for c in checks]
    assert "podman mode" not in names and "log driver" not in names
    assert ["podman", "info", "--format", "json"] not in [argv for argv in runner.commands()]
    assert {"docker", "kind", "kubectl", "kind provider", "/lib/modules", "image store", "run folder"} <= set(
        names
    )
    # one `docker info`, as kind's docker provider asks it, serves the image store and the cgroup version
    assert [argv for argv in runner.commands() if argv[:2] == ["docker", "info"]] == [
        ["docker", "info", "--format", "{{json .}}"]
    ]
    assert by_name(checks)["image store"].detail.endswith(f"under {tmp_path} (needs 0.0 GiB)")
    assert by_name(checks)["cgroup"].detail == "cgroup v2 host: the kubelet needs no failCgroupV1"


# ---- the kubelet's failCgroupV1 on cgroup v1 hosts ------------------------------------------------


@pytest.mark.parametrize(
    "cgroup,image,line",
    [
        (
            "v1",
            "kindest/node:v1.36.1",
            "ok   cgroup         cgroup v1 host and node v1.36: kind config gets KubeletConfiguration "
            "failCgroupV1: false; node image kindest/node:v1.36.1 (KINDLING_NODE_IMAGE)",
        ),
        (
            "v2",
            "kindest/node:v1.36.1",
            "ok   cgroup         cgroup v2 host: the kubelet needs no failCgroupV1",
        ),
        (
            "v1",
            "kindest/node:v1.34.0",
            "ok   cgroup         cgroup v1 host and node v1.34: kubelets before 1.35 run on cgroup v1 as is; "
            "no failCgroupV1 patch; node image kindest/node:v1.34.0 (KINDLING_NODE_IMAGE)",
        ),
    ],
)
def test_doctor_says_the_cgroup_version_and_whether_the_kubelet_gets_failcgroupv1(cgroup, image, line):
    env = {"KINDLING_NODE_IMAGE": image}
    host = preflight.HostInfo(info_runner(cgroup=cgroup))
    assert preflight.cgroup_check(host, load_stack(ROOT / "demo.yaml", env=env), env).line() == line


def test_doctor_counts_a_kind_config_that_sets_failcgroupv1(tmp_path):
    config = tmp_path / "kind.yaml"
    config.write_text(
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nkubeadmConfigPatches:\n"
        "  - |\n    kind: KubeletConfiguration\n    failCgroupV1: true\n"
    )
    stack = dataclasses.replace(load_stack(ROOT / "demo.yaml", env={}), cluster_config=config)
    check = preflight.cgroup_check(preflight.HostInfo(info_runner(cgroup="v1")), stack, {})
    assert check.status == OK
    assert check.detail == "cgroup v1 host: the kind config sets failCgroupV1 itself; kindling leaves it"


def test_doctor_reads_the_cgroup_version_from_its_one_podman_info(tmp_path, monkeypatch):
    monkeypatch.setattr(preflight.shutil, "which", lambda name, **_: f"/usr/bin/{name}")
    runner = FakeRunner(
        [
            (lambda a: a[:2] == ["podman", "version"], Result("5.4.2\n", 0)),
            (lambda a: a[:2] == ["kind", "version"], Result("kind v0.32.0 go1.24.4 linux/amd64\n", 0)),
            (lambda a: a[:2] == ["podman", "info"], podman_info(cgroup="v1", graph_root=str(tmp_path))),
        ]
    )
    env = {"KINDLING_MIN_FREE_DISK": "1MiB"}
    checks = preflight.run_checks(load_stack(ROOT / "demo.yaml", env={}), runner, tmp_path, 0, 0, env=env)
    assert by_name(checks)["cgroup"].line() == (
        "ok   cgroup         cgroup v1 host and node v1.36: kind config gets KubeletConfiguration "
        "failCgroupV1: false; node image kindest/node:v1.36.1 (kind 0.32.0's default node image)"
    )
    assert [argv for argv in runner.commands() if argv[:2] == ["podman", "info"]] == [
        ["podman", "info", "--format", "json"]
    ]


# ---- 16. version skew -------------------------------------------------------------------------


def server_runner(server=None, stderr=""):
    answer = (
        Result(
            json.dumps({"clientVersion": {"gitVersion": "v1.33.1"}, "serverVersion": {"gitVersion": server}}),
            0,
        )
        if server
        else Result(json.dumps({"clientVersion": {"gitVersion": "v1.33.1"}}), 1, stderr)
    )
    return FakeRunner([(lambda a: a[0] == "kubectl" and "version" in a, answer)])


def test_kubectl_skew_against_the_stacks_cluster(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    absent = skew.kubectl_skew_check(server_runner("v1.36.1"), kubeconfig, "demo-e2e", "v1.33.1")
    assert absent.status == OK and absent.detail.startswith("no cluster yet (demo-e2e)")
    kubeconfig.write_text("{}")
    runner = server_runner("v1.34.2")
    assert skew.kubectl_skew_check(runner, kubeconfig, "demo-e2e", "v1.33.1").status == OK
    argv = runner.calls[0].argv
    assert argv[:3] == ["kubectl", "--kubeconfig", str(kubeconfig)] and "--request-timeout=5s" in argv
    far = skew.kubectl_skew_check(server_runner("v1.36.1"), kubeconfig, "demo-e2e", "v1.33.1")
    assert far.status == WARN, far.line()
    assert far.detail == (
        "kubectl 1.33, cluster demo-e2e Kubernetes 1.36: kubectl supports one minor version "
        "either side of the API server (kubernetes.io version skew policy)"
    )
    assert far.fix.startswith("use kubectl 1.35-1.37")
    down = skew.kubectl_skew_check(
        server_runner(stderr="The connection to the server 127.0.0.1:1 was refused"),
        kubeconfig,
        "demo-e2e",
        "v1.33.1",
    )
    assert down.status == OK and down.detail.startswith(
        "no cluster yet: demo-e2e's API server did not answer"
    )
    assert "(exit 1): The connection to the server 127.0.0.1:1 was refused" in down.detail


def test_kubectl_skew_with_a_real_kubectl_and_no_server(testenv, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: x, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: x, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: x, user: x}}]\n"
    )
    check = skew.kubectl_skew_check(Runner(), kubeconfig, "c", "v1.33.0")
    assert check.status == OK and check.detail.startswith(
        "no cluster yet: c's API server did not answer ("
    ), check


@pytest.mark.parametrize(
    "kind,image,status,detail",
    [
        ("kind v0.32.0 go1.24 linux/amd64", "", OK, "kind 0.32.0's default"),
        ("kind v0.32.0 go1.24 linux/amd64", "kindest/node:v1.36.1", OK, "kind 0.32.0 supports up to v1.36.1"),
        (
            "kind v0.32.0 go1.24 linux/amd64",
            "kindest/node:v1.33.4@sha256:" + "a" * 64,
            OK,
            "supports up to v1.36.1",
        ),
        (
            "kind v0.32.0 go1.24 linux/amd64",
            "kindest/node:v1.37.0",
            WARN,
            "kindest/node:v1.37.0 is Kubernetes 1.37, newer than kind 0.32.0 supports "
            "(its newest node image is v1.36.1)",
        ),
        ("kind v0.29.0 go1.24 linux/amd64", "kindest/node:v1.34.0", WARN, "newer than kind 0.29.0 supports"),
        (
            "kind v0.32.0 go1.24 linux/amd64",
            "localhost/my-node:latest",
            OK,
            "not compared: its tag is not vX.Y.Z",
        ),
        (
            "kind v0.40.0 go1.30 linux/amd64",
            "kindest/node:v1.44.0",
            OK,
            "not compared: kindling knows kind releases",
        ),
    ],
)
def test_node_image_against_the_kind_release(kind, image, status, detail):
    check = skew.node_image_check(kind, image)
    assert check.status == status and detail in check.detail, check.line()
    if status == WARN:
        assert "KINDLING_NODE_IMAGE" in check.fix


def test_the_table_knows_the_default_image_of_the_kind_the_test_environment_pins(testenv):
    """Read from the kind module the test environment built kind from (Go's module cache)."""
    module = ROOT / "tests" / "testenv" / "kind"
    found = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Version}} {{.Dir}}", "sigs.k8s.io/kind"],
        cwd=module,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    version, folder = found
    major_minor = tuple(int(part) for part in version.lstrip("v").split(".")[:2])
    source = Path(folder) / "pkg" / "apis" / "config" / "defaults" / "image.go"
    default = re.search(r"kindest/node:(v[0-9.]+)@", source.read_text())[1]
    assert skew.KIND_DEFAULT_NODE[major_minor] == default


# ---- 20. a tool that is on PATH but whose version call fails ---------------------------------


def broken_tool(folder, name, code=3, message="error while loading shared libraries: libfoo.so.1"):
    folder.mkdir(exist_ok=True)
    path = folder / name
    # The pause before exiting lets the runner's output threads drain stderr: sh 2.4's wait(timeout) can
    # return before they have (reported separately); here the message itself is what is tested.
    path.write_text(f"#!/bin/sh\necho 'starting' >&2\necho '{name}: {message}' >&2\nsleep 0.3\nexit {code}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_a_failing_version_call_says_what_failed(tmp_path, monkeypatch):
    broken_tool(tmp_path / "bin", "kind")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    found = preflight.tool_versions(Runner(), "podman")
    assert found["kind"] == Probe(
        None, "`kind version` failed (exit 3): kind: error while loading shared libraries: libfoo.so.1"
    )
    check = preflight.version_check("kind", found["kind"])
    assert check.status == FAIL and "not found on PATH" not in check.line()
    assert check.detail.startswith("on PATH, but `kind version` failed (exit 3)")
    assert preflight.version_check("kind", Probe(None)).detail == "not found on PATH"


# ---- 19. a stack that does not load is one more FAIL, after every tool check ----------------


def test_doctor_checks_the_tools_even_when_the_stack_does_not_load(tmp_path):
    stack = tmp_path / "stack.yaml"
    stack.write_text("name: broken\nsource: no-such-checkout\nservices:\n  a:\n    image: busybox:1\n")
    bin_dir = tmp_path / "bin"
    broken_tool(bin_dir, "kind", code=2, message="cannot execute binary file")
    env = {
        "E2E_STACK": str(stack),
        "KINDLING_HOME": str(tmp_path / "home"),
        "PATH": f"{bin_dir}{os.pathsep}{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
    }
    result = invoke(["doctor"], env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout
    assert re.search(
        r"^FAIL kind\s+on PATH, but `kind version` failed \(exit 2\): kind: cannot execute binary file",
        out,
        re.M,
    ), out
    assert re.search(r"^(ok|FAIL|warn)\s+kubectl\s", out, re.M) and re.search(
        r"^\S+\s+podman\s", out, re.M
    ), out
    assert re.search(r"^ok\s+/lib/modules|^FAIL /lib/modules", out, re.M), out
    assert re.search(
        rf"^FAIL stack\s+{re.escape(str(stack))}: source: folder .*no-such-checkout does not exist\n"
        r"\s+fix: ",
        out,
        re.M,
    ), out
    assert out.rstrip().splitlines()[-2].startswith("FAIL stack")  # listed after every other check
    assert re.search(r"doctor: \d problem\(s\): .*kind.*stack", result.stderr), result.stderr


def test_doctor_with_an_unreadable_stack_file_still_checks_the_tools(tmp_path):
    stack = tmp_path / "stack.yaml"
    stack.write_text("name: [unclosed\n")
    result = invoke(["doctor"], {"E2E_STACK": str(stack), "KINDLING_HOME": str(tmp_path / "home")})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert re.search(r"^\S+\s+podman\s", result.stdout, re.M), result.stdout
    assert re.search(r"^FAIL stack\s+.*stack\.yaml", result.stdout, re.M), result.stdout


def test_the_preflight_asks_the_api_server_once_and_the_cluster_step_trusts_its_answer(tmp_path, monkeypatch):
    """The server's version is asked beside the other preflight questions; the cluster step then skips
    its /readyz, which would tell nothing new, unless the server did not answer."""
    monkeypatch.setattr(preflight.shutil, "which", lambda name, **_: f"/usr/bin/{name}")
    stack = load_stack(ROOT / "demo.yaml", env={})
    kubeconfig = ClusterState(tmp_path, stack.cluster_name).kubeconfig
    kubeconfig.parent.mkdir(parents=True)
    kubeconfig.write_text("{}")
    for server, readyz_asked in (("v1.36.3", 0), (None, 1)):
        runner = server_runner(server)
        runner.answers = [
            (lambda a: a[:2] == ["podman", "info"], podman_info(graph_root=str(tmp_path)))
        ] + list(runner.answers)
        host = preflight.HostInfo(runner, "podman")
        preflight.run_checks(stack, runner, tmp_path, 0, 0, {"KINDLING_MIN_FREE_DISK": "1MiB"}, host=host)
        asked = [a for a in runner.commands("kubectl", "--kubeconfig") if "version" in a]
        assert len(asked) == 1, asked
        assert host.api_answered(kubeconfig) is (server is not None)
        ctx = SimpleNamespace(host_info=host, cluster_state=ClusterState(tmp_path, stack.cluster_name))
        ctx.kubectl = Kubectl(kubeconfig, runner)
        cluster_phase.api_problem(ctx)
        assert len([a for a in runner.commands("kubectl") if "/readyz" in a]) == readyz_asked
