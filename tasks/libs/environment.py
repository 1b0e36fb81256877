"""The E2E environment of one stack: its planned steps bound to the phases, and how they run.

Each step is an idempotent "ensure" (phases/): an image whose inputs are unchanged is found by
its inputs digest instead of rebuilt, an image already on the nodes is not loaded again, and a
service whose image and rendered manifests are unchanged and whose workloads are ready is not
applied again. That is what makes the `pre=` chains of `deploy.<service>` cheap and a warm
`e2e.setup` fast. plan.py decides the graph; the scheduler runs it; this module joins them and
writes the run report.
"""

import time

from . import report, runs
from .context import RunContext
from .delivery.base import push
from .errors import Interrupted
from .phases import cluster, deploy, images, run, suite
from .plan import PlannedStep, StepKind, Strategy, build_plan, image_plan, setup_plan, step_id
from .procs import proctree
from .scheduler import FAILED, Scheduler, Step, StepFailed
from .settings import Settings

DEFAULT_ESTIMATES = {
    StepKind.CLUSTER: 30,
    StepKind.REGISTRY: 2,
    StepKind.REGISTRY_WIRING: 2,
    StepKind.IMAGE: 60,
    StepKind.LOAD: 5,
    StepKind.PUSH: 5,
    StepKind.SAVE: 5,
    StepKind.DEPLOY: 10,
    StepKind.TEST: 60,
}
CONSOLE_VERBS = {
    StepKind.LOAD: "loading",
    StepKind.PUSH: "pushing",
    StepKind.SAVE: "saving",
    StepKind.DEPLOY: "deploying",
    StepKind.CLUSTER: "ensuring",
}


