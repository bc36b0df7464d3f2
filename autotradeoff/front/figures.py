"""The report's plotly figures, drawn from plain rows (``pareto``) and gains (``gains``): the front for every
objective pair (the baseline, the region it dominates, the chosen config), hypervolume against the budget
spent, per-objective knob importances, a parallel-coordinates view of the front, and the exit levels of a
variable-effort config."""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Sequence
from typing import Any

import optuna
import plotly.graph_objects as go

from autotradeoff.front import pareto
from autotradeoff.knobs import EXIT_PREFIX, Objective

__all__ = ["front_figures", "hypervolume_figure", "importance_figure", "parallel_figure", "exit_figure", "log_ticks"]

_LAYOUT = {"template": "plotly_white", "height": 480}


MAX_DOMINATED = 2000  # dominated trials drawn per scatter; more only make the page heavy (each carries its hover text)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _hover(row: dict) -> str:
    knobs = ", ".join(f"{k}={_fmt(v)}" for k, v in row["shown"].items())
    return f"trial {row['number']}<br>{html.escape(knobs)}"


def log_ticks(values: Sequence[float]) -> list[float] | None:
    """1-2-5 tick values covering ``values`` when they span more than 10x (a log axis), else None."""
    positive = [v for v in values if v > 0]
    if not positive or max(positive) / min(positive) <= 10:
        return None
    low, high = math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))
    return [m * 10.0 ** e for e in range(low, high + 1) for m in (1, 2, 5)
            if min(positive) / 2 <= m * 10.0 ** e <= max(positive) * 2]


def _axis(rows: Sequence[dict], objective: Objective) -> dict:
    ticks = log_ticks([r["metrics"][objective.name] for r in rows])
    axis = {"title": f"{objective.name} ({'higher' if objective.direction == 'max' else 'lower'} is better)"}
    return {**axis, "type": "log", "tickvals": ticks, "ticktext": [f"{t:g}" for t in ticks]} if ticks else axis


def _scatter(fig: go.Figure, rows: Sequence[dict], x: Objective, y: Objective, **style: Any) -> None:
    fig.add_scatter(x=[r["metrics"][x.name] for r in rows], y=[r["metrics"][y.name] for r in rows],
                    text=[_hover(r) for r in rows], hoverinfo="text+x+y", **style)


def _beyond(values: Sequence[float], *, worse_is_higher: bool) -> float:
    """A little past the worst of ``values``, so the shaded region reaches the plot's edge without widening it."""
    span = (max(values) - min(values)) or abs(max(values)) or 1.0
    return max(values) + 0.05 * span if worse_is_higher else min(values) - 0.05 * span


def _dominated_region(fig: go.Figure, base: dict, x: Objective, y: Objective, rows: Sequence[dict]) -> None:
    """Shade the part of the plane the baseline dominates (no better on both axes)."""
    xs = [r["metrics"][x.name] for r in rows] + [base["metrics"][x.name]]
    ys = [r["metrics"][y.name] for r in rows] + [base["metrics"][y.name]]
    bx, by = base["metrics"][x.name], base["metrics"][y.name]
    far_x = _beyond(xs, worse_is_higher=x.direction == "min")
    far_y = _beyond(ys, worse_is_higher=y.direction == "min")
    fig.add_scatter(x=[bx, far_x, far_x, bx, bx], y=[by, by, far_y, far_y, by], fill="toself", mode="lines",
                    line={"width": 0}, fillcolor="rgba(120,120,120,0.15)", name="dominated by the baseline",
                    hoverinfo="skip")


def thin(rows: Sequence[dict], most: int) -> list[dict]:
    """At most ``most`` of ``rows``, evenly spread over them (by trial number), all when they are fewer."""
    if len(rows) <= most:
        return list(rows)
    step = len(rows) / most
    return [rows[int(i * step)] for i in range(most)]


