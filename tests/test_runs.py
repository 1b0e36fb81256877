"""Run folders: unique ids within one process, this stack's runs told apart, old runs pruned."""

import os
import time

from tasks.libs import runs


def test_runs_made_in_the_same_second_get_their_own_folders(tmp_path):
    made = [runs.Run(tmp_path, "stack") for _ in range(3)]  # a pre= chain of three tasks
    assert len({r.id for r in made}) == 3 and len({r.folder for r in made}) == 3
    assert all(runs.is_run_of("stack", r.id) for r in made)


def test_a_run_belongs_to_its_stack_only():
    assert runs.is_run_of("app", "app-20261127-120000-42-1")
    assert runs.is_run_of("app", "app-20261127-120000-42")  # ids of earlier versions
    assert not runs.is_run_of("app", "app-two-20261127-120000-42-1")
    assert not runs.is_run_of("app", "app-20261127-120000")


def test_pruning_keeps_the_newest_and_the_current(tmp_path):
    folders = []
    for i in range(6):
        folder = tmp_path / "runs" / f"s-2026010{i}-000000-1-1"
        folder.mkdir(parents=True)
        os.utime(folder, (time.time() - 100 + i, time.time() - 100 + i))
        folders.append(folder)
    current = runs.Run(tmp_path, "s")
    removed = runs.prune_runs(tmp_path, 3, current=current.id)
    assert sorted(removed) == sorted(f.name for f in folders[:4])
    left = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert left == sorted([folders[4].name, folders[5].name, current.id])
