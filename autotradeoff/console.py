"""Terminal output: plain tables and the search progress bar (tqdm, on stderr)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from autotradeoff.engine.driver import Progress
from autotradeoff.front import gains, pareto
from autotradeoff.knobs import Objective

__all__ = ["table", "front_table", "gains_line", "honesty_line", "ProgressBar"]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.3e}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def front_table(front: Sequence[dict], objectives: Sequence[Objective], extra: Sequence[str] = ("flops", "params")) -> str:
    """The Pareto front: trial, each objective (validation) with its test counterpart beside it, a few cost
    metrics, then the knobs of each trial."""
    names = [o.name for o in objectives] + [m for m in extra if m not in {o.name for o in objectives}]
    names = [n for name in names for n in (name, pareto.test_candidate(name))]
    names = list(dict.fromkeys(n for n in names if any(n in r["metrics"] for r in front)))
    rows = [[r["number"], *(r["metrics"].get(n, "") for n in names),
             " ".join(f"{k}={_cell(v)}" for k, v in r["shown"].items())] for r in front]
    return table(["trial", *names, "config"], rows)


def gains_line(found: dict, objectives: Sequence[Objective], chosen: dict) -> str:
    """Against the baseline: what the chosen config gains (or why nothing can be said)."""
    point = next((p for p in found["points"] if p["row"]["number"] == chosen["number"]), None)
    if found["baseline"] is None or point is None:
        return "against the baseline: its trial has not completed"
    return f"against the baseline (trial {found['baseline']['number']}): " + gains.headline(point, objectives)


def honesty_line(report: dict) -> str:
    """One line: the pick's validation and test values, its gap, and whether it stays on the front on test."""
    values = ", ".join(f"{name} {val:.4g} (validation) vs {test:.4g} (test), gap {test - val:+.4g}"
                       for name, (val, test) in report["values"].items())
    where = ("stays on the front on test" if not report["dominated_on_test_by"] else
             f"FALLS OFF the front on test: dominated by trial(s) {', '.join(map(str, report['dominated_on_test_by']))}")
    return f"chosen trial {report['trial']}: {values or 'no test counterpart stored'}; {where}"


class ProgressBar:
    """Trials done, budget spent/left and the current front size, updated after every trial."""

    def __init__(self, total: float, unit: str, *, enabled: bool = True, initial: float = 0.0):
        from tqdm import tqdm

        scale = 60.0 if unit == "s" else 1.0
        self._scale = scale  # warnings reach stderr once, through the CLI's log handler
        self._bar = tqdm(total=round(total / scale, 4), initial=round(initial / scale, 4), file=sys.stderr,
                         unit="min" if unit == "s" else unit, disable=not enabled, dynamic_ncols=True,
                         bar_format="{l_bar}{bar}| {n:.3g}/{total:.3g} {unit} [{elapsed}] {postfix}")

    def __call__(self, progress: Progress) -> None:
        self._bar.n = round(min(progress.spent, progress.budget.amount) / self._scale, 4)
        interrupted = f" interrupted={progress.interrupted} (re-run)" if progress.interrupted else ""
        degenerate = f" degenerate={progress.degenerate}" if progress.degenerate else ""
        self._bar.set_postfix_str(f"done={progress.complete}{degenerate} failed={progress.failed}{interrupted} "
                                  f"running={progress.running} front={progress.front_size} left={progress.budget.fmt(progress.left)}")

    def close(self) -> None:
        self._bar.close()
