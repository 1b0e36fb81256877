"""e2e.test, e2e.run, coverage mode and the run report: real podman, the real kind and kubectl of the
test environment, headless Chromium."""

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import yaml
from conftest import IN_CI, invoke

SUITE = """\
import json, os, sys
record = {k: v for k, v in os.environ.items() if k.startswith("E2E_") or k == "KUBECONFIG"}
record["argv"] = sys.argv[1:]
with open(os.environ["SUITE_RECORD"], "w") as handle:
    json.dump(record, handle)
sys.exit(int(os.environ.get("SUITE_EXIT", "0")))
"""


@pytest.fixture
def suite_world(stack_maker, tools, testenv, tmp_path):
    path = stack_maker.write(
        {"a": {"sleep": 0, "log": "a says hello"}, "b": {"sleep": 0, "depends_on": ["a"]}}
    )
    stack = yaml.safe_load(path.read_text())
    (stack_maker.folder / "suite.py").write_text(SUITE)
    stack["test"] = {"command": [sys.executable, "suite.py"], "env": {"SUITE_EXIT": "${SUITE_EXIT:-0}"}}
    stack["services"]["b"]["build"]["coverage_args"] = {"GOFLAGS": "-cover"}
    path.write_text(yaml.safe_dump(stack, sort_keys=False))
    record = tmp_path / "suite-record.json"
    env = {
        **tools.env,
        "E2E_STACK": str(path),
        "KINDLING_HOME": str(tmp_path / "home"),
        "SUITE_RECORD": str(record),
        "KINDLING_MIN_FREE_DISK": "50MiB",
        "KINDLING_LOCK_DIR": str(tmp_path / "locks"),
    }
    return {
        "path": path,
        "env": env,
        "record": record,
        "home": tmp_path / "home",
        "maker": stack_maker,
        "tools": tools,
        "testenv": testenv,
        "cluster": f"{stack_maker.project}-e2e",
    }


def newest_run(home):
    return json.loads(sorted(home.glob("runs/*/run.json"), key=lambda p: p.stat().st_mtime)[-1].read_text())


def test_run_passing_suite_tears_down(suite_world):
    w = suite_world
    result = invoke(["e2e.run", "--", "--focus=Smoke"], w["env"])
    assert result.returncode == 0, result.stdout + result.stderr
    seen = json.loads(w["record"].read_text())
    assert seen["argv"] == ["--focus=Smoke"]
    assert seen["E2E_NAMESPACE"] == "testns" and seen["E2E_CLUSTER"] == w["cluster"]
    assert seen["KUBECONFIG"].endswith(f"clusters/{w['cluster']}/kubeconfig")
    assert seen["E2E_IMAGE_A"].startswith(f"localhost/{w['maker'].project}/a:")
    steps = {s["id"]: s for s in newest_run(w["home"])["steps"]}
    assert steps["test"]["status"] == "ok"
    assert steps["test"]["start"] >= max(steps["deploy:a"]["end"], steps["deploy:b"]["end"])
    assert w["cluster"] not in w["testenv"].clusters() and w["maker"].images() == []


def test_run_failing_suite_keeps_cluster_and_propagates_exit_code(suite_world):
    w = suite_world
    result = invoke(["e2e.run"], {**w["env"], "SUITE_EXIT": "3"})
    assert result.returncode == 3, result.stdout + result.stderr
    assert w["cluster"] in w["testenv"].clusters()
    diagnostics = next(w["home"].glob("runs/*/diagnostics/suite"))
    assert (diagnostics / "describe-pods.txt").exists() and any((diagnostics / "kind-logs").iterdir())
    # The containers' own output, as the real kubelet logged it (kind export logs: /var/log/pods).
    logged = [p for p in (diagnostics / "kind-logs").rglob("*.log") if "testns_a-" in str(p)]
    assert any("a says hello" in p.read_text(errors="replace") for p in logged), logged
    assert newest_run(w["home"])["status"] == "failed"
    # e2e.test against the kept environment, with --args, passes the exit code through too.
    again = invoke(["e2e.test", "--args", "--focus 'two words'"], {**w["env"], "SUITE_EXIT": "0"})
    assert again.returncode == 0, again.stderr
    assert json.loads(w["record"].read_text())["argv"] == ["--focus", "two words"]
    failing = invoke(["e2e.test"], {**w["env"], "SUITE_EXIT": "5"})
    assert failing.returncode == 5
    assert invoke(["e2e.teardown"], w["env"]).returncode == 0


# A service in Go whose coverage counters are real: built with -cover, it serves on 8080 and, on the
# SIGTERM of a scale to zero, returns from main so the runtime writes its counters to GOCOVERDIR.
GO_SERVICE = """\
package main

import (
	"context"
	"net/http"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	answer := func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("covered")) }
	server := &http.Server{Addr: ":8080", Handler: http.HandlerFunc(answer)}
	go server.ListenAndServe()
	<-ctx.Done()
	server.Shutdown(context.Background())
}
"""


