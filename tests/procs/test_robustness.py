"""Robustness: preflight, bad input, interrupts at every phase, bounded commands, concurrent
runs and the cluster lock, cleanup of only what a run made, secrets.

Real podman builds; real kind and kubectl (the test environment) behind thin wrappers that
record each call and inject delays or failures (tests/testenv/wrap). Every CLI run gets
KINDLING_MIN_FREE_DISK=50MiB and its own KINDLING_LOCK_DIR, so neither the disk preflight nor
the host-wide cluster lock of other runs on this machine interferes. Assertions are on exit
codes, output, run.json, the wrappers' calls.jsonl, podman state and /proc, never on how long
something took. Tests that need a cluster but do not create or delete one deploy into the
session's shared cluster, in a namespace of their own.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, StackMaker, default_sigint, image_exists, podman_cmd

from tasks.libs.procs.proctree import descendants

SETTLE = 120  # upper bound for waiting on a state change; never an assertion on speed


# --------------------------------------------------------------------------- helpers


def proc_args(pid) -> list:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def proc_identity(pid):
    """(state, start time) of a process, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], fields[19]


def snapshot(pids) -> dict:
    found = {}
    for pid in pids:
        identity = proc_identity(pid)
        if identity:
            found[pid] = identity[1]
    return found


def still_running(snap: dict) -> list:
    """Processes of a snapshot that still run (same start time, not a zombie)."""
    alive = []
    for pid, started in snap.items():
        identity = proc_identity(pid)
        if identity and identity[1] == started and identity[0] != "Z":
            alive.append((pid, proc_args(pid)))
    return alive


def processes_mentioning(*needles) -> list:
    """Live processes anywhere on the host whose command line contains one of needles."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        args = proc_args(entry)
        identity = proc_identity(entry)
        if args and identity and identity[0] != "Z" and any(n in a for n in needles for a in args):
            found.append((int(entry), args))
    return found


def is_wrapped(args, tool) -> bool:
    """The wrapper process of a tool (python3 .../tests/testenv/wrap/<tool> ARGS...)."""
    return any(a.endswith(f"/wrap/{tool}") for a in args[:2])


class Proc:
    """`invoke ...` started in the background; its output is drained by threads."""

    def __init__(self, args, env):
        # A run that does not end when it should is sent SIGABRT (wait_or_explain): Python then prints
        # every thread's stack, which shows where it was stuck.
        full_env = {**os.environ, "NO_COLOR": "1", "PYTHONFAULTHANDLER": "1", **env}
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args],
            env=full_env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            preexec_fn=default_sigint,
        )
        self.pid = self.popen.pid
        self.out, self.err = [], []
        self.threads = [
            threading.Thread(target=self._drain, args=(self.popen.stdout, self.out), daemon=True),
            threading.Thread(target=self._drain, args=(self.popen.stderr, self.err), daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    @staticmethod
    def _drain(stream, lines):
        for line in stream:
            lines.append(line)

    @property
    def stdout(self):
        return "".join(self.out)

    @property
    def stderr(self):
        return "".join(self.err)

    @property
    def returncode(self):
        return self.popen.returncode

    def poll(self):
        return self.popen.poll()

    def wait(self, timeout=600):
        self.popen.wait(timeout=timeout)
        for thread in self.threads:
            thread.join(timeout=30)
        return self.popen.returncode

    def wait_or_explain(self, timeout):
        """wait(), or, if the run is still going after timeout, fail with what it was doing: the
        processes below it and every thread's stack (faulthandler, on SIGABRT)."""
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            below = [" ".join(proc_args(pid)) for pid in descendants(self.pid)]
            self.popen.send_signal(signal.SIGABRT)
            try:
                self.wait(30)
            except subprocess.TimeoutExpired:
                pass
            raise AssertionError(
                f"the run did not end within {timeout} s; processes below it: {below}\n"
                f"its stderr (with each thread's stack):\n{self.stderr[-6000:]}"
            ) from None

    def stop(self):
        """Test clean-up only: make sure the run and everything below it is gone."""
        if self.popen.poll() is None:
            below = snapshot(descendants(self.pid))
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.wait(timeout=30)
            for pid, _ in still_running(below):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


def wait_until(proc: Proc, condition, what):
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            proc.wait()
            pytest.fail(
                f"the run ended (exit {proc.returncode}) before {what}:\n{proc.stdout}\n{proc.stderr}"
            )
        time.sleep(0.1)
    pytest.fail(f"never saw {what}")


