"""What the phases of one run share: the stack, its settings, the run folder, the runner, the
console, the adapters to the outside (engine, kind, kubectl, the local registry) and the image
references this run has chosen. Made once per task; the phases take it as their first argument.
"""

import getpass
import time
from pathlib import Path

from . import imagerefs, runs
from .adapters.engine import for_program
from .adapters.kind import KindCluster, kind_network
from .adapters.kubectl import Kubectl
from .checks.preflight import HostInfo
from .console import Console
from .procs.masking import SECRET_NAME_RE
from .procs.runner import Runner
from .settings import Settings
from .snapshot import Snapshot, shared_views


class RunContext:
    def __init__(self, stack, settings: Settings, env, console=None, runner=None):
        self.stack = stack
        self.settings = settings
        self.env = env
        self.console = console or Console(env=env)
        self.home = runs.state_home(stack, env)
        self.run = runs.Run(self.home, stack.name)
        runs.prune_runs(self.home, settings.keep_runs, current=self.run.id)
        self.runner = runner or Runner(settings.dry_run, self.run.command_log, echo=self.console.line)
        self.runner.add_secrets(
            v
            for s in stack.services.values()
            if s.built
            for k, v in s.build.build_args(settings.coverage).items()
            if SECRET_NAME_RE.search(k)
        )
        self.engine = for_program(self.runner, stack.engine)
        # What the preflight learns, kept for the phases; the engine's facts also for later runs.
        self.host_info = HostInfo(self.runner, stack.engine, self.home / "host", env)
        delivery = settings.delivery
        # kind's local registry container, in that delivery mode only (delivery/localregistry.py).
        self.local_registry = delivery.registry_container(
            self.runner, stack.engine, kind_network(stack.engine, env)
        )
        if delivery.existing_cluster:
            self.cluster_state = runs.ClusterState(self.home, f"context-{delivery.context or 'current'}")
            self.kubectl = Kubectl(delivery.kubeconfig, self.runner, delivery.context)
        else:
            self.cluster_state = runs.ClusterState(self.home, stack.cluster_name)
            self.kubectl = Kubectl(self.cluster_state.kubeconfig, self.runner)
        self.cluster = KindCluster(
            stack.cluster_name,
            self.cluster_state.kubeconfig,
            self.runner,
            stack.engine,
            node_image=stack.node_image,
        )
        # One cluster's views are shared by the runs of this process (a pre= chain): snapshot.Views.
        self.snapshot_key = (str(self.home), str(self.cluster_state.kubeconfig))
        self.snapshot = Snapshot(self.engine, self.cluster, self.kubectl, shared_views(self.snapshot_key))
        self.refs = {}  # service -> image reference chosen by this run
        self.source_documents = {}  # service -> its objects as read or rendered (phases/deploy.py)
        self._tag_inputs = None

    @property
    def dry_run(self) -> bool:
        return self.runner.dry_run

    @property
    def registry(self) -> str:
        """The host this run's image references name ("localhost" when images are loaded)."""
        return self.settings.delivery.registry

    def timeout(self, what: str) -> float:
        return self.settings.timeouts[what]

    def log(self, kind, subject: str = "") -> Path:
        """The log file of one step (kind: plan.StepKind or a short word)."""
        name = getattr(kind, "value", kind)
        return self.run.log_path(f"{name}:{subject}" if subject else name)

    def mask(self, text: str) -> str:
        return self.runner.mask_text(text)

    def new_tag(self, service) -> str:
        """IMAGE_TAG, else a tag unique to user, source commit and time (imagerefs.unique_tag)."""
        if self.settings.image_tag:
            return self.settings.image_tag
        if self._tag_inputs is None:
            user = self.env.get("USER") or getpass.getuser()
            self._tag_inputs = (user, git_short_sha(self.runner, self.stack.source), int(time.time()))
        user, sha, now = self._tag_inputs
        return imagerefs.unique_tag(service, user, sha, now)

    def known_refs(self) -> dict:
        """Every service's reference: this run's choice, else the newest recorded, else prebuilt."""
        services = self.stack.services
        # A run step may have no image at all.
        refs = {name: s.image for name, s in services.items() if not s.built and s.image}
        refs.update(
            {
                name: info["ref"]
                for name, info in self.run.current_images().items()
                if name in services and services[name].built
            }
        )
        refs.update(self.refs)
        return refs


def git_short_sha(runner: Runner, folder: Path) -> str | None:
    result = runner.run(
        ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], check=False, mutating=False
    )
    return result.stdout.strip() or None if result.exit_code == 0 else None
