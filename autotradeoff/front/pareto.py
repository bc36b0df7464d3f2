"""Pareto data, computed on plain rows: the front, hypervolume (and its history), and pick rules.

Nothing here draws: ``report`` turns these results into plotly figures. All objectives are turned
into minimisation internally (a "max" objective is negated).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from autotradeoff.errors import UsageError
from autotradeoff.knobs import Objective, is_test_metric, parse_constraints, refuse_test_metric
from autotradeoff.study import record

__all__ = ["rows_of", "front", "dominates", "hypervolume", "reference_point", "hypervolume_history", "pick",
           "objectives_of", "default_rule", "losses", "level_shares", "spread_of", "test_candidate", "test_name",
           "on_test", "honesty", "counts", "counts_line"]


def objectives_of(study: optuna.Study) -> tuple[Objective, ...]:
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    return tuple(Objective(n, "max" if d == optuna.study.StudyDirection.MAXIMIZE else "min")
                 for n, d in zip(names, study.directions))


def spread_of(metric: str) -> str:
    """The name of a timed metric's spread: ``latency_ms`` -> ``latency_iqr_ms``."""
    return f"{metric[:-3]}_iqr_ms" if metric.endswith("_ms") and not metric.endswith("_iqr_ms") else ""


def rows_of(study: optuna.Study, trials: Sequence[optuna.trial.FrozenTrial] | None = None) -> list[dict[str, Any]]:
    """One plain dict per trial: number, state, config, shown (the config without searched knobs that were
    inactive, e.g. GAT's heads for a GCN), metrics, values, fail_reason (or why it was rejected or stopped
    early), violations (constraints its metrics break), reference ("baseline" for the task's baseline).

    Metrics re-measured in the exclusive pass after a search (``engine.remeasure``) replace the ones
    taken while other trials ran; ``values`` stay what Optuna stored. ``trials``: only these (default: all).
    """
    attrs = study.user_attrs
    constraints = parse_constraints(record.constraints_of(attrs), None, "stored constraints")
    searched = set(record.searched_knobs(attrs))
    rows = []
    for trial in study.get_trials(deepcopy=False) if trials is None else trials:
        metrics, config = record.metrics(trial, attrs), record.config(trial)
        rows.append({"number": trial.number, "trial_id": record.trial_id(trial), "state": trial.state.name,
                     "config": config, "metrics": metrics, "reference": trial.user_attrs.get(record.REFERENCE),
                     # what mattered: constants and the searched knobs that were active (asked for)
                     "shown": {k: v for k, v in config.items() if k not in searched or k in trial.params},
                     "values": list(trial.values) if trial.values else None, "fail_reason": record.reason(trial),
                     "charge": record.charge(trial), "remeasured": bool(record.remeasured(attrs, trial.number)),
                     "interrupted": record.was_interrupted(trial), "degenerate": record.degenerate(trial),
                     "violations": [v for c in constraints if (v := c.violation(metrics))]})
    return rows


def losses(row: dict, objectives: Sequence[Objective]) -> tuple[float, ...]:
    """A row's objective values as losses (a max objective negated)."""
    return tuple(-row["metrics"][o.name] if o.direction == "max" else row["metrics"][o.name] for o in objectives)


def _complete(rows: Sequence[dict], objectives: Sequence[Objective]) -> list[dict]:
    """Complete trials with every objective that meet the constraints and whose model is not degenerate."""
    return [r for r in rows if _usable(r) and all(o.name in r["metrics"] for o in objectives)]


def _usable(row: dict) -> bool:
    """A complete trial the front and the picks may choose: no constraint broken, not a constant predictor."""
    return row["state"] == TrialState.COMPLETE.name and not row.get("violations") and not row.get("degenerate")


def dominates(a: Sequence[float], b: Sequence[float], tolerance: Sequence[float] | None = None) -> bool:
    """``a`` no worse than ``b`` everywhere and better somewhere, by more than ``tolerance`` (per objective)."""
    tol = tolerance or [0.0] * len(a)
    return all(x <= y + t for x, y, t in zip(a, b, tol)) and any(x < y - t for x, y, t in zip(a, b, tol))