def run_invoke(args, env, timeout=600):
    full_env = {**os.environ, "NO_COLOR": "1", **env}
    return subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        timeout=timeout,
    )


class World:
    """One generated stack, the wrapped real tools, and the state/lock folders of its runs.
    With shared=..., the stack deploys into the session's shared cluster, in its own namespace."""

    def __init__(self, maker: StackMaker, tools, tmp_path: Path, home: Path | None = None, shared=None):
        self.maker, self.tools = maker, tools
        self.home = home or tmp_path / "home"
        self.locks = tmp_path / "locks"
        self.shared = shared
        self.cluster = shared.name if shared else f"{maker.project}-e2e"
        self.namespace = maker.project if shared else "testns"
        self.kubeconfig = self.home / "clusters" / self.cluster / "kubeconfig"
        self.path = None

    def write(self, services, **options) -> Path:
        self.path = self.maker.write(services, cluster=self.cluster, namespace=self.namespace, **options)
        return self.path

    def edit_stack(self, change):
        document = yaml.safe_load(self.path.read_text())
        change(document)
        self.path.write_text(yaml.safe_dump(document, sort_keys=False))

    @property
    def env(self) -> dict:
        return {
            **self.tools.env,
            "E2E_STACK": str(self.path),
            "KINDLING_HOME": str(self.home),
            "KINDLING_MIN_FREE_DISK": "50MiB",
            "KINDLING_LOCK_DIR": str(self.locks),
        }

    def invoke(self, *args, **extra):
        return run_invoke(list(args), {**self.env, **extra})

    def start(self, *args, **extra) -> Proc:
        return Proc(list(args), {**self.env, **extra})

    def faults(self, delays=None, fail=None):
        self.tools.faults(delays=delays, fail=fail)

    def run_files(self, name):
        return sorted((self.home / "runs").glob(f"*/{name}"), key=lambda p: p.stat().st_mtime)

    def last_run(self) -> dict:
        return json.loads(self.run_files("run.json")[-1].read_text())

    def commands(self) -> str:
        return "".join(p.read_text() for p in self.run_files("commands.log"))

    def tars(self):
        return list((self.home / "runs").glob("**/*.tar")) if (self.home / "runs").exists() else []

    def clusters(self):
        return self.tools.clusters()

    def creates(self):
        return [
            c
            for c in self.tools.calls("kind")
            if c["argv"][:2] == ["create", "cluster"] and self.cluster in c["argv"]
        ]

    def applies(self):
        return [c for c in self.tools.calls("kubectl") if "apply" in c["argv"]]

    def deployed_images(self, kubeconfig=None):
        out = self.tools.testenv.kubectl_json(
            kubeconfig or self.kubeconfig, "get", "deployments", "-n", self.namespace
        )
        return {
            d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
            for d in out["items"]
        }


@pytest.fixture
def world(stack_maker, tools, tmp_path):
    """A stack whose cluster kindling creates (the tools fixture deletes what is left)."""
    return World(stack_maker, tools, tmp_path)


@pytest.fixture
def shared_world(stack_maker, tools, shared_cluster, testenv, tmp_path):
    """A stack deployed into the session's shared cluster, in a namespace of its own."""
    w = World(stack_maker, tools, tmp_path, shared=shared_cluster)
    yield w
    testenv.kubectl(
        shared_cluster.kubeconfig, "delete", "namespace", w.namespace, "--wait=false", check=False
    )


def project_images(maker) -> list:
    """maker.images(), tolerating podman 4.3's "image not known" while another process on the
    host removes an image in the middle of the listing."""
    for _ in range(10):
        try:
            return maker.images()
        except subprocess.CalledProcessError:
            time.sleep(0.5)
    return maker.images()


def no_traceback(result):
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr[-3000:]


# ------------------------------------------------------------- 1. doctor and preflight


