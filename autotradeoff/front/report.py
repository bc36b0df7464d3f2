"""Render a study as one self-contained HTML page (plotly.js inlined, opens offline).

The page opens with the answer: what each front point gains over the task's baseline, on validation and
test, and the chosen config (always a front point). Then the front for every objective pair (baseline and
the region it dominates drawn), hypervolume against the budget spent, which knobs matter for which
objective, the front's knobs in parallel coordinates, the chosen config's details, and the tables. Data
comes from ``pareto`` and ``gains``; figures from ``figures``; this module assembles the page.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import optuna

from autotradeoff.errors import UsageError
from autotradeoff.front import figures, gains, pareto
from autotradeoff.knobs import Objective
from autotradeoff.study import record

__all__ = ["write_report"]


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _answer(found: dict, objectives: tuple[Objective, ...], chosen: dict | None) -> str:
    """The table a user came for: every front point against the baseline, objective by objective."""
    base = found["baseline"]
    if base is None:
        return "<h2>What the front gains over the baseline</h2><p>The baseline trial has not completed.</p>"
    tested = [any("test_change" in p["objectives"][i] for p in found["points"]) for i in range(len(objectives))]
    head = ["trial", "dominates the baseline on validation"]
    for o, has_test in zip(objectives, tested):
        change = "difference" if o.direction == "max" else "vs baseline"
        head += [o.name, f"{change} (validation)", *([f"{change} (test)"] if has_test else [])]
    body = []
    for point in found["points"]:
        row = point["row"]
        marks = [m for m, on in (("chosen", chosen is not None and row["number"] == chosen["number"]),
                                 ("baseline", row["number"] == base["number"])) if on]
        cells = [f"{row['number']}" + (f" ({', '.join(marks)})" if marks else ""),
                 "yes" if point["dominates_baseline"] else "no"]
        for c, has_test in zip(point["objectives"], tested):
            cells += [_fmt(c.get("val", "")), _change(c, "val"), *([_change(c, "test")] if has_test else [])]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in cells) + "</tr>")
    line = gains.headline(next(p for p in found["points"] if p["row"]["number"] == chosen["number"]), objectives) \
        if chosen is not None and any(p["row"]["number"] == chosen["number"] for p in found["points"]) else ""
    return (f"<h2>What the front gains over the baseline (trial {base['number']})</h2>"
            + (f"<p class='answer'>Chosen: {html.escape(line)}.</p>" if line else "")
            + f"<div class='scroll'><table id='gains'><tr>{''.join(f'<th>{html.escape(h)}</th>' for h in head)}</tr>"
            f"{''.join(body)}</table></div>")


def _change(compared: dict, split: str) -> str:
    """A difference (+0.004) for a quality objective, a factor (1.6x) for a cost."""
    value = compared.get(f"{split}_change")
    if value is None:
        return ""
    return f"{value:+.4g}" if compared["direction"] == "max" else gains.factor_text(value)


def _chosen(rows: list[dict], objectives: tuple[Objective, ...], rule: str) -> tuple[dict | None, str]:
    """(the chosen front point, its section), or (None, a line saying why there is none)."""
    try:
        row = pareto.pick(rows, rule, objectives)
    except UsageError as exc:
        return None, (f"<h2>Chosen config</h2><p>none: {html.escape(str(exc))} (a pick is made among the front's "
                      "points only).</p>")
    note = (f"<p>Picked on validation, among the front's points, by <code>{html.escape(rule)}</code> "
            f"(<code>autotradeoff export --pick</code> exports it; <code>autotradeoff front --pick</code> redraws this "
            "with another rule).</p>")
    return row, (_table([row], objectives, title=f"Chosen config: trial {row['number']}") + note
                 + _honesty(pareto.honesty(rows, objectives, row)))


def _honesty(report: dict) -> str:
    """Validation beside test for the pick, the gap, and whether the pick stays on the front on test."""
    cells = "".join(f"<tr><td>{html.escape(name)}</td><td>{val:.4g}</td><td>{test:.4g}</td><td>{test - val:+.4g}</td></tr>"
                    for name, (val, test) in report["values"].items())
    beaten = report["dominated_on_test_by"]
    verdict = ("It stays on the Pareto front when the front is read on test." if not beaten else
               f"<b>On test it falls off the front</b>: trial(s) {', '.join(map(str, beaten))} dominate it there.")
    return (f"<h3>Validation (selected on) and test (only reported)</h3><table class='summary'><tr><th>objective</th>"
            f"<th>validation</th><th>test</th><th>gap (test - validation)</th></tr>{cells}</table><p>{verdict}</p>")


def _table(rows: list[dict], objectives: tuple[Objective, ...], *, title: str, ident: str = "") -> str:
    """Trials with the knobs that mattered (inactive conditional knobs left out), objectives first."""
    if not rows:
        return f"<h2>{html.escape(title)}</h2><p>none</p>"
    knobs = sorted({k for r in rows for k in r["shown"]})
    metrics = [o.name for o in objectives] + sorted({k for r in rows for k in r["metrics"]} - {o.name for o in objectives})
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["trial", "state", *knobs, *metrics,
                                                          "why failed, pruned, infeasible or degenerate"])
    body = []
    for r in rows:
        cells = [r["number"], r["state"], *(r["shown"].get(k, "") for k in knobs), *(r["metrics"].get(m, "") for m in metrics),
                 r.get("fail_reason") or r.get("degenerate") or "; ".join(r.get("violations") or [])]
        body.append("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in cells) + "</tr>")
    where = f" id='{ident}'" if ident else ""
    return f"<h2>{html.escape(title)}</h2><div class='scroll'><table{where}><tr>{head}</tr>{''.join(body)}</table></div>"


def _summary(study: optuna.Study, rows: list[dict], objectives: tuple[Objective, ...], best: list[dict]) -> str:
    used = record.spent(study)
    facts = {
        "study": study.study_name, "task": record.task_of(study.user_attrs),
        "objectives": ", ".join(map(str, objectives)), "trials": pareto.counts_line(rows),
        "front size": len(best), "cpu-h spent": f"{used['cpu-h']:.4f}", "gpu-h spent": f"{used['gpu-h']:.4f}",
        "search wall time": f"{used['s'] / 60:.1f} min",
        "pruned": (f"{sum((r['fail_reason'] or '').startswith('rejected') for r in rows)} rejected before training, "
                   f"{sum((r['fail_reason'] or '').startswith('stopped') for r in rows)} stopped early"),
        "constraints": ", ".join(record.constraints_of(study.user_attrs)) or "none",
        "front re-measured alone": f"{sum(r['remeasured'] for r in best)} of {len(best)}",
    }
    return "<h2>Study</h2><table class='summary'>" + "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items()) + "</table>"


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}th{background:#f3f3f3}.scroll{overflow-x:auto}
.summary td{text-align:left}.answer{font-size:16px;font-weight:600}"""