def go_service(folder):
    """Build GO_SERVICE with -cover on the host (no Go image can be pulled) into folder/server."""
    (folder / "main.go").write_text(GO_SERVICE)
    (folder / "go.mod").write_text("module kindling.test/covered\n\ngo 1.22\n")
    subprocess.run(
        ["go", "build", "-cover", "-o", "server", "."],
        cwd=folder,
        check=True,
        capture_output=True,
        timeout=300,
        env={**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"},
    )
    (folder / "Containerfile").write_text('FROM scratch\nCOPY server /server\nENTRYPOINT ["/server"]\n')


def test_coverage_mode_renders_mounts_and_env_without_touching_committed_files(suite_world):
    w = suite_world
    go_service(w["maker"].folder / "src" / "b")
    committed = {p: p.read_bytes() for p in (w["maker"].folder / "manifests").glob("*.yaml")}
    result = invoke(["e2e.setup", "--coverage"], w["env"])
    assert result.returncode == 0, result.stdout + result.stderr
    kubeconfig = w["home"] / "clusters" / w["cluster"] / "kubeconfig"
    deployments = w["testenv"].kubectl_json(kubeconfig, "get", "deployments", "-n", "testns")["items"]
    pods = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in deployments}
    b = pods["b"]
    assert {"name": "GOCOVERDIR", "value": "/coverdata"} in b["containers"][0]["env"]
    assert any(m["mountPath"] == "/coverdata" for m in b["containers"][0]["volumeMounts"])
    assert any(v.get("hostPath", {}).get("path") == "/coverdata" for v in b["volumes"])
    assert "env" not in pods["a"]["containers"][0]  # no coverage_args: untouched
    create = next(c for c in w["tools"].calls("kind") if c["argv"][:2] == ["create", "cluster"])
    config = yaml.safe_load(open(create["argv"][create["argv"].index("--config") + 1]))
    mount = config["nodes"][0]["extraMounts"][0]
    assert mount["containerPath"] == "/coverdata"
    image_log = next(w["home"].glob("runs/*/logs/image-b.log")).read_text()
    assert "--build-arg GOFLAGS=-cover" in image_log
    assert {p: p.read_bytes() for p in committed} == committed
    # e2e.test --coverage scales b to zero: the real Go binary writes its counters on its way out,
    # through the node's mount (kind's extraMounts) into the host folder, and they are collected.
    tested = invoke(["e2e.test", "--coverage"], w["env"])
    assert tested.returncode == 0, tested.stderr
    assert "go tool covdata textfmt" in tested.stdout
    (collected,) = w["home"].glob("runs/*/coverdata")
    names = [p.name for p in collected.iterdir()]
    assert any(n.startswith("covmeta.") for n in names) and any(n.startswith("covcounters.") for n in names)
    percent = subprocess.run(
        ["go", "tool", "covdata", "percent", f"-i={collected}"], capture_output=True, text=True, timeout=120
    )
    assert "kindling.test/covered" in percent.stdout and "coverage:" in percent.stdout, percent
    scales = [c["argv"] for c in w["tools"].calls("kubectl") if "scale" in c["argv"]]
    assert any("deployment/b" in a and "--replicas=0" in a for a in scales)
    assert (
        w["testenv"].kubectl_json(kubeconfig, "get", "deployment", "b", "-n", "testns")["spec"]["replicas"]
        == 0
    )
    # The scale-down made b no longer "as deployed": the next setup rolls it out again.
    again = invoke(["e2e.setup", "--coverage"], w["env"])
    assert again.returncode == 0, again.stdout + again.stderr
    outcomes = {s["id"]: s["outcome"] for s in newest_run(w["home"])["steps"]}
    assert outcomes["deploy:b"] == "ready" and outcomes["deploy:a"] == "up to date", outcomes
    b = w["testenv"].kubectl_json(kubeconfig, "get", "deployment", "b", "-n", "testns")
    assert b["spec"]["replicas"] == 1 and b["status"].get("availableReplicas") == 1
    assert invoke(["e2e.teardown"], w["env"]).returncode == 0


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if IN_CI:
        pytest.fail("chromium is needed to check the HTML report (CI=true: install it in .ci/run)")
    pytest.skip("chromium not installed")


def test_report_table_html_and_svg_match_run_json(suite_world, tmp_path):
    w = suite_world
    assert invoke(["e2e.setup"], w["env"]).returncode == 0
    result = invoke(["e2e.report"], w["env"])
    assert result.returncode == 0, result.stderr
    assert "critical path" in result.stdout and "deploy:b" in result.stdout
    run = newest_run(w["home"])
    html_path = next(w["home"].glob("runs/*/report.html"))
    html = html_path.read_text()
    assert "<script" not in html and "http" not in html.split("<svg", 1)[0]
    svg = ET.fromstring(html[html.index("<svg") : html.index("</svg>") + 6])
    ns = "{http://www.w3.org/2000/svg}"
    scale, x0 = float(svg.get("data-scale")), float(svg.get("data-x0"))
    bars = {r.get("data-step"): r for r in svg.iter(f"{ns}rect")}
    steps = [s for s in run["steps"] if s["start"] is not None]
    assert set(bars) == {s["id"] for s in steps}
    for step in steps:
        bar = bars[step["id"]]
        assert float(bar.get("x")) == pytest.approx(x0 + step["start"] * scale, abs=0.05)
        assert float(bar.get("width")) == pytest.approx(max(1.0, step["seconds"] * scale), abs=0.05)
        assert (bar.get("data-critical") == "true") == (step["id"] in run["critical_path"])
    browser = chromium()
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium'}",
            f"--screenshot={shot}",
            "--window-size=1000,800",
            html_path.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000  # a page with text and bars, not blank
    assert invoke(["e2e.teardown"], w["env"]).returncode == 0