def test_doctor_reports_tools_provider_disk_and_memory(shared_world):
    world = shared_world
    world.write({"a": {"memory": "64MiB"}})
    assert world.invoke("cluster.create").returncode == 0  # the shared cluster: its kubeconfig
    result = world.invoke("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for pattern in (
        r"^ok\s+podman\s+\d+\.\d+",
        r"^ok\s+kind\s+0\.32\.0",
        r"^ok\s+kubectl\s+1\.36\.3",
        r"^ok\s+kubectl skew\s+.*1\.36",
        r"^ok\s+/lib/modules",
        r"^ok\s+kind provider\s+podman",
        r"^ok\s+image store\s+.*free under /",
        rf"^ok\s+run folder\s+.*free under {re.escape(str(world.home))}",
        r"^(ok|warn)\s+memory\s+.*available",
    ):
        assert re.search(pattern, out, re.M), f"{pattern!r} not in:\n{out}"
    no_traceback(result)


def test_doctor_without_kind_on_path_fails_with_an_install_hint(world, tmp_path):
    world.write({"a": {}})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "podman").symlink_to(shutil.which("podman"))
    (bin_dir / "python3").symlink_to(sys.executable)
    (bin_dir / "kubectl").symlink_to(shutil.which("kubectl"))
    assert shutil.which("kind", path=str(bin_dir)) is None
    result = world.invoke("doctor", PATH=str(bin_dir))
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(
        r"^FAIL\s+kind\s+not found on PATH\n\s+fix: install kind: https://kind\.sigs\.k8s\.io/",
        result.stdout,
        re.M,
    ), result.stdout
    assert re.search(r"^ok\s+podman\s+\d", result.stdout, re.M), result.stdout
    assert re.search(r"^ok\s+kubectl\s+1\.36", result.stdout, re.M), result.stdout
    assert "doctor: 1 problem(s): kind" in result.stderr
    no_traceback(result)


def test_setup_stops_before_any_work_when_disk_is_short(world):
    world.write({"a": {}})
    result = world.invoke("e2e.setup", KINDLING_MIN_FREE_DISK="100000GiB")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "preflight failed" in result.stderr
    assert f"free under {world.home}" in result.stderr  # names the disk
    both = result.stdout + result.stderr
    assert "fix: free space under" in both and "KINDLING_MIN_FREE_DISK" in both  # and the fix
    assert "podman build" not in world.commands()
    assert not world.creates()
    assert project_images(world.maker) == []
    no_traceback(result)


# ----------------------------------------------------------------- 2. bad input


def _dump(document):
    return yaml.safe_dump(document, sort_keys=False)


def _set(path, value):
    def change(document):
        node = document
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def _duplicate_service(document):
    rest = {k: v for k, v in document.items() if k != "services"}
    a = json.dumps(document["services"]["a"])
    return _dump(rest) + f"services:\n  a: {a}\n  b: {a}\n  a: {a}\n"


