"""Streamed image loads: `podman save REF | kind load image-archive /dev/stdin`, with no archive on
disk, and the archive file where streaming is unavailable.

Runner.pipe is tested first with small real commands (its own contract: exit codes, the side
that failed, timeouts, interrupts, the command log); then KindCluster.load_streamed against the
real test environment (real podman, the real kind CLI behind the fault-injecting wrapper, the
session's shared cluster, real crictl in the node).
"""

import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import podman_cmd

from tasks.libs import samples
from tasks.libs.adapters.engine import Podman
from tasks.libs.adapters.kind import KindCluster
from tasks.libs.errors import CommandFailed, PipeFailed
from tasks.libs.procs.commandlog import read_command_log
from tasks.libs.procs.pipeside import pipe_culprit
from tasks.libs.procs.runner import Runner

SETTLE = 120  # upper bound for waiting on a state change; never an assertion on speed


# ----------------------------------------------------------------- pure: who failed, the log


@pytest.mark.parametrize(
    "left, right, tail, stopped, culprit",
    [
        (0, 0, "", (), None),
        (125, 0, "Error: image not known", (), "left"),
        (125, -9, "Error: image not known", ("right",), "left"),  # kind stopped because save failed
        (-13, 1, "", (), "right"),  # save died of SIGPIPE: kind stopped reading
        (125, 1, "Error: write /dev/stdout: broken pipe", (), "right"),  # podman reports EPIPE itself
        (-9, 1, "", ("left",), "right"),  # save stopped because kind failed
        (0, 1, "", (), "right"),
        (-13, 0, "", (), "left"),  # the reader succeeded without reading everything
    ],
)
def test_pipe_culprit(left, right, tail, stopped, culprit):
    assert pipe_culprit(left, right, tail, stopped) == culprit


def test_command_log_lines_are_read_back():
    text = (
        "10:00:00 [read-only] podman images --format json\n"
        "10:00:01 podman build -t 'localhost/p/a:t' .\n"
        "10:00:02 podman save localhost/p/a:t | KIND_EXPERIMENTAL_PROVIDER=podman kind load "
        "image-archive /dev/stdin --name c --nodes c-control-plane\n"
        "10:00:03 [dry-run] kubectl apply -f 'a | b.yaml' '|'\n"
    )
    logged = read_command_log(text)
    assert [(c.processes, c.mutating, c.ran) for c in logged] == [
        (1, False, True),
        (1, True, True),
        (2, True, True),
        (1, True, False),
    ]
    assert logged[0].shown == "podman images --format json"
    assert logged[3].shown == "kubectl apply -f 'a | b.yaml' '|'"


# ------------------------------------------------------------- Runner.pipe on small commands


def busybox_sh():
    return [samples.busybox_binary(), "sh", "-c"]


def test_pipe_carries_bytes_and_logs_both_sides(tmp_path):
    log, commands = tmp_path / "step.log", tmp_path / "commands.log"
    runner = Runner(command_log=commands)
    result = runner.pipe(
        [*busybox_sh(), "echo one; echo two; echo note >&2"],
        [*busybox_sh(), "wc -l; echo done >&2"],
        log_path=log,
        timeout=30,
    )
    assert result.exit_code == 0 and result.stdout.split() == ["2", "done"]
    text = log.read_text()
    assert "busybox: note" in text and "busybox: 2" in text
    [logged] = read_command_log(commands.read_text())
    assert logged.processes == 2 and logged.mutating and " | " in logged.shown
    assert runner.commands_run == {"total": 2, "mutating": 2}


def test_pipe_names_the_writer_when_it_fails_and_stops_the_reader(tmp_path):
    runner = Runner()
    marker = f"reader-{uuid.uuid4().hex[:8]}"
    with pytest.raises(PipeFailed) as failed:
        runner.pipe(
            [*busybox_sh(), "echo bad reference >&2; exit 125"],
            [*busybox_sh(), f"sleep 600; : {marker}"],
            log_path=tmp_path / "log",
            timeout=SETTLE,
        )
    assert failed.value.side == "left" and failed.value.returncode == 125
    assert "busybox sh failed with exit code 125 (it feeds busybox sh)" in str(failed.value)
    assert "bad reference" in failed.value.tail
    assert processes_mentioning(marker) == []