class Environment:
    def __init__(self, stack, settings: Settings, env, console=None, runner=None):
        self.ctx = RunContext(stack, settings, env, console=console, runner=runner)
        self.last_report = None
        self.before_graph = 0.0
        self._previous = None

    # ---- binding the plan ---------------------------------------------------------------------

    def _action(self, planned: PlannedStep):
        ctx, subject = self.ctx, planned.subject
        # The delivery mode performs the steps it plans (delivery/): a load or push, its registry.
        by_mode = ctx.settings.delivery.actions()
        if planned.kind in by_mode:
            return lambda: by_mode[planned.kind](ctx, subject)
        return {
            StepKind.CLUSTER: lambda: cluster.ensure_cluster(ctx),
            StepKind.IMAGE: lambda: images.ensure_image(ctx, subject),
            StepKind.PUSH: lambda: push(ctx, subject),  # `build --push`, whatever the delivery
            # A service with `run:` deploys its objects, then runs its command or Job (phases/run.py).
            StepKind.DEPLOY: lambda: (
                run.ensure_ran if ctx.stack.services[subject].run else deploy.ensure_deployed
            )(ctx, subject),
        }[planned.kind]

    def _bind(self, planned: PlannedStep, action=None) -> Step:
        memory = 0
        if planned.kind is StepKind.IMAGE and self.ctx.stack.services[planned.subject].built:
            memory = self.ctx.stack.services[planned.subject].build.memory
        return Step(
            planned.id,
            planned.kind.pool,
            action or self._action(planned),
            needs=planned.needs,
            subject=planned.subject,
            memory=memory,
            estimate=self._estimate(planned),
            kind=planned.kind,
        )

    def image_steps(self, names) -> list:
        return [self._bind(p) for p in image_plan(self.ctx.stack, names)]

    def build_steps(self, names, push: bool = False, save_to=None) -> list:
        """`invoke build`: the images, then (after every build) a push and/or an archive of each."""
        steps = []
        for planned in build_plan(self.ctx.stack, names, push=push, save=save_to is not None):
            if planned.kind is StepKind.SAVE:
                steps.append(
                    self._bind(planned, lambda n=planned.subject: images.save_archive(self.ctx, n, save_to))
                )
            else:
                steps.append(self._bind(planned))
        return steps

    def setup_steps(self, names) -> list:
        """Steps to ensure the named services (their dependencies outside `names` are assumed up)."""
        settings = self.ctx.settings
        return [
            self._bind(p) for p in setup_plan(self.ctx.stack, names, settings.delivery, settings.strategy)
        ]

    def suite_step(self, extra_args=(), needs=()) -> Step:
        planned = PlannedStep(StepKind.TEST, self.ctx.stack.name, tuple(needs))
        return self._bind(planned, lambda: suite.run_suite(self.ctx, extra_args))

    def _estimate(self, planned: PlannedStep) -> float:
        """Seconds the step took in the last successful runs, for critical-path ordering."""
        if self._previous is None:
            self._previous = {}
            for path in runs.reports(self.ctx.home)[-5:]:
                for step in runs.read_json(path, {}).get("steps", []):
                    if step.get("status") == "ok" and step.get("seconds"):
                        self._previous[step["id"]] = step["seconds"]
        return self._previous.get(planned.id, DEFAULT_ESTIMATES[planned.kind])

    # ---- running ------------------------------------------------------------------------------

    def execute(self, steps, label="setup") -> dict:
        """Run the steps; the report is written to run.json whatever happens. A failure raises
        StepFailed carrying the label and each failed step's (masked) error."""
        ctx = self.ctx
        if any(step.kind is StepKind.CLUSTER for step in steps):
            ctx.settings.delivery.refuse(ctx)  # before any build, not at the first pull
            cluster.lock_cluster(ctx, label)
        strategy = ctx.settings.strategy
        scheduler = Scheduler(
            limits=ctx.settings.limits,
            total=1 if strategy is Strategy.SERIAL else None,
            memory_budget=ctx.settings.memory_budget,
            on_event=self._on_event,
            keep_going=ctx.settings.keep_going,
            on_abort=ctx.runner.terminate_all,
        )
        self.before_graph = _time_since_last_graph()
        try:
            records = scheduler.run(steps)
        except StepFailed as exc:
            self._write_report(exc.records, label, "failed")
            details = "\n".join(
                f"{r.id} failed:\n{ctx.mask(r.error)}" for r in exc.records if r.status == FAILED
            )
            exit_code = suite_exit_code(exc.records) or exc.exit_code
            raise StepFailed(exc.records, label, details, exit_code) from None
        except Interrupted as exc:
            for tar in ctx.run.folder.glob("*.tar"):
                tar.unlink(missing_ok=True)
            self._write_report(exc.records, label, "interrupted")
            raise
        finally:
            ctx.runner.resume()
            _graph_ended()
        for program, queries in ctx.runner.not_checked.items():
            ctx.console.line(
                f"dry run: {len(queries)} {program} quer{'y' if len(queries) == 1 else 'ies'} not checked "
                f"({program} is not installed): the plan assumes nothing they ask about exists yet"
            )
        return self._write_report(records, label, "ok")

    def _write_report(self, records, label, status) -> dict:
        ctx = self.ctx
        data = report.summary(records, ctx.settings.strategy.value, ctx.run.id, status)
        data.update(
            {
                "stack": ctx.stack.name,
                "stack_file": str(ctx.stack.path),
                "task": label,
                "delivery": ctx.settings.delivery.mode.value,
                "images": ctx.known_refs(),
                "dry_run": ctx.dry_run,
                "commands": ctx.runner.commands_run,
                # Start-up, preflight, settings and the plan: since the process started, or since
                # the graph before this one in the same process (a pre= chain) ended.
                "before_graph_seconds": round(self.before_graph, 3),
            }
        )
        data = _masked(data, ctx.mask)
        runs.write_json(ctx.run.folder / "run.json", data)
        self.last_report = data
        return data

    def _on_event(self, record, state):
        word, subject, say = record.kind.value, record.subject, self.ctx.console.state
        if state == "queued":
            say(word, subject, "queued")
        elif state == "start":
            if record.kind is not StepKind.IMAGE:  # ensure_image says "building" only when it builds
                say(word, subject, CONSOLE_VERBS.get(record.kind, "running"))
        elif state == "done":
            say(word, subject, record.outcome.value, f"in {record.duration:.1f} s")
        elif state == "failed":
            say(word, subject, "FAILED", f"after {record.duration:.1f} s")
        else:
            say(word, subject, "cancelled")


def suite_exit_code(records) -> int | None:
    """The suite's own exit code when the suite step failed, so `invoke e2e.run` exits with it."""
    for record in records:
        if record.kind is StepKind.TEST and record.status == FAILED:
            return record.extra.get("exit_code") or 1
    return None


def deploy_ids(steps) -> list:
    return [s.id for s in steps if s.kind is StepKind.DEPLOY]


_last_graph_end = None  # time.monotonic() when this process's previous graph ended


def _time_since_last_graph() -> float:
    if _last_graph_end is None:
        return proctree.process_age()
    return time.monotonic() - _last_graph_end


def _graph_ended() -> None:
    global _last_graph_end
    _last_graph_end = time.monotonic()


def outcome_of(result: dict, kind: StepKind, subject: str) -> str:
    """A step's outcome word in a run report."""
    wanted = step_id(kind, subject)
    return next((s["outcome"] for s in result["steps"] if s["id"] == wanted), "")


def _masked(data, mask):
    if isinstance(data, dict):
        return {k: _masked(v, mask) for k, v in data.items()}
    if isinstance(data, list):
        return [_masked(v, mask) for v in data]
    if isinstance(data, str):
        return mask(data)
    return data