# name -> (change to the document | text maker, substrings stderr must hold besides the file)
STACK_CASES = {
    "services-is-a-list": (_set(["services"], ["a", "b"]), ["services:", "must be a mapping"]),
    "name-is-a-number": (_set(["name"], 42), ["name:", "must be a non-empty string"]),
    "depends-on-is-a-mapping": (_set(["services", "b", "depends_on"], {"a": 1}), ["services.b.depends_on"]),
    "ready-timeout-is-text": (
        _set(["services", "a", "ready", "timeout"], "soon"),
        ["services.a.ready.timeout"],
    ),
    "build-args-is-a-list": (_set(["services", "a", "build", "args"], [1, 2]), ["services.a.build.args"]),
    "memory-is-not-a-size": (_set(["services", "a", "build", "memory"], "lots"), ["services.a.build.memory"]),
    "engine-unknown": (_set(["engine"], "dockr"), ["engine:", "'dockr'"]),
    "load-is-text": (_set(["services", "a", "load"], "yes"), ["services.a.load"]),
    "timeouts-zero": (_set(["timeouts"], {"load": 0}), ["timeouts.load"]),
    "timeouts-nan": (_set(["timeouts"], {"load": float("nan")}), ["timeouts.load"]),
    "ready-timeout-inf": (
        _set(["services", "a", "ready", "timeout"], float("inf")),
        ["services.a.ready.timeout"],
    ),
    "memory-inf": (_set(["services", "a", "build", "memory"], float("inf")), ["services.a.build.memory"]),
    "unknown-top-key": (_set(["servces"], {}), ["servces: unknown key", "did you mean 'services'"]),
    "unknown-service-key": (
        _set(["services", "a", "imagePullPolicy"], "Never"),
        ["services.a.imagePullPolicy: unknown key"],
    ),
    "missing-manifest": (
        _set(["services", "a", "manifests"], ["manifests/nope.yaml"]),
        ["services.a.manifests[0]", "does not exist"],
    ),
    "missing-containerfile": (
        _set(["services", "a", "build", "containerfile"], "src/a/Nope"),
        ["services.a.build.containerfile", "does not exist"],
    ),
    "manifest-name-too-long": (
        _set(["services", "a", "manifests"], ["m" * 5000]),
        ["services.a.manifests[0]"],
    ),
    "cycle": (_set(["services", "a", "depends_on"], ["b"]), ["depends_on", "dependency cycle"]),
    "self-dependency": (_set(["services", "a", "depends_on"], ["a"]), ["services.a.depends_on", "itself"]),
    "unknown-dependency": (_set(["services", "b", "depends_on"], ["zz"]), ["services.b.depends_on", "'zz'"]),
    "duplicate-service": (_duplicate_service, ["duplicate key 'a'"]),
    "bad-image-name": (
        _set(["services", "b"], {"image": "Docker.io/Foo:bad tag", "manifests": []}),
        ["services.b.image"],
    ),
    "bad-service-name": (
        lambda d: _dump({**d, "services": {"API_Server": d["services"]["a"]}}),
        ["services.API_Server", "not a valid name"],
    ),
    "bad-project": (_set(["project"], "Bad Project"), ["project:"]),
    "complex-yaml-key": (lambda d: _dump(d) + "? [a, b]\n: 1\n", ["key"]),
    "invalid-yaml": (lambda d: "name: [unclosed\n", ["invalid YAML", "line"]),
    "top-level-list": (lambda d: "- a\n- b\n", ["top level is a list"]),
    "empty": (lambda d: "", ["is empty"]),
    "non-utf8": (lambda d: b"name: caf\xe9\nservices: {}\n", ["not UTF-8"]),
    "huge": (lambda d: _dump(d) + ("# " + "x" * 1022 + "\n") * 2048, ["bytes", "at most"]),
}
ENV_CASES = {
    "image-tag-with-space": ({"IMAGE_TAG": "bad tag!"}, ["IMAGE_TAG", "bad tag!"]),
    "image-tag-leading-dot": ({"IMAGE_TAG": ".hidden"}, ["IMAGE_TAG", ".hidden"]),
    "timeouts-not-a-number": ({"KINDLING_TIMEOUTS": "load=soon"}, ["KINDLING_TIMEOUTS", "load=soon"]),
    "timeouts-unknown-step": ({"KINDLING_TIMEOUTS": "bogus=5"}, ["KINDLING_TIMEOUTS", "bogus"]),
    "timeouts-negative": ({"KINDLING_TIMEOUTS": "load=-1"}, ["KINDLING_TIMEOUTS", "load=-1"]),
    "timeouts-no-value": ({"KINDLING_TIMEOUTS": "load"}, ["KINDLING_TIMEOUTS", "load"]),
    "timeouts-nan": ({"KINDLING_TIMEOUTS": "load=nan"}, ["KINDLING_TIMEOUTS", "load=nan"]),
}
COMMANDS = ["build", "e2e.setup"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", list(STACK_CASES))
def test_bad_stack_file_exits_1_naming_file_and_field(world, case, command):
    world.write({"a": {}, "b": {"depends_on": ["a"]}})
    change, expected = STACK_CASES[case]
    document = yaml.safe_load(world.path.read_text())
    produced = change(document)
    if produced is None:
        world.path.write_text(_dump(document))
    elif isinstance(produced, bytes):
        world.path.write_bytes(produced)
    else:
        world.path.write_text(produced)
    result = world.invoke(command)
    assert result.returncode == 1, result.stdout + result.stderr
    no_traceback(result)
    assert f"kindling: {world.path}" in result.stderr, result.stderr[-3000:]
    for text in expected:
        assert text in result.stderr, f"{text!r} not in:\n{result.stderr[-3000:]}"
    assert project_images(world.maker) == []
    assert not world.creates()


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", ["missing-file", "directory"])
def test_unusable_stack_path_exits_1_naming_it(world, case, command):
    world.write({"a": {}})
    target = world.path.parent / "nope.yaml" if case == "missing-file" else world.path.parent / "src"
    result = run_invoke([command], {**world.env, "E2E_STACK": str(target)})
    assert result.returncode == 1, result.stdout + result.stderr
    no_traceback(result)
    assert (
        f"kindling: {target}: " + ("stack file not found" if case == "missing-file" else "is not a file")
        in result.stderr
    ), result.stderr


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", list(ENV_CASES))
def test_bad_environment_variable_exits_1_naming_it(world, case, command):
    world.write({"a": {}})
    extra, expected = ENV_CASES[case]
    result = world.invoke(command, **extra)
    assert result.returncode == 1, result.stdout + result.stderr
    no_traceback(result)
    for text in expected:
        assert text in result.stderr, f"{text!r} not in:\n{result.stderr[-3000:]}"
    assert project_images(world.maker) == []
    assert not world.creates()


# ------------------------------------------------------------ 4. interrupts per phase

GATED_CONTAINERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY version.txt /version.txt
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox sleep 600; /bin/busybox echo a > /name"]
CMD ["/bin/busybox", "httpd", "-f", "-p", "8080"]
"""


def process_of(is_phase):
    """The phase is reached when a process below the run matches."""
    return lambda world, proc: [p for p in descendants(proc.pid) if is_phase(proc_args(p))]


def waiting_for_rollout(world, proc):
    """The deploy applied the workload and waits for it (kindling's own bounded poll)."""
    return [
        c
        for c in world.applies()
        if c["exit"] == 0 and any(a.endswith("/rendered/a.yaml") for a in c["argv"])
    ]


PHASES = {
    # phase: (signal, service spec, delays for the wrapped tools, how to tell the phase is reached)
    "cluster": (
        signal.SIGINT,
        {},
        {"kind.create": 600},
        process_of(lambda a: is_wrapped(a, "kind") and a[2:4] == ["create", "cluster"]),
    ),
    "build": (signal.SIGTERM, {"sleep": 600}, {}, process_of(lambda a: a[:2] == ["/bin/busybox", "sleep"])),
    "load": (
        signal.SIGINT,
        {},
        {"kind.load": 600},
        process_of(lambda a: is_wrapped(a, "kind") and a[2:4] == ["load", "image-archive"]),
    ),
    "apply": (
        signal.SIGTERM,
        {},
        None,  # delay set once the namespace apply is done (see below)
        # The service's apply (its rendered objects), not the cluster step's namespace apply.
        process_of(
            lambda a: is_wrapped(a, "kubectl") and "apply" in a and a[-1].endswith("/rendered/a.yaml")
        ),
    ),
    "wait": (signal.SIGINT, {"timeout": 600, "fault": "never-ready"}, {}, waiting_for_rollout),
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_interrupt_stops_everything_and_the_next_setup_works(world, phase):
    signum, spec, delays, reached = PHASES[phase]
    world.write({"a": spec})
    world.faults(delays=delays or {})
    if phase == "apply":
        # The namespace is applied while the cluster step runs; hold the build in its RUN step
        # until that apply is done, then delay applies and let the build go on.
        (world.maker.folder / "src" / "a" / "Containerfile").write_text(GATED_CONTAINERFILE)
    proc = world.start("e2e.setup")
    try:
        if phase == "apply":

            def gate():
                sleeps = [p for p in descendants(proc.pid) if proc_args(p)[:2] == ["/bin/busybox", "sleep"]]
                applied = [c for c in world.applies() if c["exit"] == 0]
                return sleeps if applied else None

            gate_pids = wait_until(proc, gate, "the gated build and the namespace apply")
            world.faults(delays={"kubectl.apply": 600})
            for pid in gate_pids:
                os.kill(pid, signal.SIGKILL)
        wait_until(proc, lambda: reached(world, proc), f"the {phase} phase")
        if phase == "load":
            assert world.tars() == [], "the image is streamed into kind: no archive on disk"
        recorded = snapshot(descendants(proc.pid))
        proc.popen.send_signal(signum)
        proc.wait_or_explain(SETTLE)
    finally:
        proc.stop()
    assert proc.returncode == 128 + signum, proc.stdout + proc.stderr
    assert "interrupted" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert still_running(recorded) == []
    assert processes_mentioning(str(world.home), str(world.maker.folder), world.maker.project) == []
    assert world.tars() == []
    assert world.last_run()["status"] == "interrupted"
    assert world.cluster not in world.clusters()  # created by this run, so deleted again

    world.write({"a": {}})
    world.faults()
    again = world.invoke("e2e.setup")
    assert again.returncode == 0, again.stdout + again.stderr
    assert world.last_run()["status"] == "ok"
    assert set(world.deployed_images()) == {"a"}


# ------------------------------------------------------------ 5. bounded commands


@pytest.mark.parametrize("where", ["stack", "env"])
def test_a_hanging_load_is_stopped_at_its_timeout(shared_world, where):
    world = shared_world
    world.write({"a": {}})
    extra = {}
    if where == "stack":
        world.edit_stack(_set(["timeouts"], {"load": 2}))
    else:
        extra["KINDLING_TIMEOUTS"] = "load=2"
    world.faults(delays={"kind.load": 30})
    result = world.invoke("e2e.setup", **extra)
    assert result.returncode == 1, result.stdout + result.stderr
    no_traceback(result)
    assert "timed out after 2" in result.stderr, result.stderr
    assert "kind load image-archive" in result.stderr, result.stderr
    assert [p for p in processes_mentioning(world.cluster) if is_wrapped(p[1], "kind")] == []
    assert world.tars() == []
    assert world.cluster in world.clusters()  # it existed before the run: kept


AUDIT = """\
import json, sys
root, log = sys.argv[1], sys.argv[2]
import sh
original = sh.RunningCommand.wait
def wait(self, timeout=None):
    # The first wait on a command is the one that bounds it (later ones read its output).
    if not getattr(self, "_audited", False):
        self._audited = True
        with open(log, "a") as handle:
            handle.write(json.dumps({"argv": str(self.ran).split(), "timeout": timeout}) + "\\n")
    return original(self, timeout)
sh.RunningCommand.wait = wait
# The Runner bounds a command with proctree.wait (a timer, then a plain wait): its timeout counts.
from tasks.libs.procs import proctree
bounded = proctree.wait
def bounded_wait(pid, wait_for_exit, timeout, grace=5.0):
    command = wait_for_exit.__self__
    command._audited = True
    with open(log, "a") as handle:
        handle.write(json.dumps({"argv": str(command.ran).split(), "timeout": timeout}) + "\\n")
    return bounded(pid, wait_for_exit, timeout, grace)
proctree.wait = bounded_wait
from invoke.main import program
program.run(["invoke", "--search-root", root] + sys.argv[3:])
"""


def test_every_external_command_has_a_timeout(world, tmp_path):
    """A hung podman/kind/kubectl must not hang kindling: every command it runs (queries,
    diagnostics and teardown included) is given a timeout."""
    world.write({"a": {"fault": "crashloop", "run_seconds": 0.5}})  # so diagnostics are collected too
    log = tmp_path / "timeouts.jsonl"
    env = {**os.environ, "NO_COLOR": "1", **world.env}
    for task in ("e2e.setup", "e2e.teardown"):
        subprocess.run(
            [sys.executable, "-c", AUDIT, str(ROOT), str(log), task],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(c["argv"][0].endswith("podman") and "build" in c["argv"][:2] for c in calls), calls
    assert any(c["argv"][0].endswith("kind") and "export" in c["argv"] for c in calls)  # diagnostics ran
    unbounded = sorted(
        {
            " ".join([Path(c["argv"][0]).name, *c["argv"][1:3]])
            for c in calls
            if not isinstance(c["timeout"], (int, float)) or not 0 < c["timeout"] < float("inf")
        }
    )
    assert unbounded == [], "commands run without a timeout:\n  " + "\n  ".join(unbounded)


# --------------------------------------------------------- 6. concurrency and the lock


def test_two_stacks_set_up_at_once_do_not_collide(world, tools, base_image, tmp_path):
    other_maker = StackMaker(tmp_path / "stack2", base_image)
    other = World(other_maker, tools, tmp_path, home=world.home)  # same state folder and lock folder
    try:
        world.write({"a": {"sleep": 1}, "b": {"depends_on": ["a"]}}, name="stack-one")
        other.write({"a": {"sleep": 1}, "b": {"depends_on": ["a"]}}, name="stack-two")
        world.faults(delays={"kind.create": 2})
        first, second = world.start("e2e.setup"), other.start("e2e.setup")
        try:
            first.wait(timeout=SETTLE * 3)
            second.wait(timeout=SETTLE * 3)
        finally:
            first.stop()
            second.stop()
        for proc in (first, second):
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert "in use by" not in proc.stdout + proc.stderr
        runs = [json.loads(p.read_text()) for p in world.run_files("run.json")]
        by_stack = {r["stack"]: r for r in runs}
        assert set(by_stack) == {"stack-one", "stack-two"} and len(runs) == 2
        assert by_stack["stack-one"]["run"] != by_stack["stack-two"]["run"]
        assert world.kubeconfig != other.kubeconfig
        assert world.kubeconfig.exists() and other.kubeconfig.exists()
        assert f"kind-{world.cluster}" in world.kubeconfig.read_text()
        assert f"kind-{other.cluster}" in other.kubeconfig.read_text()
        one, two = by_stack["stack-one"]["images"], by_stack["stack-two"]["images"]
        assert set(one.values()).isdisjoint(two.values())
        for service in "ab":
            assert one[service].startswith(f"localhost/{world.maker.project}/{service}:")
            assert two[service].startswith(f"localhost/{other_maker.project}/{service}:")
        assert world.deployed_images() == one
        assert other.deployed_images() == two
        assert {world.cluster, other.cluster} <= set(world.clusters())
    finally:
        other_maker.cleanup()


HOLDER = """\
import sys
sys.path.insert(0, sys.argv[3])
from tasks.libs import locks
locks.acquire(sys.argv[1], "test holder", 0.0, {"KINDLING_LOCK_DIR": sys.argv[2]})
print("locked", flush=True)
sys.stdin.read()
"""


class Holder:
    """Another run holding the cluster's lock: a child python that sleeps until stdin closes."""

    def __init__(self, world):
        self.popen = subprocess.Popen(
            [sys.executable, "-c", HOLDER, world.cluster, str(world.locks), str(ROOT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=world.path.parent,
        )
        assert self.popen.stdout.readline().strip() == "locked"
        self.pid = self.popen.pid
        self.record = json.loads((world.locks / f"{world.cluster}.lock").read_text())

    def release(self):
        if self.popen.poll() is None:
            self.popen.stdin.close()
            self.popen.wait(timeout=60)


def test_a_busy_cluster_is_refused_naming_the_holder(world):
    world.write({"a": {}})
    holder = Holder(world)
    try:
        result = world.invoke("e2e.setup")
    finally:
        holder.release()
    assert result.returncode == 1, result.stdout + result.stderr
    no_traceback(result)
    assert f"in use by PID {holder.pid}" in result.stderr, result.stderr
    assert holder.record["started"] in result.stderr and "test holder" in result.stderr
    assert "KINDLING_LOCK_WAIT" in result.stderr
    assert not world.creates() and "podman build" not in world.commands()


def test_lock_wait_waits_for_the_holder_then_proceeds(shared_world):
    world = shared_world
    world.write({"a": {}})
    holder = Holder(world)
    proc = world.start("e2e.setup", KINDLING_LOCK_WAIT="300")
    try:
        wait_until(proc, lambda: "waiting" in proc.stdout, "the waiting message")
        assert f"in use by PID {holder.pid}" in proc.stdout
        # While the holder lives, nothing has been started.
        assert holder.popen.poll() is None
        assert not world.applies() and "podman build" not in world.commands()
        released_at = time.time()
        holder.release()
        proc.wait(timeout=SETTLE * 2)
    finally:
        holder.release()
        proc.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert world.applies() and min(c["start"] for c in world.applies()) >= released_at


def test_a_stale_lock_is_taken_over_and_said_so(shared_world):
    world = shared_world
    world.write({"a": {}})
    dead = subprocess.Popen(["true"])
    dead.wait()
    world.locks.mkdir(parents=True, exist_ok=True)
    (world.locks / f"{world.cluster}.lock").write_text(
        json.dumps({"pid": dead.pid, "what": "e2e.setup", "started": "2025-01-01 00:00:00"})
    )
    result = world.invoke("e2e.setup")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"took over a stale lock from PID {dead.pid}" in result.stdout


def test_a_run_that_ended_normally_leaves_no_stale_lock(world):
    """The lock file outlives its holder; a run that finished cleanly must not make the next
    one report a crashed ("stale") holder."""
    world.write({"a": {}})
    first = world.invoke("e2e.teardown")
    second = world.invoke("e2e.teardown")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "stale" not in second.stdout + second.stderr, second.stdout


# ------------------------------------------------- 7. cleanup touches only its own


def test_teardown_keeps_provided_images_and_the_base_image(world, base_image):
    world.write({"a": {}, "b": {"depends_on": ["a"]}})
    provided = f"localhost/{world.maker.project}/a:ci1"
    context = world.maker.folder / "src" / "a"
    podman_cmd(
        "build",
        "-t",
        provided,
        "-f",
        str(context / "Containerfile"),
        "--build-arg",
        f"BASE_IMAGE={base_image}",
        str(context),
    )
    result = world.invoke("e2e.setup", IMAGE_TAG="ci1")
    assert result.returncode == 0, result.stdout + result.stderr
    outcomes = {s["id"]: s["outcome"] for s in world.last_run()["steps"]}
    assert outcomes["image:a"] == "present" and outcomes["image:b"] == "built"
    assert f"podman build -t {provided}" not in world.commands()
    built = f"localhost/{world.maker.project}/b:ci1"
    assert world.last_run()["images"] == {"a": provided, "b": built}
    assert world.deployed_images() == {"a": provided, "b": built}

    down = world.invoke("e2e.teardown")
    assert down.returncode == 0, down.stdout + down.stderr
    assert image_exists(provided), "teardown removed an image kindling did not build"
    assert not image_exists(built)
    assert image_exists(base_image)
    assert f"removed image {built}" in down.stdout and provided not in down.stdout
    assert world.cluster not in world.clusters()


# ------------------------------------------------------------------ 8. secrets

SECRET = "s3cr3t-test-value"
BUILD_SECRET = "hunter2-build"


def test_secrets_stay_out_of_output_logs_and_diagnostics(shared_world):
    world = shared_world
    world.write({"a": {"fault": "crashloop", "run_seconds": 0.5}})
    manifest = world.maker.folder / "manifests" / "a.yaml"
    docs = list(yaml.safe_load_all(manifest.read_text()))
    for doc in docs:
        if doc["kind"] == "Deployment":
            doc["spec"]["template"]["spec"]["containers"][0]["env"] = [
                {"name": "DB_PASSWORD", "value": SECRET},
                {
                    "name": "DB_PASSWORD_REF",
                    "valueFrom": {"secretKeyRef": {"name": "a-db", "key": "password"}},
                },
            ]
    docs.insert(
        0,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "a-db"},
            "type": "Opaque",
            "stringData": {"password": SECRET},
        },
    )
    manifest.write_text(yaml.safe_dump_all(docs))
    world.edit_stack(_set(["services", "a", "build", "args", "DB_PASSWORD"], BUILD_SECRET))
    containerfile = world.maker.folder / "src" / "a" / "Containerfile"
    containerfile.write_text(containerfile.read_text().replace("COPY ", "ARG DB_PASSWORD\nCOPY ", 1))

    result = world.invoke("e2e.setup")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "diagnostics:" in result.stderr
    run = world.run_files("run.json")[-1].parent
    assert (run / "diagnostics" / "a" / "describe-pods.txt").exists()
    assert "DB_PASSWORD=***" in (run / "commands.log").read_text()  # the build ran, masked
    assert world.tars() == []  # a failed run leaves no archive

    for secret in (SECRET, BUILD_SECRET):
        assert secret not in result.stdout and secret not in result.stderr
    leaks = []
    for path in world.home.rglob("*"):
        if path.is_file() and "rendered" not in path.relative_to(world.home).parts:
            data = path.read_bytes()
            leaks += [f"{path}: {s}" for s in (SECRET, BUILD_SECRET) if s.encode() in data]
    assert leaks == []

    masked = "".join(p.read_text(errors="replace") for p in (run / "diagnostics" / "a").glob("*.*"))
    assert "***" in masked  # the diagnostics did hold the value, masked

    rendered = list((run / "rendered").iterdir())
    assert rendered and SECRET in (run / "rendered" / "a.yaml").read_text()  # what was applied
    for path in rendered:
        assert oct(path.stat().st_mode & 0o777) == "0o600", path


def test_a_streamed_command_shows_each_line_and_keeps_it_in_its_log(tmp_path):
    """The suite's output is shown live and logged: every line reaches both (a two-parameter
    callback once received sh's stdin queue instead of the log, and the suite's output was lost)."""
    from tasks.libs.procs.runner import Runner

    shown, log = [], tmp_path / "suite.log"
    Runner().run(
        ["sh", "-c", "echo one; echo two >&2; echo three"], log_path=log, stream=shown.append, timeout=30
    )
    assert shown == ["one", "two", "three"]
    assert log.read_text().splitlines()[1:] == ["one", "two", "three"]