def test_pipe_names_the_reader_when_it_fails(tmp_path):
    runner = Runner()
    with pytest.raises(PipeFailed) as failed:
        runner.pipe(
            [*busybox_sh(), "while true; do echo data; done"],
            [*busybox_sh(), "read line; echo refused >&2; exit 3"],
            timeout=SETTLE,
        )
    assert failed.value.side == "right" and failed.value.returncode == 3
    assert "reads from" in str(failed.value) and "refused" in failed.value.tail


def test_pipe_timeouts_are_per_side(tmp_path):
    runner = Runner()
    with pytest.raises(PipeFailed) as failed:
        runner.pipe([*busybox_sh(), "echo x"], [*busybox_sh(), "cat; sleep 600"], timeout=1)
    assert failed.value.side == "right" and failed.value.returncode == 124
    assert "timed out after 1 s" in str(failed.value)
    with pytest.raises(PipeFailed) as failed:
        runner.pipe([*busybox_sh(), "sleep 600"], [*busybox_sh(), "cat"], timeout=SETTLE, left_timeout=1)
    assert failed.value.side == "left" and "timed out after 1 s" in str(failed.value)


def test_pipe_of_a_missing_program_says_so(tmp_path):
    with pytest.raises(PipeFailed) as failed:
        Runner().pipe([*busybox_sh(), "echo x"], ["kindling-no-such-program"], timeout=30)
    assert failed.value.side == "right" and failed.value.returncode == 127
    assert "not installed or not on PATH" in str(failed.value)


def test_dry_run_prints_the_pipe_and_runs_nothing(tmp_path):
    printed = []
    runner = Runner(dry_run=True, echo=printed.append, command_log=tmp_path / "commands.log")
    marker = tmp_path / "ran"
    assert runner.pipe([*busybox_sh(), f"touch {marker}"], ["cat"]).exit_code == 0
    assert not marker.exists()
    assert printed == [f"[dry-run] {busybox_sh()[0]} sh -c 'touch {marker}' | cat"]
    assert runner.commands_run["total"] == 0


def test_pipe_masks_secrets_in_the_command_log(tmp_path):
    runner = Runner(command_log=tmp_path / "commands.log", secrets={"hunter2secret"})
    runner.pipe([*busybox_sh(), "echo hunter2secret"], ["cat"], timeout=30)
    assert "hunter2secret" not in (tmp_path / "commands.log").read_text()


def test_terminate_all_stops_both_sides(tmp_path):
    runner = Runner()
    marker = f"side-{uuid.uuid4().hex[:8]}"
    errors = []

    def run():
        try:
            runner.pipe(
                [*busybox_sh(), f"sleep 600; : {marker}"],
                [*busybox_sh(), f"sleep 600; : {marker}"],
                timeout=SETTLE * 5,
            )
        except CommandFailed as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: len(processes_mentioning(marker)) == 2, "both sides running")
    runner.terminate_all()
    thread.join(SETTLE)
    assert not thread.is_alive()
    assert processes_mentioning(marker) == []
    assert errors and "stopped by a signal" in str(errors[0])


# ------------------------------------------------------------ the real kind, one shared cluster


@pytest.fixture
def loader(shared_cluster, tools, base_image, tmp_path, monkeypatch):
    """A runner, engine and KindCluster for the shared cluster, with kind behind the wrapper; an
    image of this test's own (a new tag of the busybox base), removed afterwards."""
    for key in ("PATH", "KINDLING_WRAP_STATE"):
        monkeypatch.setenv(key, tools.env[key])
    home = tmp_path / "home"
    run_folder = home / "runs" / "r1"
    (run_folder / "logs").mkdir(parents=True)
    runner = Runner(command_log=run_folder / "commands.log")
    ref = f"localhost/kt{uuid.uuid4().hex[:8]}/streamed:1"
    podman_cmd("tag", base_image, ref)
    cluster = KindCluster(shared_cluster.name, shared_cluster.kubeconfig, runner, "podman")
    yield Loader(runner, Podman(runner), cluster, ref, run_folder, tools, shared_cluster.nodes)
    podman_cmd("rmi", ref, check=False)