def _tolerance(a: dict, b: dict, objectives: Sequence[Objective]) -> list[float]:
    """Per objective, the noise within which two measurements are a tie: the mean half-spread (IQR) of a
    timed metric, 0 for the rest."""
    out = []
    for o in objectives:
        spread = spread_of(o.name)
        out.append((a["metrics"].get(spread, 0.0) + b["metrics"].get(spread, 0.0)) / 4 if spread else 0.0)
    return out


def front(rows: Sequence[dict], objectives: Sequence[Objective], *, noise: bool = True) -> list[dict]:
    """Complete, feasible trials no other such trial dominates, sorted by the first objective (best
    first). With ``noise``, timed objectives within half their measured spread are ties: a point is not
    dropped for being a hair slower than another within the clock's noise.

    Fast on studies of many thousands of trials: the exact front without ties is found first (one pass in
    sorted order, each point weighed against the front so far); a point that one of its points beats is out
    (beaten is beaten, whoever beats it); only the few points it beats none of are weighed against all."""
    done = _complete(rows, objectives)
    if not done:
        return []
    points = np.array([losses(r, objectives) for r in done], dtype=float)
    quarter = np.array([[r["metrics"].get(spread_of(o.name), 0.0) / 4 if spread_of(o.name) else 0.0 for o in objectives]
                        for r in done]) if noise else np.zeros_like(points)
    everyone = np.arange(len(done))
    candidates = everyone[~_beaten(points, quarter, everyone, _strict_front(points))]
    survivors = candidates[~_beaten(points, quarter, candidates, everyone)]
    return sorted((done[i] for i in survivors), key=lambda r: losses(r, objectives))


def _strict_front(points: np.ndarray, block: int = 256) -> np.ndarray:
    """Indices of the points no other point dominates (no ties). In lexicographic order a point can only be
    dominated by one before it, so blocks of points in that order are weighed against the front found so far
    and against each other."""
    order = np.lexsort(points.T[::-1])
    if points.shape[1] == 2:  # better on the second objective than every point before it (ties aside: a subset will do)
        second = points[order, 1]
        return order[second < np.minimum.accumulate(np.concatenate([[np.inf], second[:-1]]))]
    kept = np.empty(0, dtype=int)
    for start in range(0, len(order), block):
        idx = order[start:start + block]
        mine = points[idx][:, None, :]
        rivals = np.concatenate([points[kept], points[idx]])[None]
        beats = (rivals <= mine).all(axis=2) & (rivals < mine).any(axis=2)
        kept = np.concatenate([kept, idx[~beats.any(axis=1)]])
    return kept


def _beaten(points: np.ndarray, quarter: np.ndarray, who: np.ndarray, by: np.ndarray, chunk: int = 512) -> np.ndarray:
    """For each point in ``who``: does a point in ``by`` (not itself) beat it, by more than the two points'
    mean half-spread (``quarter`` each) on the objectives where it is better? Chunked: memory stays small."""
    out = np.zeros(len(who), dtype=bool)
    rivals, rival_q = points[by], quarter[by]
    for start in range(0, len(who), chunk):
        idx = who[start:start + chunk]
        mine, tol = points[idx][:, None, :], quarter[idx][:, None, :] + rival_q[None, :, :]
        beats = (rivals[None] <= mine + tol).all(axis=2) & (rivals[None] < mine - tol).any(axis=2)
        beats &= idx[:, None] != by[None, :]
        out[start:start + chunk] = beats.any(axis=1)
    return out


