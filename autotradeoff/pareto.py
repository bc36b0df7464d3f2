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
           "default_rule", "level_shares", "EXIT_PREFIX"]

EXIT_PREFIX = "exit_share_"  # per-level metrics of variable-effort inference: exit_share_<px>px


def objectives_of(study: optuna.Study) -> tuple[Objective, ...]:
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    return tuple(Objective(n, "max" if d == optuna.study.StudyDirection.MAXIMIZE else "min")
                 for n, d in zip(names, study.directions))


def rows_of(study: optuna.Study) -> list[dict[str, Any]]:
    """One plain dict per trial: number, state, config, metrics, values, fail_reason."""
    rows = []
    skip = {"config", "charge", "fail_reason", "runner_trial_id", "autotradeoff:owner"}
    for trial in study.get_trials(deepcopy=False):
        metrics = {k: v for k, v in trial.user_attrs.items() if k not in skip and isinstance(v, (int, float))}
        rows.append({"number": trial.number, "state": trial.state.name,
                     "config": trial.user_attrs.get("config", dict(trial.params)),
                     "metrics": metrics, "values": list(trial.values) if trial.values else None,
                     "fail_reason": trial.user_attrs.get("fail_reason"),
                     "charge": trial.user_attrs.get("charge")})
    return rows


def _losses(row: dict, objectives: Sequence[Objective]) -> tuple[float, ...]:
    return tuple(-row["metrics"][o.name] if o.direction == "max" else row["metrics"][o.name] for o in objectives)


def _complete(rows: Sequence[dict], objectives: Sequence[Objective]) -> list[dict]:
    return [r for r in rows if r["state"] == TrialState.COMPLETE.name and all(o.name in r["metrics"] for o in objectives)]


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def front(rows: Sequence[dict], objectives: Sequence[Objective]) -> list[dict]:
    """Complete trials no other complete trial dominates, sorted by the first objective (best first)."""
    done = _complete(rows, objectives)
    losses = [_losses(r, objectives) for r in done]
    keep = [r for r, mine in zip(done, losses) if not any(_dominates(other, mine) for other in losses)]
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
    done = [r for r in rows if r["state"] == TrialState.COMPLETE.name]
    if not done:
        raise UsageError("the study has no complete trial to pick from")
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