def _figures(study: optuna.Study, rows: list[dict], objectives: tuple[Objective, ...], found: dict,
             chosen: dict | None) -> list:
    best = pareto.front(rows, objectives)
    made = [*figures.front_figures(rows, objectives, baseline=found["baseline"], chosen=chosen),
            figures.hypervolume_figure(rows, objectives), figures.importance_figure(study, objectives),
            figures.parallel_figure(best, objectives), figures.exit_figure(chosen) if chosen is not None else None]
    return [f for f in made if f is not None]


MAX_TABLE_ROWS = 2000  # rows of the "All trials" table; a longer table is a page no one reads (the dashboard lists all)


def _all_trials(rows: list[dict]) -> tuple[list[dict], str, str]:
    """The "All trials" table: every trial, or the latest ``MAX_TABLE_ROWS`` of a larger study."""
    if len(rows) <= MAX_TABLE_ROWS:
        return rows, "All trials", ""
    return (rows[-MAX_TABLE_ROWS:], f"All trials: the latest {MAX_TABLE_ROWS} of {len(rows)} (`autotradeoff dashboard` lists "
            "them all)", "")


def write_report(study: optuna.Study, out_dir: Path, *, rule: str | None = None, rows: list[dict] | None = None) -> Path:
    """Write ``out_dir/index.html`` for ``study`` and return its path; ``rule`` picks the chosen config
    (default: ``pareto.default_rule``); ``rows``: ``pareto.rows_of(study)`` when the caller has them already."""
    rows, objectives = pareto.rows_of(study) if rows is None else rows, pareto.objectives_of(study)
    best = pareto.front(rows, objectives)
    chosen, chosen_html = _chosen(rows, objectives, rule or pareto.default_rule(objectives))
    found = gains.gains(rows, objectives)
    drawn = _figures(study, rows, objectives, found, chosen)
    plots = "".join(fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(drawn))
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    tables = [(best, "Pareto front", "front"), ([r for r in rows if r["state"] == "FAIL"], "Failed trials", ""),
              ([r for r in complete if r.get("violations")], "Complete but breaking a constraint (off the front)", ""),
              ([r for r in complete if r.get("degenerate")], "Complete but degenerate: predicting like a constant (off the front)",
               ""), _all_trials(rows)]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>autotradeoff: {html.escape(study.study_name)}"
            f"</title><style>{_STYLE}</style></head><body><h1>autotradeoff study {html.escape(study.study_name)}</h1>"
            f"{_answer(found, objectives, chosen)}{plots}{chosen_html}{_summary(study, rows, objectives, best)}"
            + "".join(_table(part, objectives, title=title, ident=ident) for part, title, ident in tables)
            + "</body></html>")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