def reference_point(rows: Sequence[dict], objectives: Sequence[Objective]) -> tuple[float, ...]:
    """Per objective (as loss): the worst complete value plus 10% of the observed range (or of |worst|)."""
    points = [losses(r, objectives) for r in _complete(rows, objectives)]
    if not points:
        return tuple(0.0 for _ in objectives)
    ref = []
    for column in zip(*points):
        worst, best = max(column), min(column)
        ref.append(worst + 0.1 * ((worst - best) or abs(worst) or 1.0))
    return tuple(ref)


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Exact hypervolume dominated by loss ``points`` up to ``reference`` (slicing; fine for small fronts)."""
    pts = [tuple(p) for p in points if all(x < r for x, r in zip(p, reference))]
    if len(reference) == 2:  # one sweep along the first objective: the area below the best second value so far
        pts.sort()
        volume, lowest = 0.0, reference[1]
        for (x, y), right in zip(pts, [p[0] for p in pts[1:]] + [reference[0]]):
            lowest = min(lowest, y)
            volume += (right - x) * (reference[1] - lowest)
        return volume
    pts = [p for p in pts if not any(dominates(q, p) for q in pts)]
    if not pts:
        return 0.0
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in pts)
    pts.sort(key=lambda p: p[-1])
    volume = 0.0
    for i, point in enumerate(pts):
        upper = pts[i + 1][-1] if i + 1 < len(pts) else reference[-1]
        if upper > point[-1]:
            volume += hypervolume([p[:-1] for p in pts[: i + 1]], reference[:-1]) * (upper - point[-1])
    return volume


def hypervolume_history(rows: Sequence[dict], objectives: Sequence[Objective],
                        reference: Sequence[float] | None = None) -> list[tuple[int, float]]:
    """(trial number, hypervolume of the complete trials up to it) in trial order. The front so far is kept
    as it grows, so a dominated trial costs one comparison with it, not a hypervolume of everything."""
    reference = reference or reference_point(rows, objectives)
    best: list[tuple[float, ...]] = []
    history, volume = [], 0.0
    for row in sorted(_complete(rows, objectives), key=lambda r: r["number"]):
        point = losses(row, objectives)
        if not any(dominates(q, point) or q == point for q in best):
            best = [q for q in best if not dominates(point, q)] + [point]
            volume = hypervolume(best, reference)
        history.append((row["number"], volume))
    return history


_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|>|<)\s*(?:(max|min)\s*(?:([-+*])\s*([\d.eE+-]+))?|([-+\d.eE]+))\s*$")
_SELECT = re.compile(r"^\s*(min|max)\s+([A-Za-z_][\w.]*)\s*$")
PICK_HELP = ("a pick rule is comma-separated constraints 'metric >= number|max-x|min+x|max*x' "
             "followed by 'min metric' or 'max metric', e.g. \"accuracy>=max-0.01, min latency_ms\"")


def default_rule(objectives: Sequence[Objective]) -> str:
    """Within 0.01 of the best first "max" objective, the lowest first "min" one (else the best first objective)."""
    best = next((o for o in objectives if o.direction == "max"), None)
    cheap = next((o for o in objectives if o.direction == "min"), None)
    if best and cheap:
        return f"{best.name}>=max-0.01, min {cheap.name}"
    return f"{objectives[0].direction} {objectives[0].name}"


def level_shares(row: dict, prefix: str) -> list[tuple[str, float]]:
    """(level, share) from a row's ``<prefix><level>`` metrics, by the number in the level (8px before 16px)."""
    found = [(name[len(prefix):], value) for name, value in row["metrics"].items() if name.startswith(prefix)]
    return sorted(found, key=lambda item: (int(re.sub(r"\D", "", item[0]) or 0), item[0]))


