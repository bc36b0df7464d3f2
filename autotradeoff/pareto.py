"""Pareto data, computed on plain rows: the front, hypervolume (and its history), and pick rules.

Nothing here draws: ``report`` turns these results into plotly figures. All objectives are turned
into minimisation internally (a "max" objective is negated).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from autotradeoff.errors import UsageError
from autotradeoff.space import Objective

__all__ = ["rows_of", "front", "hypervolume", "reference_point", "hypervolume_history", "pick", "objectives_of",
           "default_rule", "level_shares", "EXIT_PREFIX", "spread_of", "CONSTRAINTS_ATTR",
           "REMEASURED_PREFIX"]

EXIT_PREFIX = "exit_share_"  # per-level metrics of variable-effort inference: exit_share_<px>px


def objectives_of(study: optuna.Study) -> tuple[Objective, ...]:
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    return tuple(Objective(n, "max" if d == optuna.study.StudyDirection.MAXIMIZE else "min")
                 for n, d in zip(names, study.directions))


CONSTRAINTS_ATTR = "autotradeoff:constraints"  # study attribute: the last search's constraints ("latency_ms <= 5")
REMEASURED_PREFIX = "remeasured:"  # study attribute per trial number: its timed costs measured again, alone


def spread_of(metric: str) -> str:
    """The name of a timed metric's spread: ``latency_ms`` -> ``latency_iqr_ms``."""
    return f"{metric[:-3]}_iqr_ms" if metric.endswith("_ms") and not metric.endswith("_iqr_ms") else ""


def rows_of(study: optuna.Study) -> list[dict[str, Any]]:
    """One plain dict per trial: number, state, config, metrics, values, fail_reason (or why it was
    rejected or stopped early), violations (constraints its metrics break).

    Metrics re-measured in the exclusive pass after a search (``remeasure``) replace the ones taken
    while other trials ran; ``values`` stay what Optuna stored.
    """
    from autotradeoff.space import parse_constraints

    rows = []
    skip = {"config", "charge", "fail_reason", "runner_trial_id", "autotradeoff:owner"}
    study_attrs = study.user_attrs
    constraints = parse_constraints(study_attrs.get(CONSTRAINTS_ATTR) or [], _Any(), "stored constraints")
    for trial in study.get_trials(deepcopy=False):
        metrics = {k: v for k, v in trial.user_attrs.items() if k not in skip and not k.startswith("rung_")
                   and isinstance(v, (int, float)) and not isinstance(v, bool)}
        again = study_attrs.get(f"{REMEASURED_PREFIX}{trial.number}") or {}
        metrics.update({k: v for k, v in again.items() if isinstance(v, (int, float))})
        reason = trial.user_attrs.get("fail_reason") or trial.user_attrs.get("rejected") or trial.user_attrs.get("stopped")
        rows.append({"number": trial.number, "trial_id": trial._trial_id, "state": trial.state.name,
                     "config": trial.user_attrs.get("config", dict(trial.params)),
                     "metrics": metrics, "values": list(trial.values) if trial.values else None,
                     "fail_reason": reason, "charge": trial.user_attrs.get("charge"), "remeasured": bool(again),
                     "violations": [v for c in constraints if (v := c.violation(metrics))]})
    return rows


class _Any(dict):
    """Every metric name is allowed (stored constraints were checked when the search started)."""

    def __contains__(self, key: object) -> bool:
        return True


def _losses(row: dict, objectives: Sequence[Objective]) -> tuple[float, ...]:
    return tuple(-row["metrics"][o.name] if o.direction == "max" else row["metrics"][o.name] for o in objectives)


def _complete(rows: Sequence[dict], objectives: Sequence[Objective]) -> list[dict]:
    """Complete trials with every objective that meet the constraints."""
    return [r for r in rows if r["state"] == TrialState.COMPLETE.name and not r.get("violations")
            and all(o.name in r["metrics"] for o in objectives)]


def _dominates(a: Sequence[float], b: Sequence[float], tolerance: Sequence[float] | None = None) -> bool:
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
    dropped for being a hair slower than another within the clock's noise."""
    done = _complete(rows, objectives)
    losses = [_losses(r, objectives) for r in done]
    keep = []
    for r, mine in zip(done, losses):
        if not any(_dominates(other, mine, _tolerance(o, r, objectives) if noise else None)
                   for o, other in zip(done, losses) if o is not r):
            keep.append(r)
    return sorted(keep, key=lambda r: _losses(r, objectives))


def reference_point(rows: Sequence[dict], objectives: Sequence[Objective]) -> tuple[float, ...]:
    """Per objective (as loss): the worst complete value plus 10% of the observed range (or of |worst|)."""
    losses = [_losses(r, objectives) for r in _complete(rows, objectives)]
    if not losses:
        return tuple(0.0 for _ in objectives)
    ref = []
    for column in zip(*losses):
        worst, best = max(column), min(column)
        ref.append(worst + 0.1 * ((worst - best) or abs(worst) or 1.0))
    return tuple(ref)


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Exact hypervolume dominated by loss ``points`` up to ``reference`` (slicing; fine for small fronts)."""
    pts = [tuple(p) for p in points if all(x < r for x, r in zip(p, reference))]
    pts = [p for p in pts if not any(_dominates(q, p) for q in pts)]
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
    """(trial number, hypervolume of the complete trials up to it) in trial order."""
    reference = reference or reference_point(rows, objectives)
    seen, history = [], []
    for row in sorted(_complete(rows, objectives), key=lambda r: r["number"]):
        seen.append(_losses(row, objectives))
        history.append((row["number"], hypervolume(seen, reference)))
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


def level_shares(row: dict, prefix: str = EXIT_PREFIX) -> list[tuple[str, float]]:
    """(level, share) from a row's ``<prefix><level>`` metrics, by the number in the level (8px before 16px)."""
    found = [(name[len(prefix):], value) for name, value in row["metrics"].items() if name.startswith(prefix)]
    return sorted(found, key=lambda item: (int(re.sub(r"\D", "", item[0]) or 0), item[0]))


def pick(rows: Sequence[dict], rule: str) -> dict:
    """The complete trial a rule selects, e.g. ``accuracy>=max-0.01, min latency_ms``."""
    clauses = [c for c in rule.split(",") if c.strip()]
    if not clauses or not _SELECT.match(clauses[-1]):
        raise UsageError(f"bad pick rule {rule!r}; {PICK_HELP}")
    done = [r for r in rows if r["state"] == TrialState.COMPLETE.name and not r.get("violations")]
    if not done:
        raise UsageError("the study has no complete trial (meeting its constraints) to pick from")
    metrics = sorted({k for r in done for k in r["metrics"]})

    def column(name: str) -> list[float]:
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
