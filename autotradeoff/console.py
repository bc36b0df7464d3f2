"""Terminal output: plain tables and the search progress bar (tqdm, on stderr)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from autotradeoff.driver import Progress
from autotradeoff.space import Objective

__all__ = ["table", "front_table", "ProgressBar"]


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
    """The Pareto front: trial, objectives, a few cost metrics, then the knobs of each trial."""
    names = [o.name for o in objectives] + [m for m in extra if m not in {o.name for o in objectives}]
    names = [n for n in names if any(n in r["metrics"] for r in front)]
    rows = [[r["number"], *(r["metrics"].get(n, "") for n in names),
             " ".join(f"{k}={_cell(v)}" for k, v in r["config"].items())] for r in front]
    return table(["trial", *names, "config"], rows)


class ProgressBar:
    """Trials done, budget spent/left and the current front size, updated after every trial."""

    def __init__(self, total: float, unit: str, *, enabled: bool = True, initial: float = 0.0):
        from tqdm import tqdm

        scale = 60.0 if unit == "s" else 1.0
        self._scale = scale
        self._bar = tqdm(total=round(total / scale, 4), initial=round(initial / scale, 4), file=sys.stderr,
                         unit="min" if unit == "s" else unit, disable=not enabled, dynamic_ncols=True,
                         bar_format="{l_bar}{bar}| {n:.3g}/{total:.3g} {unit} [{elapsed}] {postfix}")

    def __call__(self, progress: Progress) -> None:
        self._bar.n = round(min(progress.spent, progress.budget.amount) / self._scale, 4)
        self._bar.set_postfix_str(f"done={progress.complete} failed={progress.failed} running={progress.running} "
                                  f"front={progress.front_size} left={progress.budget.fmt(progress.left)}")

    def close(self) -> None:
        self._bar.close()
