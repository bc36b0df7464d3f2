"""Render a study as one self-contained HTML page (plotly.js inlined, opens offline).

Sections: the Pareto front (every objective pair), hypervolume history, the chosen config (a pick
rule's choice; with variable-effort inference, the share of samples exiting at each level), the front
and all trials as tables, failed trials with their reasons. Data comes from ``pareto``; this module only draws.
"""

from __future__ import annotations

import html
import itertools
import json
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go

from autotradeoff import pareto
from autotradeoff.errors import UsageError
from autotradeoff.space import Objective
from autotradeoff.study import spent

__all__ = ["write_report", "front_figures", "hypervolume_figure", "exit_figure"]


def _hover(row: dict) -> str:
    knobs = ", ".join(f"{k}={_fmt(v)}" for k, v in row["config"].items())
    return f"trial {row['number']}<br>{html.escape(knobs)}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _axis_type(rows: list[dict], name: str) -> str:
    """Log scale when a positive metric spans more than 10x (latency, FLOPs), so the front isn't squashed."""
    values = [r["metrics"][name] for r in rows]
    return "log" if values and min(values) > 0 and max(values) / min(values) > 10 else "linear"


def front_figures(rows: list[dict], objectives: tuple[Objective, ...]) -> list[go.Figure]:
    """One scatter per objective pair: all complete trials, the front highlighted and joined."""
    done = [r for r in rows if r["state"] == "COMPLETE"]
    best = pareto.front(rows, objectives)
    best_numbers = {r["number"] for r in best}
    figures = []
    for x, y in itertools.combinations(objectives, 2):
        fig = go.Figure()
        others = [r for r in done if r["number"] not in best_numbers]
        fig.add_scatter(x=[r["metrics"][x.name] for r in others], y=[r["metrics"][y.name] for r in others],
                        mode="markers", name="trials", marker={"color": "#a0a0a0", "size": 7},
                        text=[_hover(r) for r in others], hoverinfo="text+x+y")
        pair = sorted(best, key=lambda r: r["metrics"][x.name])
        fig.add_scatter(x=[r["metrics"][x.name] for r in pair], y=[r["metrics"][y.name] for r in pair],
                        mode="markers+lines", name="Pareto front", line={"shape": "hv", "color": "#d62728"},
                        marker={"size": 10, "color": "#d62728"}, text=[_hover(r) for r in pair],
                        hoverinfo="text+x+y")
        fig.update_layout(title=f"{y.name} ({y.direction}) vs {x.name} ({x.direction})",
                          xaxis_title=x.name, yaxis_title=y.name, height=480, template="plotly_white",
                          xaxis_type=_axis_type(done, x.name), yaxis_type=_axis_type(done, y.name))
        figures.append(fig)
    return figures


def hypervolume_figure(rows: list[dict], objectives: tuple[Objective, ...]) -> go.Figure:
    reference = pareto.reference_point(rows, objectives)
    history = pareto.hypervolume_history(rows, objectives, reference)
    fig = go.Figure()
    fig.add_scatter(x=[n for n, _ in history], y=[v for _, v in history], mode="lines+markers", name="hypervolume")
    fig.update_layout(title=f"Hypervolume history (reference point, as losses: {[round(r, 4) for r in reference]})",
                      xaxis_title="trial", yaxis_title="hypervolume", height=380, template="plotly_white")
    return fig


def exit_figure(row: dict) -> go.Figure | None:
    """Bar chart of the share of samples answered at each inference level; None without such metrics."""
    shares = pareto.level_shares(row)
    if not shares:
        return None
    fig = go.Figure()
    fig.add_bar(x=[level for level, _ in shares], y=[share for _, share in shares], marker_color="#1f77b4",
                text=[f"{share:.1%}" for _, share in shares], textposition="outside")
    fig.update_layout(title=f"Trial {row['number']}: share of samples exiting at each inference level",
                      xaxis_title="level (input side)", yaxis_title="share of samples", yaxis_range=[0, 1.1],
                      height=380, template="plotly_white", xaxis_type="category")
    return fig