def front_figures(rows: list[dict], objectives: Sequence[Objective], *, baseline: dict | None = None,
                  chosen: dict | None = None) -> list[go.Figure]:
    """One scatter per objective pair: all complete trials, the front joined, the baseline and the region it
    dominates, the chosen config. Past ``MAX_DOMINATED`` dominated trials, an even sample of them is drawn
    (the front, baseline and chosen config always whole): a 10,000-trial study stays a page a browser opens."""
    done = [r for r in rows if r["state"] == "COMPLETE"]
    best = pareto.front(rows, objectives)
    on_front = {r["number"] for r in best}
    figures = []
    for x, y in itertools.combinations(objectives, 2):
        fig = go.Figure()
        if baseline is not None:
            _dominated_region(fig, baseline, x, y, done)
        dominated = [r for r in done if r["number"] not in on_front]
        drawn = thin(dominated, MAX_DOMINATED)
        _scatter(fig, drawn, x, y, mode="markers", marker={"color": "#a0a0a0", "size": 7},
                 name="trials" if len(drawn) == len(dominated) else f"trials ({len(drawn)} of {len(dominated)} dominated, evenly sampled)")
        _scatter(fig, sorted(best, key=lambda r: r["metrics"][x.name]), x, y, mode="markers+lines", name="Pareto front",
                 line={"shape": "hv", "color": "#d62728"}, marker={"size": 10, "color": "#d62728"})
        for row, name, marker in ((baseline, "baseline", {"symbol": "star", "size": 16, "color": "#1f1f1f"}),
                                  (chosen, "chosen config", {"symbol": "diamond-open", "size": 18, "color": "#1f77b4",
                                                             "line": {"width": 3}})):
            if row is not None:
                _scatter(fig, [row], x, y, mode="markers", name=f"{name} (trial {row['number']})", marker=marker)
        fig.update_layout(title=f"{y.name} vs {x.name}", xaxis=_axis(done, x), yaxis=_axis(done, y), **_LAYOUT)
        figures.append(fig)
    return figures


def hypervolume_figure(rows: list[dict], objectives: Sequence[Objective]) -> go.Figure:
    """Hypervolume of the complete trials so far against the CPU hours all trials had spent by then."""
    reference = pareto.reference_point(rows, objectives)
    history = dict(pareto.hypervolume_history(rows, objectives, reference))
    spent, points = 0.0, []
    for row in sorted(rows, key=lambda r: r["number"]):
        spent += (row.get("charge") or {}).get("cpu_h", 0.0)
        if row["number"] in history:
            points.append((spent, history[row["number"]]))
    fig = go.Figure()
    fig.add_scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers", name="hypervolume",
                    line={"shape": "hv"})
    fig.update_layout(title=f"Hypervolume against the budget spent (reference point, as losses: "
                            f"{[round(r, 4) for r in reference]})", xaxis_title="CPU hours spent (all trials)",
                      yaxis_title="hypervolume", **{**_LAYOUT, "height": 380})
    return fig


def importance_figure(study: optuna.Study, objectives: Sequence[Objective]) -> go.Figure | None:
    """Per objective, how much each searched knob explains of it (Optuna's fANOVA importances); None when
    there are too few complete trials or knobs to tell."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if len(complete) < 4 or len({k for t in complete for k in t.params}) < 2:
        return None
    fig = go.Figure()
    for index, objective in enumerate(objectives):
        try:
            found = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), target=lambda t, i=index: t.values[i])
        except (RuntimeError, ValueError):  # a knob never varied, a single distribution: nothing to tell
            continue
        fig.add_bar(x=list(found), y=list(found.values()), name=objective.name)
    fig.update_layout(title="Which knobs matter for which objective (fANOVA importance)", barmode="group",
                      yaxis_title="importance (share of the objective's variance)", **{**_LAYOUT, "height": 400})
    return fig if fig.data else None


def parallel_figure(best: Sequence[dict], objectives: Sequence[Objective]) -> go.Figure | None:
    """The front's knobs and objectives as parallel coordinates (categorical knobs as their choices' codes)."""
    if len(best) < 2:
        return None
    names = sorted({k for r in best for k in r["shown"] if len({str(x["shown"].get(k)) for x in best}) > 1})
    dimensions = []
    for name in names:
        values = [r["shown"].get(name) for r in best]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            dimensions.append({"label": name, "values": values})
        else:
            choices = sorted({str(v) for v in values})
            dimensions.append({"label": name, "values": [choices.index(str(v)) for v in values],
                               "tickvals": list(range(len(choices))), "ticktext": choices})
    dimensions += [{"label": o.name, "values": [r["metrics"][o.name] for r in best]} for o in objectives]
    fig = go.Figure(go.Parcoords(dimensions=dimensions, line={"color": [r["metrics"][objectives[0].name] for r in best],
                                                              "colorscale": "Viridis", "showscale": True}))
    fig.update_layout(title="The front's knobs and objectives (one line per front trial)", **{**_LAYOUT, "height": 420})
    return fig


def exit_figure(row: dict) -> go.Figure | None:
    """Bar chart of the share of samples answered at each inference level; None without such metrics."""
    shares = pareto.level_shares(row, EXIT_PREFIX)
    if not shares:
        return None
    fig = go.Figure()
    fig.add_bar(x=[level for level, _ in shares], y=[share for _, share in shares], marker_color="#1f77b4",
                text=[f"{share:.1%}" for _, share in shares], textposition="outside")
    fig.update_layout(title=f"Trial {row['number']}: share of validation samples exiting at each inference level",
                      xaxis_title="level (input side)", yaxis_title="share of samples", yaxis_range=[0, 1.1],
                      xaxis_type="category", **{**_LAYOUT, "height": 380})
    return fig
