"""Timing report: where the minutes went. Pure functions over scheduler records."""

import graphlib

BAR_WIDTH = 40


def critical_path(records) -> list:
    """The chain of steps, along `needs` edges, whose durations add up to the most."""
    by_id = {r.id: r for r in records if r.start is not None}
    finish, previous = {}, {}
    order = graphlib.TopologicalSorter({r.id: [n for n in r.needs if n in by_id] for r in by_id.values()})
    for sid in order.static_order():
        record = by_id[sid]
        best = max((n for n in record.needs if n in finish), key=lambda n: finish[n], default=None)
        finish[sid] = record.duration + (finish[best] if best else 0.0)
        previous[sid] = best
    if not finish:
        return []
    sid, path = max(finish, key=finish.get), []
    while sid:
        path.append(sid)
        sid = previous[sid]
    return list(reversed(path))


def summary(records, strategy="", run_id="", status="") -> dict:
    started = [r for r in records if r.start is not None]
    wall = (max(r.end or r.start for r in started) - min(r.start for r in started)) if started else 0.0
    path = critical_path(records)
    by_id = {r.id: r for r in records}
    path_sum = sum(by_id[s].duration for s in path)
    return {
        "run": run_id,
        "strategy": strategy,
        "status": status,
        "wall_seconds": round(wall, 3),
        "critical_path": path,
        "critical_path_seconds": round(path_sum, 3),
        "wall_over_critical_path": round(wall / path_sum, 3) if path_sum else None,
        "steps": [
            {"id": r.id, "kind": r.kind, "subject": r.subject, "needs": r.needs, "status": r.status,
             "outcome": r.outcome, "start": _round(r.start), "end": _round(r.end),
             "seconds": round(r.duration, 3), "error": r.error, **r.extra}
            for r in records
        ],
    }


def _round(value):
    return None if value is None else round(value, 3)


def table(report: dict) -> str:
    """A compact table with a text Gantt bar per step; critical-path steps marked *."""
    steps = report["steps"]
    wall = report["wall_seconds"] or 1e-9
    on_path = set(report["critical_path"])
    width = max([len(s["id"]) for s in steps] + [4])
    lines = [f"{'step':<{width}}  {'result':<16} {'start':>7} {'secs':>7}  timeline"]
    for s in steps:
        bar = ""
        if s["start"] is not None:
            left = int(round(s["start"] / wall * BAR_WIDTH))
            length = max(1, int(round(s["seconds"] / wall * BAR_WIDTH)))
            bar = " " * left + ("#" if s["id"] in on_path else "=") * length
        result = s["outcome"] if s["status"] == "ok" else s["status"]
        start = f"{s['start']:.1f}" if s["start"] is not None else "-"
        mark = "*" if s["id"] in on_path else " "
        lines.append(f"{s['id'] + mark:<{width + 1}} {result[:16]:<16} {start:>7} {s['seconds']:>7.1f}  |{bar:<{BAR_WIDTH}}|")
    ratio = report["wall_over_critical_path"]
    lines.append(
        f"wall {report['wall_seconds']:.1f} s; critical path {report['critical_path_seconds']:.1f} s "
        f"({' -> '.join(report['critical_path']) or '-'})"
        + (f"; wall / critical path = {ratio:.2f}" if ratio else ""))
    return "\n".join(lines)


def service_table(report: dict, services) -> str:
    """service, image, build s, load s, deploy s: the end-of-setup summary."""
    by_id = {s["id"]: s for s in report["steps"]}
    lines = [f"{'service':<24} {'build':>7} {'load':>7} {'deploy':>7}  image"]
    for name, ref in services:
        cells = []
        for kind in ("image", "load", "deploy"):
            step = by_id.get(f"{kind}:{name}")
            if step is None:
                cells.append("-")
            elif step["status"] != "ok":
                cells.append(step["status"])
            elif step["outcome"] in ("cached", "up to date", "on node", "present"):
                cells.append(step["outcome"].split()[0])
            else:
                cells.append(f"{step['seconds']:.1f}")
        lines.append(f"{name:<24} {cells[0]:>7} {cells[1]:>7} {cells[2]:>7}  {ref}")
    lines.append(f"total {report['wall_seconds']:.1f} s")
    return "\n".join(lines)
