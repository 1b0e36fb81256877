"""`invoke cache.*`: the compiler caches image builds share (a stack's `build.caches`)."""

import time

from invoke import Collection, task

from .libs import cli, runs
from .libs.build import caches as buildcaches
from .libs.errors import KindlingError
from .libs.settings import process_environment


def _stack_and_home(c):
    # Files unchecked: caches are managed even while a source checkout is missing.
    env = process_environment()
    stack = cli.load(c, check_files=False, env=env)
    return stack, runs.state_home(stack, env)


def _declared(stack) -> dict:
    """(stack, cache name) -> the services whose builds mount that cache."""
    found = {}
    for service in stack.services.values():
        for cache in service.build.caches if service.built else ():
            found.setdefault((stack.name, cache.name), []).append(service.name)
    return found


@task
@cli.reports_errors
def status(c):
    """Each build cache under the state folder: size against its limit, files, last write, users."""
    stack, home = _stack_and_home(c)
    limit = buildcaches.size_limit(process_environment())
    declared = _declared(stack)
    states = buildcaches.states(home, declared)
    print(
        f"build caches under {buildcaches.root(home)} (limit {buildcaches.human_size(limit)} each; "
        f"{buildcaches.LIMIT_VARIABLE} changes it)"
    )
    if not states:
        print("  none: a service's `build.caches` makes one at its first build")
        return
    print(f"  {'stack':<16} {'cache':<12} {'size':>10} {'files':>7}  {'last write':<16}  state")
    for state in states:
        used = state.usage
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(used.newest)) if used.newest else "-"
        notes = []
        if not state.exists:
            notes.append("not created yet")
        if used.bytes > limit:
            notes.append(
                "OVER LIMIT: "
                + (
                    "the next build that has it to itself trims it"
                    if state.name in buildcaches.TRIMMABLE
                    else f"`invoke cache.clear --name {state.name}` empties it"
                )
            )
        if state.in_use:
            notes.append("in use by a build")
        users = declared.get((state.stack, state.name))
        if users:
            notes.append("used by " + ", ".join(users))
        size = buildcaches.human_size(used.bytes)
        print(
            f"  {state.stack:<16} {state.name:<12} {size:>10} {used.files:>7}  "
            f"{when:<16}  {'; '.join(notes) or '-'}"
        )


@task(
    help={
        "stack": "The stack whose caches to clear (default: the current stack file's).",
        "name": "Clear only this cache (default: every cache of the stack).",
        "dry-run": "Say what would be removed; remove nothing.",
    }
)
@cli.reports_errors
def clear(c, stack="", name="", dry_run=False):
    """Empty a stack's build caches (the next build starts cold). Refused while a build uses one."""
    dry_run = dry_run or bool(c.config.run.dry)
    current, home = _stack_and_home(c)
    stack_name = stack or current.name
    states = [s for s in buildcaches.states(home) if s.stack == stack_name]
    if name:
        chosen = [s for s in states if s.name == name]
        if not chosen:
            raise KindlingError(
                f"stack {stack_name} has no cache named {name!r} under "
                f"{buildcaches.root(home)}"
                f"\n  fix: choose from: {', '.join(s.name for s in states) or '(none yet)'}"
            )
        states = chosen
    if not states:
        print(f"stack {stack_name}: no build caches under {buildcaches.root(home)}")
        return
    verb = "would remove" if dry_run else "removed"
    for state in states:
        freed = buildcaches.clear(state.folder, dry_run=dry_run)
        print(
            f"{verb} cache {state.name} of stack {stack_name}: {buildcaches.human_size(freed)} "
            f"({state.folder})"
        )


ns = Collection("cache")
ns.add_task(status)
ns.add_task(clear)
