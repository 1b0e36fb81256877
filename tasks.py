"""kindling: stand up a multi-service E2E environment on a local Kind cluster, fast.

The root collection is assembled here, explicitly, from one module per namespace.
"""

import os
import sys

# `tasks.py` and the `tasks/` folder both want the module name `tasks`. This file is
# the package's __init__: `tasks/` has no __init__.py, and setting __path__ here makes
# `tasks.build`, `tasks.libs.stack`, ... import from that folder, for invoke (which
# imports this file as `tasks`) and for pytest (which finds this file first on sys.path).
__path__ = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "tasks")]

from invoke import Collection  # noqa: E402

from tasks import bench, build, cache, cluster, deploy, doctor, e2e, stackcheck  # noqa: E402
from tasks.libs import cli  # noqa: E402
from tasks.libs.errors import KindlingError  # noqa: E402


def _stack_for_task_list():
    """The stack whose services get deploy.<service> tasks; None (with a warning) if unusable.

    The task list is made before Invoke parses the command line, so the `e2e.stack` and
    `e2e.profile` settings are read here through Invoke's own config loading (system, user and
    project files, INVOKE_E2E_*, and a `-f FILE` on the command line), as the tasks later see them."""
    try:
        return cli.load(None, check_files=False, config=cli.configured_e2e(sys.argv))
    except KindlingError as exc:
        print(f"kindling: no deploy.<service> tasks: {exc}", file=sys.stderr)
        return None


ns = Collection()
ns.add_collection(build.ns)
ns.add_collection(cluster.ns)
ns.add_collection(deploy.make_collection(_stack_for_task_list()))
ns.add_collection(e2e.ns)
ns.add_collection(bench.ns)
ns.add_collection(stackcheck.collection)
ns.add_collection(cache.ns)
ns.add_task(doctor.doctor)
ns.configure(cli.CONFIG_DEFAULTS)