class Loader:
    def __init__(self, runner, engine, cluster, ref, run_folder, tools, nodes):
        self.runner, self.engine, self.cluster, self.ref = runner, engine, cluster, ref
        self.run_folder, self.tools, self.nodes = run_folder, tools, nodes
        self.node = nodes[0]
        self.log = run_folder / "logs" / "load-a.log"

    def load(self, ref=None, **options):
        return self.cluster.load_streamed(
            self.engine,
            ref or self.ref,
            self.run_folder / "a.tar",
            log_path=self.log,
            save_timeout=SETTLE,
            load_timeout=SETTLE,
            **options,
        )

    def tars(self):
        return list(self.run_folder.parent.parent.rglob("*.tar"))

    def on_node(self, testenv, ref=None, node=None) -> bool:
        return (ref or self.ref) in testenv.node_images(node or self.node)


def test_a_streamed_load_puts_the_image_on_the_node_with_no_archive_on_disk(loader, testenv):
    loader.tools.faults(delays={"kind.load": 2})  # long enough to look for an archive meanwhile
    seen, done = [], threading.Event()

    def watch():
        while not done.is_set():
            seen.extend(loader.tars())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        how = loader.load()
    finally:
        done.set()
        watcher.join()
    assert how == "streamed"
    assert seen == [] and loader.tars() == []
    assert all(loader.on_node(testenv, node=node) for node in loader.nodes)
    loader.cluster.verify_loaded(loader.engine, loader.ref)
    loads = [c["argv"] for c in loader.tools.calls("kind") if c["argv"][:2] == ["load", "image-archive"]]
    assert sorted(argv[-1] for argv in loads) == sorted(loader.nodes)  # one call per node, by default
    assert all(argv[2] == "/dev/stdin" and argv[-2] == "--nodes" for argv in loads)
    assert "no archive on disk" in loader.log.read_text()
    logged = read_command_log((loader.run_folder / "commands.log").read_text())
    assert [c.processes for c in logged if "kind load" in c.shown] == [2] * len(loader.nodes)


def test_each_node_gets_a_kind_call_and_a_save_of_its_own(loader, testenv):
    """kind would split one pipe between the nodes it reads it for: the control plane and the
    worker each get a save and a kind call, and each ends up holding the image."""
    assert loader.load(nodes=loader.nodes) == "streamed"
    loads = [c["argv"] for c in loader.tools.calls("kind") if c["argv"][:2] == ["load", "image-archive"]]
    assert sorted(argv[-1] for argv in loads) == sorted(loader.nodes) and len(loader.nodes) == 2
    assert all(argv[2] == "/dev/stdin" and argv[-2] == "--nodes" for argv in loads)
    logged = read_command_log((loader.run_folder / "commands.log").read_text())
    pipes = [c for c in logged if "kind load" in c.shown]
    assert len(pipes) == 2 and all(c.shown.startswith(f"podman save {loader.ref} | ") for c in pipes)
    for node in loader.nodes:
        assert loader.on_node(testenv, node=node), node


def test_a_load_to_one_node_leaves_the_other_without_the_image(loader, testenv):
    assert loader.load(nodes=[loader.nodes[1]]) == "streamed"
    assert loader.on_node(testenv, node=loader.nodes[1])
    assert not loader.on_node(testenv, node=loader.nodes[0])


def test_a_failing_kind_load_is_reported_as_kinds_failure(loader, testenv):
    loader.tools.faults(fail={"kind.load": 1})
    with pytest.raises(PipeFailed) as failed:
        loader.load()
    assert failed.value.side == "right"
    assert "kind load failed with exit code 1" in str(failed.value)
    assert "injected failure" in failed.value.tail
    assert processes_mentioning(loader.ref) == []  # the save is not left running
    assert loader.tars() == []
    # The node whose kind call failed did not get the image (the other call may have succeeded).
    assert not all(loader.on_node(testenv, node=node) for node in loader.nodes)


