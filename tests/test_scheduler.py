"""Scheduler ordering and limits, with steps that block on events instead of sleeping."""

import threading

import pytest

from tasks.libs.errors import Interrupted
from tasks.libs.report import critical_path, service_table, summary, table
from tasks.libs.scheduler import Record, Scheduler, Step, StepFailed, priorities


class Probe:
    """Records which steps run at the same time; every step waits until released."""

    def __init__(self):
        self.lock = threading.Lock()
        self.running = set()
        self.overlaps = []
        self.order = []
        self.max_running = {}

    def step(self, sid, kind="build", needs=(), memory=0, estimate=1.0, fail=False, gate=None):
        def action():
            with self.lock:
                self.running.add(sid)
                self.order.append(sid)
                self.overlaps.append(frozenset(self.running))
                for k in {kind}:
                    count = sum(1 for r in self.running if r.startswith(k))
                    self.max_running[k] = max(self.max_running.get(k, 0), count)
            try:
                if gate is not None:
                    assert gate.wait(10), f"{sid} was never released"
                if fail:
                    raise RuntimeError(f"{sid} broke")
                return "done"
            finally:
                with self.lock:
                    self.running.discard(sid)

        return Step(sid, kind, action, tuple(needs), subject=sid, memory=memory, estimate=estimate)


def barrier_gate(n):
    """An event set once n steps have started: proves n steps run at once, or times out."""
    barrier = threading.Barrier(n)
    event = threading.Event()

    class Gate:
        def wait(self, timeout):
            try:
                barrier.wait(timeout)
            except threading.BrokenBarrierError:
                return False
            event.set()
            return True

    return Gate()


def test_dependencies_run_before_dependants():
    p = Probe()
    steps = [
        p.step("build:c", needs=["build:a", "build:b"]),
        p.step("build:a"),
        p.step("build:b", needs=["build:a"]),
    ]
    records = Scheduler().run(steps)
    assert p.order.index("build:a") < p.order.index("build:b") < p.order.index("build:c")
    assert all(r.status == "ok" for r in records)
    for r in records:
        for need in r.needs:
            assert next(x for x in records if x.id == need).end <= r.start


def test_independent_steps_overlap():
    p = Probe()
    gate = barrier_gate(3)
    Scheduler().run([p.step(f"build:{i}", gate=gate) for i in range(3)])
    assert any(len(s) == 3 for s in p.overlaps)


def test_kind_limit_is_never_exceeded():
    p = Probe()
    steps = [p.step(f"build:{i}") for i in range(6)] + [p.step(f"load:{i}", kind="load") for i in range(3)]
    Scheduler(limits={"build": 2, "load": 1}).run(steps)
    assert p.max_running["build"] <= 2 and p.max_running["load"] <= 1


def test_total_one_is_serial():
    p = Probe()
    Scheduler(total=1).run([p.step(f"build:{i}") for i in range(4)] + [p.step("load:x", kind="load")])
    assert all(len(s) == 1 for s in p.overlaps)


def test_memory_budget_keeps_heavy_builds_apart():
    gib = 1024**3
    p = Probe()
    gate = barrier_gate(3)  # one heavy and two light builds must be able to overlap
    steps = [
        p.step("build:heavy1", memory=3 * gib, gate=gate),
        p.step("build:light1", memory=1 * gib, gate=gate),
        p.step("build:light2", memory=1 * gib, gate=gate),
        p.step("build:heavy2", memory=3 * gib),
    ]
    Scheduler(memory_budget=5 * gib).run(steps)
    assert not any({"build:heavy1", "build:heavy2"} <= s for s in p.overlaps)
    assert any(len(s) == 3 for s in p.overlaps)


def test_a_build_larger_than_the_budget_runs_alone():
    gib = 1024**3
    p = Probe()
    Scheduler(memory_budget=2 * gib).run(
        [p.step("build:huge", memory=8 * gib), p.step("build:a", memory=gib)]
    )
    assert all(len(s) == 1 for s in p.overlaps)


def test_critical_path_first_among_ready_steps():
    p = Probe()
    steps = [
        p.step("build:short", estimate=1),
        p.step("build:long", estimate=9),
        p.step("deploy:x", kind="kube", needs=["build:long"], estimate=5),
    ]
    Scheduler(total=1).run(steps)
    assert p.order[0] == "build:long"
    assert priorities({s.id: s for s in steps})["build:long"] == 14


