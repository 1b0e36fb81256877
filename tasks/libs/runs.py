"""The state folder: run folders (logs, images.json, run.json) and per-cluster state.

Layout under KINDLING_HOME (default: `.kindling` beside the stack file):

    runs/<run-id>/            one folder per invocation: commands.log, logs/, images.json, run.json
    stacks/<stack>/images.json   the image of each service chosen by the newest run
    stacks/<stack>/built.json    every reference kindling built for this stack (teardown removes these)
    clusters/<cluster>/kubeconfig   mode 0600; never the user's ~/.kube/config
    clusters/<cluster>/deployed.json  image and manifest digest last rolled out per service
    clusters/<cluster>/outputs/<service>.out  the output of a service's run step (mode 0600)
"""

import itertools
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

_LOCK = threading.Lock()
# Several Environments of one process (a pre= chain of deploy tasks) start in the same second:
# a per-process sequence number keeps their run folders apart.
_RUN_SEQUENCE = itertools.count(1)


def new_run_id(stack_name: str) -> str:
    return f"{stack_name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{next(_RUN_SEQUENCE)}"


def is_run_of(stack_name: str, folder_name: str) -> bool:
    """Whether a run folder's name is one of this stack's run ids (another stack's name may
    start with this one's: "app" and "app-two")."""
    return re.fullmatch(rf"{re.escape(stack_name)}-\d{{8}}-\d{{6}}-\d+(-\d+)?", folder_name) is not None


def prune_runs(home: Path, keep: int, current: str = "") -> list:
    """Remove all but the newest `keep` run folders (never `current`); returns the removed ids."""
    folders = sorted(
        (p for p in (home / "runs").glob("*") if p.is_dir() and p.name != current),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    removed = []
    for folder in folders[max(keep - 1, 0) :]:
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    return removed


def state_home(stack, env) -> Path:
    return Path(env["KINDLING_HOME"]).resolve() if env.get("KINDLING_HOME") else stack.folder / ".kindling"


def read_json(path: Path, default):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return default


def write_json(path: Path, data, mode=None) -> None:
    """Write atomically: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    if mode is not None:
        os.chmod(temporary, mode)
    os.replace(temporary, path)


def update_json(path: Path, change, default=None):
    """Read-modify-write under a process-wide lock (steps run on threads)."""
    with _LOCK:
        data = read_json(path, {} if default is None else default)
        change(data)
        write_json(path, data)
        return data


class Run:
    """One invocation's folder."""

    def __init__(self, home: Path, stack_name: str, run_id: str | None = None):
        self.home = home
        self.stack_name = stack_name
        self.id = run_id or new_run_id(stack_name)
        self.folder = home / "runs" / self.id
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "logs").mkdir(exist_ok=True)

    @property
    def command_log(self) -> Path:
        return self.folder / "commands.log"

    def log_path(self, step_id: str) -> Path:
        return self.folder / "logs" / (step_id.replace(":", "-").replace("/", "-") + ".log")

    def tar_path(self, service: str) -> Path:
        return self.folder / f"{service}.tar"

    @property
    def stack_folder(self) -> Path:
        return self.home / "stacks" / self.stack_name

    def current_images(self) -> dict:
        return read_json(self.stack_folder / "images.json", {})

    def record_image(self, service: str, info: dict) -> None:
        update_json(self.folder / "images.json", lambda d: d.__setitem__(service, info))
        update_json(self.stack_folder / "images.json", lambda d: d.__setitem__(service, info))
        if info.get("built_by_kindling"):
            update_json(
                self.stack_folder / "built.json",
                lambda d: d.__setitem__(info["ref"], {"service": service, "run": self.id}),
            )

    def built_images(self) -> dict:
        return read_json(self.stack_folder / "built.json", {})

    def forget_built(self, refs) -> None:
        def drop(data):
            for ref in refs:
                data.pop(ref, None)

        update_json(self.stack_folder / "built.json", drop)


class ClusterState:
    def __init__(self, home: Path, cluster: str):
        self.folder = home / "clusters" / cluster
        self.kubeconfig = self.folder / "kubeconfig"
        self.deployed_path = self.folder / "deployed.json"
        self.created_marker = self.folder / "created-by-kindling"
        self.outputs = self.folder / "outputs"

    def mark_created(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.created_marker.touch()

    def created_by_kindling(self) -> bool:
        return self.created_marker.exists()

    def deployed(self) -> dict:
        return read_json(self.deployed_path, {})

    def record_deployed(self, service: str, info: dict | None) -> None:
        def change(data):
            if info is None:
                data.pop(service, None)
            else:
                data[service] = info

        update_json(self.deployed_path, change)

    def save_output(self, service: str, text: str) -> None:
        """Keep a run step's output, so a later run that skips the step still has its file."""
        self.outputs.mkdir(parents=True, exist_ok=True)
        write_private(self.outputs / f"{service}.out", text)

    def restore_output(self, service: str, target: Path) -> bool:
        """Copy a run step's kept output to target (mode 0600); False when there is none."""
        try:
            text = (self.outputs / f"{service}.out").read_text(encoding="utf-8")
        except OSError:
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        write_private(target, text)
        return True

    def forget(self) -> None:
        shutil.rmtree(self.outputs, ignore_errors=True)
        for path in (self.kubeconfig, self.deployed_path, self.created_marker):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        try:
            self.folder.rmdir()
        except OSError:
            pass


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (mode 0600 from the start)."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
        handle.write(text)


def reports(home: Path) -> list:
    """The run.json of every run that wrote one, oldest first (by when it was written)."""
    return sorted((Path(home) / "runs").glob("*/run.json"), key=lambda p: p.stat().st_mtime)


def list_runs(home: Path) -> list:
    """Every run that wrote a report, oldest first: (folder name, its run.json data)."""
    return [(path.parent.name, read_json(path, {})) for path in reports(home)]


def find_run(home: Path, run: str | None = None) -> Path:
    """A run folder: the given id or path, else the newest one that has a run.json."""
    from .errors import KindlingError

    if run:
        for candidate in (Path(run), home / "runs" / run):
            if (candidate / "run.json").exists():
                return candidate
        raise KindlingError(f"no run {run!r}: give a run id from {home / 'runs'} or a run folder")
    found = reports(home)
    if not found:
        raise KindlingError(f"no runs under {home / 'runs'} yet: run `invoke e2e.setup` first")
    return found[-1].parent
