"""Timing report: where the minutes went. Pure functions over scheduler records."""

import graphlib

from .plan import Outcome, StepKind

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
            {
                "id": r.id,
                "kind": _value(r.kind) or r.pool,
                "pool": r.pool,
                "subject": r.subject,
                "needs": r.needs,
                "status": r.status,
                "outcome": _value(r.outcome),
                "start": _round(r.start),
                "end": _round(r.end),
                "seconds": round(r.duration, 3),
                "error": r.error,
                **r.extra,
            }
            for r in records
        ],
    }


def _value(item):
    """An Enum's value (StepKind, Outcome), anything else as it is: run.json holds plain values."""
    return getattr(item, "value", item)


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
        lines.append(
            f"{s['id'] + mark:<{width + 1}} {result[:16]:<16} {start:>7} {s['seconds']:>7.1f}  "
            f"|{bar:<{BAR_WIDTH}}|"
        )
    ratio = report["wall_over_critical_path"]
    lines.append(
        f"wall {report['wall_seconds']:.1f} s; critical path {report['critical_path_seconds']:.1f} s "
        f"({' -> '.join(report['critical_path']) or '-'})"
        + (f"; wall / critical path = {ratio:.2f}" if ratio else "")
        + (
            f"; {before:.1f} s before it (start-up, checks, plan)"
            if (before := report.get("before_graph_seconds"))
            else ""
        )
    )
    return "\n".join(lines)


# Outcomes of a step that found its work done already: the table shows the word, not the seconds.
NOTHING_DONE = {o.value for o in (Outcome.CACHED, Outcome.UP_TO_DATE, Outcome.ON_NODE, Outcome.PRESENT)}


def service_table(report: dict, services) -> str:
    """service, image, build s, load s, deploy s: the end-of-setup summary."""
    columns = {
        StepKind.IMAGE.value: "image",
        StepKind.LOAD.value: "load",
        StepKind.PUSH.value: "load",
        StepKind.DEPLOY.value: "deploy",
    }
    by_column = {(columns[s["kind"]], s["subject"]): s for s in report["steps"] if s.get("kind") in columns}
    lines = [f"{'service':<24} {'build':>7} {'load':>7} {'deploy':>7}  image   (load: kind load or push)"]
    for name, ref in services:
        cells = []
        for column in ("image", "load", "deploy"):
            step = by_column.get((column, name))
            if step is None:
                cells.append("-")
            elif step["status"] != "ok":
                cells.append(step["status"])
            elif step["outcome"] in NOTHING_DONE:
                cells.append(step["outcome"].split()[0])
            else:
                cells.append(f"{step['seconds']:.1f}")
        lines.append(f"{name:<24} {cells[0]:>7} {cells[1]:>7} {cells[2]:>7}  {ref}")
    lines.append(f"total {report['wall_seconds']:.1f} s")
    return "\n".join(lines)


KIND_COLORS = {
    "cluster": "#7b61ff",
    "build": "#2f80ed",
    "image": "#2f80ed",
    "load": "#f2994a",
    "kube": "#27ae60",
    "deploy": "#27ae60",
    "test": "#eb5757",
}


def _escape(text) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def svg_timeline(report: dict, width: int = 900, row: int = 22) -> str:
    """An inline SVG: one bar per step on a shared time axis; critical-path bars outlined."""
    steps = [s for s in report["steps"] if s["start"] is not None]
    wall = max([s["end"] or s["start"] for s in steps] + [1e-9])
    label_width, axis = 190, 24
    plot = width - label_width - 40
    on_path = set(report["critical_path"])
    height = axis + row * len(steps) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" data-wall="{wall:.3f}" data-scale="{plot / wall:.6f}" '
        f'data-x0="{label_width}" font-family="sans-serif" font-size="12">'
    ]
    ticks = 5
    for i in range(ticks + 1):
        x = label_width + plot * i / ticks
        parts.append(f'<line x1="{x:.1f}" y1="{axis - 6}" x2="{x:.1f}" y2="{height}" stroke="#ddd"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{axis - 10}" text-anchor="middle" fill="#555">'
            f"{wall * i / ticks:.1f}s</text>"
        )
    for index, step in enumerate(steps):
        y = axis + index * row
        x = label_width + step["start"] / wall * plot
        w = max(1.0, step["seconds"] / wall * plot)
        color = KIND_COLORS.get(step.get("kind", ""), "#888") if step["status"] == "ok" else "#c0392b"
        critical = step["id"] in on_path
        outline = ' stroke="#111" stroke-width="2"' if critical else ""
        parts.append(
            f'<text x="4" y="{y + 15}" fill="#222">{_escape(step["id"])}{" *" if critical else ""}</text>'
        )
        parts.append(
            f'<rect x="{x:.2f}" y="{y + 3}" width="{w:.2f}" height="{row - 6}" rx="3" '
            f'fill="{color}"{outline} '
            f'data-step="{_escape(step["id"])}" data-start="{step["start"]:.3f}" '
            f'data-seconds="{step["seconds"]:.3f}" data-critical="{str(critical).lower()}">'
            f"<title>{_escape(step['id'])}: {_escape(step['outcome'] or step['status'])}, "
            f"{step['seconds']:.1f} s from {step['start']:.1f} s</title></rect>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _seconds(value, digits=1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def html_page(report: dict) -> str:
    """A self-contained page (no scripts, no network): summary, timeline, step table."""
    ratio = report.get("wall_over_critical_path")
    rows = "\n".join(
        f'<tr class="{_escape(s["status"])}"><td>{_escape(s["id"])}</td><td>{_escape(s["status"])}</td>'
        f"<td>{_escape(s['outcome'])}</td><td>{_seconds(s['start'])}</td>"
        f"<td>{s['seconds']:.1f}</td><td>{_escape(s['error'])[:400]}</td></tr>"
        for s in report["steps"]
    )
    images = "\n".join(
        f"<li><code>{_escape(k)}</code>: <code>{_escape(v)}</code></li>"
        for k, v in sorted((report.get("images") or {}).items())
    )
    title = f"kindling run {report.get('run', '')}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin-top: 16px; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; font-size: 13px; text-align: left; }}
tr.failed td, tr.cancelled td {{ background: #fdecea; }}
.summary span {{ margin-right: 18px; }}
</style></head>
<body>
<h1>{_escape(title)}</h1>
<p class="summary"><span>stack <b>{_escape(report.get("stack", ""))}</b></span>
<span>task <b>{_escape(report.get("task", ""))}</b></span>
<span>status <b>{_escape(report.get("status", ""))}</b></span>
<span>strategy {_escape(report.get("strategy", ""))}</span>
<span>wall {report["wall_seconds"]:.1f} s</span>
<span>critical path {report["critical_path_seconds"]:.1f} s</span>
<span>wall / critical path {_seconds(ratio, 2)}</span></p>
<p>Critical path (outlined bars, marked *): {_escape(" → ".join(report["critical_path"]) or "-")}</p>
{svg_timeline(report)}
<table><tr><th>step</th><th>status</th><th>outcome</th><th>start s</th><th>seconds</th><th>error</th></tr>
{rows}
</table>
<h2>Images</h2><ul>{images}</ul>
</body></html>
"""
