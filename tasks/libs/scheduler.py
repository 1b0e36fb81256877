"""Run a graph of steps: each as soon as its inputs are done, within per-pool limits.

graphlib.TopologicalSorter says which steps are ready; a ThreadPoolExecutor runs
them. Among ready steps the one with the longest estimated path to the end goes
first (critical path first). Builds also share a memory budget: a build that
declares more than is left waits, and one larger than the whole budget runs alone.
"""

import graphlib
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable

from .errors import Interrupted, KindlingError

OK, FAILED, CANCELLED, NOT_RUN = "ok", "failed", "cancelled", "not run"


@dataclass
class Step:
    id: str
    pool: str  # a limit class: "build", "load", "kube", "cluster", ...
    action: Callable[[], object]  # does the work; returns its outcome (plan.Outcome)
    needs: tuple = ()
    subject: str = ""
    memory: int = 0  # bytes reserved from the memory budget while it runs
    estimate: float = 1.0  # seconds, for ordering only
    kind: object = None  # what the step is (plan.StepKind); the scheduler does not look at it


@dataclass
class Record:
    id: str
    pool: str
    subject: str
    needs: list
    status: str = NOT_RUN
    outcome: object = ""
    start: float | None = None  # seconds since the run started
    end: float | None = None
    error: str = ""
    extra: dict = field(default_factory=dict)
    kind: object = None  # the step's plan.StepKind

    @property
    def duration(self) -> float:
        return (self.end - self.start) if self.start is not None and self.end is not None else 0.0


class StepFailed(KindlingError):
    """Steps of a graph failed: the records of all its steps; `label` names the run ("setup", ...)
    and `details` holds each failed step's (masked) error, once the environment knows them."""

    def __init__(self, records, label="run", details=None, exit_code=1):
        self.records, self.label, self.exit_code = records, label, exit_code
        failed = [r for r in records if r.status == FAILED]
        super().__init__("; ".join(f"{r.id} failed" for r in failed) or "run failed")
        self.details = str(self) if details is None else details


def priorities(steps: dict) -> dict:
    """Longest estimated path from each step to the end of the graph (itself included)."""
    dependants = {sid: [] for sid in steps}
    for step in steps.values():
        for need in step.needs:
            dependants[need].append(step.id)
    order = list(graphlib.TopologicalSorter({s.id: s.needs for s in steps.values()}).static_order())
    result = {}
    for sid in reversed(order):
        result[sid] = steps[sid].estimate + max((result[d] for d in dependants[sid]), default=0.0)
    return result


class Scheduler:
    def __init__(
        self,
        limits=None,
        total=None,
        memory_budget=None,
        on_event=None,
        keep_going=False,
        on_abort=None,
        clock=time.monotonic,
    ):
        self.limits = dict(limits or {})
        self.total = total  # at most this many steps at once, whatever their pool
        self.memory_budget = memory_budget
        self.on_event = on_event or (lambda record, state, detail="": None)
        self.keep_going = keep_going
        self.on_abort = on_abort or (lambda: None)
        self.clock = clock

    def run(self, step_list) -> list:
        steps = {s.id: s for s in step_list}
        for step in steps.values():
            missing = [n for n in step.needs if n not in steps]
            if missing:
                raise ValueError(f"step {step.id} needs unknown steps {missing}")
        records = {s.id: Record(s.id, s.pool, s.subject, list(s.needs), kind=s.kind) for s in steps.values()}
        sorter = graphlib.TopologicalSorter({s.id: s.needs for s in steps.values()})
        sorter.prepare()
        rank = priorities(steps)
        origin = self.clock()
        pending, running = [], {}
        running_pool, memory_in_use = {}, 0
        failed = False
        pool = ThreadPoolExecutor(max_workers=max(1, len(steps)), thread_name_prefix="step")
        try:
            while True:
                if not failed or self.keep_going:
                    pending.extend(sorter.get_ready())
                pending.sort(key=lambda sid: -rank[sid])
                if failed and not self.keep_going:
                    pending.clear()
                started = True
                while started:
                    started = False
                    for sid in list(pending):
                        step = steps[sid]
                        if not self._fits(step, running, running_pool, memory_in_use):
                            continue
                        pending.remove(sid)
                        record = records[sid]
                        record.start = self.clock() - origin
                        record.status = "running"
                        self.on_event(record, "start")
                        running[pool.submit(step.action)] = sid
                        running_pool[step.pool] = running_pool.get(step.pool, 0) + 1
                        memory_in_use += step.memory
                        started = True
                        break
                for sid in pending:
                    if records[sid].status != "queued":
                        records[sid].status = "queued"
                        self.on_event(records[sid], "queued")
                if not running:
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    sid = running.pop(future)
                    step, record = steps[sid], records[sid]
                    running_pool[step.pool] -= 1
                    memory_in_use -= step.memory
                    record.end = self.clock() - origin
                    exc = future.exception()
                    if exc is None:
                        record.status, record.outcome = OK, future.result() or "done"
                        sorter.done(sid)
                        self.on_event(record, "done")
                        continue
                    record.error = str(exc)
                    if getattr(exc, "returncode", None) is not None:
                        record.extra["exit_code"] = exc.returncode
                    if failed and not self.keep_going:
                        record.status = CANCELLED
                        self.on_event(record, "cancelled")
                        continue
                    record.status = FAILED
                    self.on_event(record, "failed")
                    if not failed and not self.keep_going:
                        self.on_abort()
                    failed = True
        except KeyboardInterrupt:
            self._stop(pool, records, running)
            raise Interrupted(signal.SIGINT, [records[s.id] for s in step_list]) from None
        except Interrupted as interrupted:
            self._stop(pool, records, running)
            raise Interrupted(interrupted.signum, [records[s.id] for s in step_list]) from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        result = [records[s.id] for s in step_list]
        for record in result:
            if record.status == "queued":
                record.status = NOT_RUN
        if any(r.status in (FAILED, CANCELLED) for r in result):
            raise StepFailed(result)
        return result

    def _fits(self, step, running, running_pool, memory_in_use) -> bool:
        if self.total is not None and len(running) >= self.total:
            return False
        limit = self.limits.get(step.pool)
        if limit is not None and running_pool.get(step.pool, 0) >= limit:
            return False
        if self.memory_budget and step.memory:
            if memory_in_use and memory_in_use + step.memory > self.memory_budget:
                return False
        return True

    def _stop(self, pool, records, running):
        self.on_abort()
        pool.shutdown(wait=True, cancel_futures=True)
        for sid in running.values():
            records[sid].status = CANCELLED