def _chosen(rows: list[dict], objectives: tuple[Objective, ...], rule: str) -> tuple[str, list[go.Figure]]:
    """The chosen config as a table (and its exit histogram), or a line saying why there is none."""
    try:
        row = pareto.pick(rows, rule)
    except UsageError as exc:
        return f"<h2>Chosen config</h2><p>none: {html.escape(str(exc))}</p>", []
    figure = exit_figure(row)
    note = (f"<p>Picked by <code>{html.escape(rule)}</code> (<code>autotradeoff export --pick</code> exports it; "
            f"<code>autotradeoff front --pick</code> redraws this with another rule).</p>")
    return _table([row], objectives, title=f"Chosen config: trial {row['number']}") + note, [figure] if figure else []


def _table(rows: list[dict], objectives: tuple[Objective, ...], *, title: str) -> str:
    if not rows:
        return f"<h2>{html.escape(title)}</h2><p>none</p>"
    knobs = sorted({k for r in rows for k in r["config"]})
    metrics = [o.name for o in objectives] + sorted({k for r in rows for k in r["metrics"]} - {o.name for o in objectives})
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["trial", "state", *knobs, *metrics, "why failed, pruned or infeasible"])
    body = []
    for r in rows:
        cells = [r["number"], r["state"], *(r["config"].get(k, "") for k in knobs),
                 *(r["metrics"].get(m, "") for m in metrics), r.get("fail_reason") or "; ".join(r.get("violations") or [])]
        body.append("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in cells) + "</tr>")
    return f"<h2>{html.escape(title)}</h2><div class='scroll'><table><tr>{head}</tr>{''.join(body)}</table></div>"


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}th{background:#f3f3f3}.scroll{overflow-x:auto}
.summary td{text-align:left}"""


def write_report(study: optuna.Study, out_dir: Path, *, rule: str | None = None) -> Path:
    """Write ``out_dir/index.html`` for ``study`` and return its path; ``rule`` picks the chosen config
    (default: ``pareto.default_rule``)."""
    rows = pareto.rows_of(study)
    objectives = pareto.objectives_of(study)
    best = pareto.front(rows, objectives)
    chosen_html, chosen_figures = _chosen(rows, objectives, rule or pareto.default_rule(objectives))
    figures = [*front_figures(rows, objectives), hypervolume_figure(rows, objectives), *chosen_figures]
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)]
    used = spent(study)
    states = {s: sum(r["state"] == s for r in rows) for s in ("COMPLETE", "FAIL", "PRUNED", "RUNNING")}
    summary = {
        "study": study.study_name, "task": study.user_attrs.get("autotradeoff:space", {}).get("task"),
        "objectives": ", ".join(map(str, objectives)), "trials": json.dumps(states),
        "front size": len(best), "cpu-h spent": f"{used['cpu-h']:.4f}", "gpu-h spent": f"{used['gpu-h']:.4f}",
        "search wall time": f"{used['s'] / 60:.1f} min",
        "pruned": (f"{sum((r['fail_reason'] or '').startswith('rejected') for r in rows)} rejected before training, "
                   f"{sum((r['fail_reason'] or '').startswith('stopped') for r in rows)} stopped early"),
        "constraints": ", ".join(study.user_attrs.get(pareto.CONSTRAINTS_ATTR) or []) or "none",
        "front re-measured alone": f"{sum(r['remeasured'] for r in best)} of {len(best)}",
    }
    summary_html = "<table class='summary'>" + "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary.items()) + "</table>"
    failed = [r for r in rows if r["state"] == "FAIL"]
    infeasible = [r for r in rows if r["state"] == "COMPLETE" and r.get("violations")]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>autotradeoff: {html.escape(study.study_name)}"
            f"</title><style>{_STYLE}</style></head><body><h1>autotradeoff study {html.escape(study.study_name)}</h1>"
            f"{summary_html}{''.join(parts)}{chosen_html}{_table(best, objectives, title='Pareto front')}"
            f"{_table(failed, objectives, title='Failed trials')}"
            f"{_table(infeasible, objectives, title='Complete but breaking a constraint (off the front)')}"
            f"{_table(rows, objectives, title='All trials')}"
            "</body></html>")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
