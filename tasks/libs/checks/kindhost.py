"""What kind's podman provider needs of the host (kind's "Rootless" page and
pkg/cluster/internal/providers/podman/provision.go): rootful or delegated cgroups, a log driver
kind can follow, /lib/modules. Part of `invoke doctor` (preflight.py)."""

import shutil
from pathlib import Path

from .checkresult import FAIL, OK, WARN, Check, query

# Log drivers kind cannot follow: it waits for the node's start line with `podman logs -f`
# (pkg/cluster/internal/providers/podman/provision.go), which has nothing to read with these.
UNFOLLOWABLE_LOG_DRIVERS = {"none", "passthrough", "passthrough-tty"}
FOLLOWABLE_LOG_DRIVERS = {"k8s-file", "json-file"}  # podman's json-file is k8s-file
JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
LOG_DRIVER_FIX = (
    'set `log_driver = "k8s-file"` under [containers] in containers.conf '
    "(/etc/containers/containers.conf, or ~/.config/containers/containers.conf for rootless "
    "podman), as kind's Rootless page shows"
)


def journal_works(runner) -> bool:
    """journald runs (podman's journald driver writes to its socket) and journalctl reads entries back."""
    if not JOURNAL_SOCKET.exists() or shutil.which("journalctl") is None:
        return False
    result, _ = query(runner, ["journalctl", "--quiet", "--no-pager", "--lines=1"], timeout=10)
    return bool(result and result.stdout.strip())


def podman_checks(host_info, journal=journal_works) -> tuple:
    """([checks], image store) from one `podman info --format json`, the call kind's provider makes;
    host_info: the preflight's HostInfo, which asks it once."""
    info, failure = host_info.engine_info()
    if info is None:
        return [
            Check(
                "podman info",
                FAIL,
                failure,
                "run `podman info` to see why; kind's podman provider needs it too",
            )
        ], None
    host = info.get("host") or {}
    graph_root = (info.get("store") or {}).get("graphRoot")
    return [rootless_check(host), log_driver_check(host, lambda: journal(host_info.runner))], (
        Path(graph_root) if graph_root else None
    )


def rootless_check(host: dict) -> Check:
    """kind's Rootless page: rootless podman needs cgroup v2 (with the cpu controller delegated)."""
    rootless = bool((host.get("security") or {}).get("rootless"))
    cgroup = host.get("cgroupVersion") or "unknown"
    if not rootless:
        return Check("podman mode", OK, f"rootful (cgroup {cgroup})")
    if cgroup == "v2":
        return Check(
            "podman mode",
            OK,
            "rootless with cgroup v2 (kind's Rootless page also wants the cpu "
            "controller delegated: systemd 252+ does it)",
        )
    return Check(
        "podman mode",
        FAIL,
        f"rootless with cgroup {cgroup}: kind's rootless provider needs cgroup v2",
        'boot with cgroup v2 (GRUB_CMDLINE_LINUX="systemd.unified_cgroup_hierarchy=1", '
        "`sudo update-grub`, reboot; see https://kind.sigs.k8s.io/docs/user/rootless/), or run podman "
        "rootful (sudo)",
    )


def log_driver_check(host: dict, journal_ok) -> Check:
    driver = host.get("logDriver") or ""
    if driver in FOLLOWABLE_LOG_DRIVERS:
        return Check("log driver", OK, driver)
    if driver == "journald":
        if journal_ok():
            return Check("log driver", OK, "journald (the journal answers)")
        return Check(
            "log driver",
            FAIL,
            "journald, but no journal answers here (no journald running): "
            "kind's `podman logs -f` wait for the node would fail",
            LOG_DRIVER_FIX,
        )
    if driver in UNFOLLOWABLE_LOG_DRIVERS:
        return Check(
            "log driver",
            FAIL,
            f"{driver}: podman keeps no log, so kind's `podman logs -f` wait for the node would fail",
            LOG_DRIVER_FIX,
        )
    return Check(
        "log driver",
        WARN,
        f"{driver or 'unknown'}: kind follows node logs with `podman logs -f`",
        LOG_DRIVER_FIX,
    )


def modules_check(modules=Path("/lib/modules")) -> Check:
    """kind mounts /lib/modules read-only into every node (provision.go of each provider): it must exist."""
    if modules.is_dir():
        return Check("/lib/modules", OK, "exists (kind mounts it into every node)")
    return Check(
        "/lib/modules",
        FAIL,
        "missing: kind mounts it read-only into every node, and the node container cannot start without it",
        f"sudo mkdir -p {modules}",
    )