def test_failure_stops_what_has_not_started():
    p = Probe()
    aborted = []
    steps = [
        p.step("build:bad", fail=True, estimate=9),
        p.step("build:later"),
        p.step("deploy:x", needs=["build:bad"]),
    ]
    with pytest.raises(StepFailed) as caught:
        Scheduler(total=1, on_abort=lambda: aborted.append(True)).run(steps)
    status = {r.id: r.status for r in caught.value.records}
    assert status == {"build:bad": "failed", "build:later": "not run", "deploy:x": "not run"}
    assert aborted == [True]
    assert "build:bad broke" in next(r.error for r in caught.value.records if r.id == "build:bad")


def test_keep_going_runs_everything_that_can_run():
    p = Probe()
    steps = [
        p.step("build:bad", fail=True),
        p.step("build:ok"),
        p.step("deploy:bad", needs=["build:bad"]),
        p.step("deploy:ok", needs=["build:ok"]),
    ]
    with pytest.raises(StepFailed) as caught:
        Scheduler(keep_going=True).run(steps)
    status = {r.id: r.status for r in caught.value.records}
    assert status == {"build:bad": "failed", "build:ok": "ok", "deploy:bad": "not run", "deploy:ok": "ok"}


def test_interrupt_aborts_and_reports_records():
    aborted = []

    def interrupt():
        raise KeyboardInterrupt

    steps = [Step("a", "build", lambda: "ok"), Step("b", "build", lambda: "ok", needs=("a",))]
    scheduler = Scheduler(on_abort=lambda: aborted.append(1))
    # The interrupt arrives in the main thread while it waits, as Ctrl-C does.
    original = scheduler.on_event
    scheduler.on_event = lambda record, state: interrupt() if state == "done" else original(record, state)
    with pytest.raises(Interrupted) as caught:
        scheduler.run(steps)
    assert caught.value.exit_code == 130 and aborted
    assert {r.id for r in caught.value.records} == {"a", "b"}


def test_critical_path_and_report():
    records = [
        Record("cluster", "cluster", "c", [], "ok", "created", 0.0, 5.0),
        Record("image:a", "build", "a", [], "ok", "built", 0.0, 8.0),
        Record("load:a", "load", "a", ["cluster", "image:a"], "ok", "loaded", 8.0, 9.0),
        Record("deploy:a", "kube", "a", ["load:a"], "ok", "ready", 9.0, 12.0),
    ]
    assert critical_path(records) == ["image:a", "load:a", "deploy:a"]
    data = summary(records, "pipelined", "run1", "ok")
    assert data["wall_seconds"] == 12.0 and data["critical_path_seconds"] == 12.0
    assert data["wall_over_critical_path"] == 1.0
    text = table(data)
    assert "image:a*" in text and "cluster " in text and "wall 12.0 s" in text


def test_the_service_table_shows_seconds_for_work_done_and_the_word_for_work_found_done():
    def step(kind, subject, outcome, seconds=2.0, status="ok"):
        return {"kind": kind, "subject": subject, "outcome": outcome, "seconds": seconds, "status": status}

    report = {
        "wall_seconds": 12.3,
        "steps": [
            step("cluster", "c", "exists"),
            step("image", "api", "built", 7.25),
            step("load", "api", "on node"),
            step("deploy", "api", "ready", 3.0),
            step("image", "web", "cached"),
            step("push", "web", "pushed", 1.5),
            step("deploy", "web", None, status="failed"),
        ],
    }
    lines = service_table(report, [("api", "localhost/p/api:1"), ("web", "localhost/p/web:1"), ("db", "pg")])
    rows = {line.split()[0]: line.split()[1:] for line in lines.splitlines()[1:-1]}
    assert rows == {
        "api": ["7.2", "on", "3.0", "localhost/p/api:1"],
        "web": ["cached", "1.5", "failed", "localhost/p/web:1"],
        "db": ["-", "-", "-", "pg"],  # prebuilt and pulled: no step of its own
    }
    assert lines.splitlines()[-1] == "total 12.3 s"
