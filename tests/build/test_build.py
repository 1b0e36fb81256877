"""`invoke build` with real podman builds of generated FROM-scratch + busybox services."""

import json
import os
import signal
import subprocess
import sys
import time

from conftest import ROOT, default_sigint, image_exists, invoke

from tasks.libs.procs.proctree import descendants


def run_json(home):
    runs = sorted((home / "runs").glob("*/run.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(runs[-1].read_text())


def overlapping(steps):
    spans = sorted((s["start"], s["end"]) for s in steps if s["start"] is not None)
    return any(b_start < a_end for (a_start, a_end), (b_start, _) in zip(spans, spans[1:], strict=False))


def sleeping(pid):
    """The RUN-step sleeps below a process (they live in sessions of their own)."""
    found = []
    for child in descendants(pid):
        try:
            cmdline = open(f"/proc/{child}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if cmdline[:2] == [b"/bin/busybox", b"sleep"]:
            found.append(child)
    return found


def podman_children(project: str):
    """podman build/save processes of this test's own stack: others on the machine (a load that
    another test's cluster is finishing) are none of its business."""
    out = subprocess.run(["pgrep", "-af", "podman (build|save)"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line and project in line]


def test_parallel_build_overlaps_and_records_exact_references(stack_maker, tmp_path):
    path = stack_maker.write({"a": {"sleep": 2}, "b": {"sleep": 2}, "c": {"sleep": 2}})
    env = {"E2E_STACK": str(path), "KINDLING_HOME": str(tmp_path / "home")}
    result = invoke(["build", "--parallel"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    images_json = json.loads(next((tmp_path / "home" / "runs").glob("*/images.json")).read_text())
    assert set(images_json) == {"a", "b", "c"}
    for service, info in images_json.items():
        ref = info["ref"]
        assert ref.startswith(f"localhost/{stack_maker.project}/{service}:{service}-")
        assert image_exists(ref), ref
        assert ref in result.stdout
    assert sorted(i["ref"] for i in images_json.values()) == stack_maker.images()
    assert overlapping(run_json(tmp_path / "home")["steps"])
    for service in "abc":
        log = next((tmp_path / "home" / "runs").glob(f"*/logs/image-{service}.log")).read_text()
        assert "podman build" in log and "STEP" in log
    assert "building" in result.stdout and "built in" in result.stdout


def test_jobs_one_never_overlaps_and_second_run_is_cached(stack_maker, tmp_path):
    path = stack_maker.write({"a": {"sleep": 1}, "b": {"sleep": 1}, "c": {"sleep": 1}})
    env = {"E2E_STACK": str(path), "KINDLING_HOME": str(tmp_path / "home")}
    result = invoke(["build", "--parallel", "--jobs", "1"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    steps = run_json(tmp_path / "home")["steps"]
    assert len(steps) == 3 and not overlapping(steps)
    before = stack_maker.images()
    again = invoke(["build", "--parallel"], env)
    assert again.returncode == 0, again.stderr
    assert [s["outcome"] for s in run_json(tmp_path / "home")["steps"]] == ["cached"] * 3
    assert stack_maker.images() == before
    # A change to one service's inputs rebuilds that service alone.
    (stack_maker.folder / "src" / "b" / "version.txt").write_text("2\n")
    third = invoke(["build", "--parallel"], env)
    outcomes = {s["subject"]: s["outcome"] for s in run_json(tmp_path / "home")["steps"]}
    assert outcomes == {"a": "cached", "b": "built", "c": "cached"}, third.stdout


def test_only_selects_services(stack_maker, tmp_path):
    path = stack_maker.write({"a": {}, "b": {}, "c": {}})
    env = {"E2E_STACK": str(path), "KINDLING_HOME": str(tmp_path / "home")}
    result = invoke(["build", "--only", "a,c"], env)
    assert result.returncode == 0, result.stderr
    # Which services have an image, not how many rows podman lists: once in CI, `podman images`
    # (4.3) listed service a's image twice, which is no part of what --only selects.
    listed = stack_maker.images()
    assert sorted({r.split("/")[2].split(":")[0] for r in listed}) == ["a", "c"], listed
    bad = invoke(["build", "--only", "nope"], env)
    assert bad.returncode == 1 and "no service named nope" in bad.stderr and "Traceback" not in bad.stderr


def test_failed_build_names_service_command_and_log_tail(stack_maker, tmp_path):
    path = stack_maker.write({"good": {"sleep": 3}, "broken": {"fail": True}, "late": {}})
    env = {"E2E_STACK": str(path), "KINDLING_HOME": str(tmp_path / "home")}
    result = invoke(["build", "--parallel", "--jobs", "2"], env)
    assert result.returncode != 0
    err = result.stderr
    assert "image:broken failed" in err
    assert "podman build -t localhost/" in err and "/broken:" in err
    assert "last lines:" in err and "/bin/busybox false" in err
    assert "Traceback" not in err
    statuses = {s["subject"]: s["status"] for s in run_json(tmp_path / "home")["steps"]}
    assert statuses["broken"] == "failed"
    assert statuses["late"] in ("not run", "cancelled")  # nothing new starts after a failure
    assert not podman_children(stack_maker.project)


def test_keep_going_builds_the_rest(stack_maker, tmp_path):
    path = stack_maker.write({"broken": {"fail": True}, "fine": {}})
    env = {"E2E_STACK": str(path), "KINDLING_HOME": str(tmp_path / "home")}
    result = invoke(["build", "--parallel", "--keep-going"], env)
    assert result.returncode != 0
    statuses = {s["subject"]: s["status"] for s in run_json(tmp_path / "home")["steps"]}
    assert statuses == {"broken": "failed", "fine": "ok"}


def test_dry_run_prints_commands_and_builds_nothing(stack_maker, tmp_path):
    path = stack_maker.write({"a": {}, "b": {}})
    env = {"E2E_STACK": str(path), "KINDLING_HOME": str(tmp_path / "home"), "GITHUB_TOKEN": "x"}
    result = invoke(["build", "--parallel", "--dry-run"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("[dry-run] podman build -t localhost/") == 2
    assert "--build-arg BASE_IMAGE=" in result.stdout
    assert stack_maker.images() == []


def test_secret_like_build_args_are_masked(stack_maker, tmp_path):
    path = stack_maker.write({"a": {}})
    text = path.read_text().replace("BASE_IMAGE:", "API_TOKEN: s3cr3t-value\n        BASE_IMAGE:")
    path.write_text(text)
    env = {"E2E_STACK": str(path), "KINDLING_HOME": str(tmp_path / "home")}
    result = invoke(["build", "--dry-run"], env)
    assert result.returncode == 0, result.stderr
    assert "API_TOKEN=***" in result.stdout and "s3cr3t-value" not in result.stdout


def test_interrupt_stops_every_build(stack_maker, tmp_path):
    path = stack_maker.write({"a": {"sleep": 60}, "b": {"sleep": 60}})
    env = {**os.environ, "NO_COLOR": "1", "E2E_STACK": str(path), "KINDLING_HOME": str(tmp_path / "home")}
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "build", "--parallel"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if len(sleeping(process.pid)) == 2:
            break
        time.sleep(0.2)
    else:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
        raise AssertionError("the builds never reached their RUN step")
    pids = sleeping(process.pid)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "interrupted" in err
    time.sleep(0.5)
    assert not [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
    assert not podman_children(stack_maker.project)
    assert stack_maker.images() == []
    assert (
        json.loads(next((tmp_path / "home" / "runs").glob("*/run.json")).read_text())["status"]
        == "interrupted"
    )