def pick(rows: Sequence[dict], rule: str, objectives: Sequence[Objective] | None = None) -> dict:
    """The complete trial a rule selects, e.g. ``val_accuracy>=max-0.01, min latency_ms``; with ``objectives``
    among the (noise-aware) front's points only, so a pick is always a front point."""
    clauses = [c for c in rule.split(",") if c.strip()]
    if not clauses or not _SELECT.match(clauses[-1]):
        raise UsageError(f"bad pick rule {rule!r}; {PICK_HELP}")
    done = front(rows, objectives) if objectives else [r for r in rows if _usable(r)]
    if not done:
        raise UsageError("the study has no complete trial (meeting its constraints, not degenerate) to pick from")
    metrics = sorted({k for r in done for k in r["metrics"] if not is_test_metric(k)})

    def column(name: str) -> list[float]:
        refuse_test_metric(name, f"pick rule {rule!r}")
        if name not in metrics:
            raise UsageError(f"pick rule {rule!r}: unknown metric {name!r}; choices: {', '.join(metrics)}")
        return [r["metrics"][name] for r in done]

    candidates = list(done)
    for clause in clauses[:-1]:
        match = _CONSTRAINT.match(clause)
        if not match:
            raise UsageError(f"bad pick clause {clause.strip()!r}; {PICK_HELP}")
        name, op, anchor, sign, amount, number = match.groups()
        values = column(name)
        try:
            if number is not None:
                bound = float(number)
            else:
                bound = max(values) if anchor == "max" else min(values)
                delta = float(amount) if amount else None
                bound = bound if delta is None else {"+": bound + delta, "-": bound - delta, "*": bound * delta}[sign]
        except ValueError:
            raise UsageError(f"bad number in pick clause {clause.strip()!r}; {PICK_HELP}") from None
        candidates = [r for r in candidates if _OPS[op](r["metrics"][name], bound)]
    direction, target = _SELECT.match(clauses[-1]).groups()
    column(target)
    if not candidates:
        raise UsageError(f"pick rule {rule!r}: no complete trial satisfies the constraints")
    best = (min if direction == "min" else max)(candidates, key=lambda r: r["metrics"][target])
    return best


def test_candidate(name: str) -> str:
    """The name the test split's counterpart of a metric would have: ``val_accuracy`` -> ``test_accuracy``,
    ``flops`` -> ``test_flops`` (costs that depend on the data, such as variable-effort FLOPs)."""
    return f"test_{name[4:]}" if name.startswith("val_") else f"test_{name}"


def test_name(name: str, metrics: dict[str, Any]) -> str | None:
    """The test counterpart of ``name`` when ``metrics`` holds one."""
    candidate = test_candidate(name)
    return candidate if candidate in metrics else None


def on_test(row: dict, objectives: Sequence[Objective]) -> dict:
    """``row`` with each objective's value replaced by its test counterpart (costs without one stay)."""
    metrics = dict(row["metrics"])
    for o in objectives:
        if (name := test_name(o.name, metrics)) is not None:
            metrics[o.name] = metrics[name]
    return {**row, "metrics": metrics}


def honesty(rows: Sequence[dict], objectives: Sequence[Objective], chosen: dict) -> dict[str, Any]:
    """How a pick made on validation holds on test: per objective with a test counterpart, the validation
    and test values and the gap (test minus validation); and the front points that dominate the pick
    when both are read on test (empty: it stays on the front)."""
    values = {o.name: (chosen["metrics"][o.name], chosen["metrics"][t]) for o in objectives
              if (t := test_name(o.name, chosen["metrics"])) is not None}
    mine = losses(on_test(chosen, objectives), objectives)
    beaten_by = [r["number"] for r in front(rows, objectives, noise=False)
                 if r["number"] != chosen["number"] and dominates(losses(on_test(r, objectives), objectives), mine)]
    return {"trial": chosen["number"], "values": values, "gap": {k: t - v for k, (v, t) in values.items()},
            "dominated_on_test_by": beaten_by}


def counts(rows: Sequence[dict]) -> dict[str, int]:
    """Trials by outcome; ``failed`` are the configs' own failures, ``interrupted`` the attempts a dying
    search or worker cut short (their configs were queued again and re-run)."""
    interrupted = sum(bool(r.get("interrupted")) for r in rows)
    out = {state.lower(): sum(r["state"] == state for r in rows) for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    degenerate = sum(bool(r.get("degenerate")) and r["state"] == "COMPLETE" for r in rows)
    return {"complete": out["complete"], "degenerate": degenerate, "pruned": out["pruned"],
            "failed": out["fail"] - interrupted, "interrupted": interrupted, "running": out["running"]}


def counts_line(rows: Sequence[dict]) -> str:
    """``12 complete (1 of them degenerate), 2 pruned, 1 failed, 3 interrupted (re-run)`` (zero counts left out)."""
    found = counts(rows)
    head = f"{found['complete']} complete" + (f" ({found['degenerate']} of them degenerate)" if found["degenerate"] else "")
    parts = [head] + [f"{n} {name}" for name, n in found.items() if n and name not in ("complete", "degenerate")]
    return ", ".join(parts).replace(" interrupted", " interrupted (re-run)")
