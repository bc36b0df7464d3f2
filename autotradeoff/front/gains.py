"""What the front gains over the baseline: per front point and objective, the value beside the baseline's,
the difference (quality) or the factor (cost), on validation and, where stored, on test. Plain data for the
report, ``front`` and ``export``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autotradeoff.front import pareto
from autotradeoff.knobs import Objective

__all__ = ["baseline_of", "compare", "gains", "headline", "factor_text"]


def baseline_of(rows: Sequence[dict]) -> dict | None:
    """The task's baseline trial (the all-default point a search starts with), when it completed."""
    return next((r for r in rows if r.get("reference") == "baseline" and r["state"] == "COMPLETE"), None)


def compare(row: dict, base: dict, objective: Objective) -> dict[str, Any]:
    """One objective of ``row`` against the baseline: values, the difference (max objectives, e.g. accuracy
    points) or the factor by which it is lower (min objectives: 1.6 = 1.6x cheaper), validation and test."""
    out: dict[str, Any] = {"objective": objective.name, "direction": objective.direction}
    names = {"val": objective.name, "test": pareto.test_name(objective.name, row["metrics"])}
    for split, name in names.items():
        if name is None or name not in base["metrics"]:
            continue
        mine, theirs = row["metrics"][name], base["metrics"][name]
        out[split] = mine
        out[f"{split}_baseline"] = theirs
        if objective.direction == "max":
            out[f"{split}_change"] = mine - theirs
        else:
            out[f"{split}_change"] = theirs / mine if mine > 0 else float("inf")
    return out


def gains(rows: Sequence[dict], objectives: Sequence[Objective]) -> dict[str, Any]:
    """The baseline, and every front point compared with it objective by objective, with whether it
    dominates the baseline on validation."""
    base = baseline_of(rows)
    best = pareto.front(rows, objectives)
    if base is None:
        return {"baseline": None, "points": []}
    base_losses = pareto.losses(base, objectives)
    points = [{"row": r, "dominates_baseline": pareto.dominates(pareto.losses(r, objectives), base_losses),
               "objectives": [compare(r, base, o) for o in objectives]} for r in best]
    return {"baseline": base, "points": points}


def factor_text(factor: float, name: str = "") -> str:
    """``1.6x lower latency_ms`` for a saving, ``1.35x higher latency_ms`` for a cost that grew."""
    if abs(factor - 1) < 0.005:
        return f"the same {name}".rstrip()
    text = f"{factor:.3g}x lower" if factor > 1 else f"{1 / factor:.3g}x higher"
    return f"{text} {name}".rstrip()


def headline(point: dict, objectives: Sequence[Objective]) -> str:
    """One sentence: ``trial 24: 1.6x lower latency_ms, -0.2 points val_accuracy (test -0.3)``."""
    parts = []
    for o, c in zip(objectives, point["objectives"]):
        if "val_change" not in c:
            continue
        if o.direction == "max":
            scale, unit = (100, " points") if abs(c["val_baseline"]) <= 1 else (1, "")
            text = f"{scale * c['val_change']:+.3g}{unit} {o.name}"
            text += f" (test {scale * c['test_change']:+.3g})" if "test_change" in c else ""
        else:
            text = factor_text(c["val_change"], o.name)
            text += f" (test {factor_text(c['test_change'])})" if "test_change" in c else ""
        parts.append(text)
    return f"trial {point['row']['number']}: " + ", ".join(parts)