def test_a_failing_save_is_reported_as_the_engines_failure_and_kind_is_stopped(loader):
    missing = f"localhost/kt{uuid.uuid4().hex[:8]}/absent:1"
    loader.tools.faults(delays={"kind.load": 600})  # kind would otherwise end on its own
    with pytest.raises(PipeFailed) as failed:
        loader.load(ref=missing)
    assert failed.value.side == "left"
    assert "podman save failed" in str(failed.value) and "feeds kind load" in str(failed.value)
    assert missing in failed.value.tail  # podman's own error names the reference
    assert [p for p in processes_mentioning(loader.cluster.name) if "image-archive" in p[1]] == []
    assert loader.tars() == []


def test_an_interrupt_stops_both_sides(loader):
    loader.tools.faults(delays={"kind.load": 600})
    errors = []

    def run():
        try:
            loader.load()
        except CommandFailed as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()

    def both_running():
        found = processes_mentioning(loader.ref, "/dev/stdin")
        saves = [p for p in found if "save" in p[1] and loader.ref in p[1]]
        loads = [p for p in found if "image-archive" in p[1] and loader.cluster.name in p[1]]
        return saves and loads

    wait_for(both_running, "podman save and kind load both running")
    loader.runner.terminate_all()  # what SIGINT and SIGTERM do (procs.terminate_everything)
    thread.join(SETTLE)
    assert not thread.is_alive() and errors
    assert processes_mentioning(loader.ref) == []
    assert [p for p in processes_mentioning(loader.cluster.name) if "image-archive" in p[1]] == []
    assert loader.tars() == []


def test_without_dev_stdin_the_archive_file_is_used(loader, testenv, tmp_path):
    loader.cluster.stdin_path = str(tmp_path / "no-stdin-here")
    assert loader.load() == "archive"
    assert loader.on_node(testenv) and loader.tars() == []
    assert "does not exist on this host" in loader.log.read_text()
    [load] = [c for c in loader.tools.calls("kind") if c["argv"][:2] == ["load", "image-archive"]]
    assert load["argv"][2] == str(loader.run_folder / "a.tar")


def test_when_kind_cannot_open_the_stream_the_archive_file_is_used(loader, testenv):
    # open(2) of a socket fails with ENXIO, as kind's open of /dev/stdin does when its stdin is
    # a socket: the real kind refuses the path before reading anything.
    folder = tempfile.mkdtemp(prefix="kt-sock-", dir="/tmp")  # a socket path must be short
    path = os.path.join(folder, "stdin")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    try:
        loader.cluster.stdin_path = path
        assert loader.load() == "archive"
        assert all(loader.on_node(testenv, node=node) for node in loader.nodes) and loader.tars() == []
        text = loader.log.read_text()
        assert f"kind could not read {path} (open {path}: no such device or address)" in text
        *streamed, archived = archive_paths(loader)  # the stream tried (once per node), then the file
        assert set(streamed) == {path} and archived == str(loader.run_folder / "a.tar")
        # Remembered for the rest of the run: the next load goes to the file at once.
        assert loader.load() == "archive"
        assert archive_paths(loader)[len(streamed) + 1 :] == [str(loader.run_folder / "a.tar")]
    finally:
        listener.close()
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------------- helpers


def archive_paths(loader) -> list:
    """The archive path of each `kind load image-archive` call, in order."""
    return [c["argv"][2] for c in loader.tools.calls("kind") if c["argv"][:2] == ["load", "image-archive"]]


def processes_mentioning(*needles) -> list:
    """Live processes (not zombies) whose command line contains one of needles."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            args = Path(f"/proc/{entry}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        joined = " ".join(a for a in args if a)
        if state != "Z" and any(n in joined for n in needles):
            found.append((int(entry), joined))
    return found


def wait_for(condition, what):
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"never saw {what}")
