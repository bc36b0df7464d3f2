"""Scoring searches on a table: normalised objectives, the front kept incrementally (so a curve of 200 trials
is cheap) and its hypervolume by ``autotradeoff.front.pareto.hypervolume``, regret against the table's true
front, the statistics the report states (median, IQR, one-sided Mann-Whitney) and small SVG plots (no browser
needed). Used by ``search_efficiency.py``."""

from __future__ import annotations

import bisect
import math
import random
import statistics
from collections.abc import Sequence

from autotradeoff.front.pareto import hypervolume


class Scale:
    """Losses (1 - normalised accuracy, normalised log latency) in [0, 1] between the table's best value of
    each objective (0) and a reference point fixed before any search: the table's median of each (1). A
    point counts only where it beats a median configuration on both objectives."""

    def __init__(self, accuracies: Sequence[float], latencies: Sequence[float]) -> None:
        logs = [math.log(x) for x in latencies]
        self.best_acc, self.ref_acc = max(accuracies), statistics.median(accuracies)
        self.best_log, self.ref_log = min(logs), statistics.median(logs)
        front = Front2D()  # the table's true front first: autotradeoff's exact hypervolume is for small fronts
        for a, lat in zip(accuracies, latencies):
            front.add(self.loss(a, lat))
        self.true_hv = front.volume

    def loss(self, accuracy: float, latency: float) -> tuple[float, float]:
        return ((self.best_acc - accuracy) / (self.best_acc - self.ref_acc),
                (math.log(latency) - self.best_log) / (self.ref_log - self.best_log))

    def describe(self) -> str:
        return (f"accuracy {self.best_acc:.4f} (0) to {self.ref_acc:.4f} (1, the table's median); latency "
                f"{math.exp(self.best_log):.4g} ms (0) to {math.exp(self.ref_log):.4g} ms (1, the median), on a log scale")


def hypervolume_2d(points: Sequence[Sequence[float]], reference: Sequence[float] = (1.0, 1.0)) -> float:
    """Exact hypervolume of 2-D loss points up to ``reference`` (sort and sweep, O(n log n))."""
    volume, lowest = 0.0, reference[1]
    for a, b in sorted((p[0], p[1]) for p in points if p[0] < reference[0] and p[1] < reference[1]):
        if b < lowest:
            volume += (reference[0] - a) * (lowest - b)
            lowest = b
    return volume


class Front2D:
    """A 2-D front kept sorted (first loss ascending, second descending) with its hypervolume, updated in
    O(front) per point: a 200-trial curve costs microseconds per trial."""

    def __init__(self, reference: Sequence[float] = (1.0, 1.0)) -> None:
        self.ref, self.points = tuple(reference), []

    def add(self, point: Sequence[float]) -> None:
        a, b = point
        if a >= self.ref[0] or b >= self.ref[1]:
            return
        i = bisect.bisect_left(self.points, (a, b))
        if i > 0 and self.points[i - 1][1] <= b or i < len(self.points) and self.points[i] == (a, b):
            return  # dominated (or already there)
        j = i
        while j < len(self.points) and self.points[j][1] >= b:
            j += 1
        self.points[i:j] = [(a, b)]

    @property
    def volume(self) -> float:
        return hypervolume(self.points, self.ref)  # autotradeoff.front.pareto's, the one the report uses


def curve(losses: Sequence[Sequence[float] | None], scale: Scale) -> list[float]:
    """Regret (the true front's hypervolume minus the found one) after each trial; None: a trial with no point."""
    front, out = Front2D(), []
    for loss in losses:
        if loss is not None:
            front.add(loss)
        out.append(scale.true_hv - front.volume)
    return out


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], statistics.median(values), q[2]


def less(x: Sequence[float], y: Sequence[float]) -> float:
    """One-sided Mann-Whitney U p-value that ``x`` tends to be smaller than ``y``."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(list(x), list(y), alternative="less").pvalue)


def median_ratio_interval(x: Sequence[float], y: Sequence[float], n: int = 4000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of median(x) / median(y), seeds resampled independently for each method."""
    rng = random.Random(seed)
    ratios = sorted(statistics.median(rng.choices(x, k=len(x))) / statistics.median(rng.choices(y, k=len(y)))
                    for _ in range(n))
    return ratios[int(0.025 * n)], ratios[int(0.975 * n) - 1]


def reached(values: Sequence[float], target: float) -> float:
    """The first trial count (1-based) at which a regret curve is at or below ``target`` (inf: never)."""
    return next((i + 1 for i, v in enumerate(values) if v <= target + 1e-12), math.inf)


COLOURS = ["#888888", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#d62728", "#e377c2", "#8c564b", "#17becf"]


def plot_svg(title: str, series: dict[str, list[tuple[float, float, float]]], xs: Sequence[float], path, *,
             xlabel: str = "trials", ylabel: str = "hypervolume regret (median, IQR band)", log_y: bool = True) -> None:
    """Median lines with interquartile bands, one per method, as a small SVG."""
    width, height, pad = 680, 380, 64
    lows = [q[0] for s in series.values() for q in s if q[0] > 0] or [1e-3]
    highs = [q[2] for s in series.values() for q in s] or [1.0]
    lo, hi = (math.log10(min(lows)), math.log10(max(highs))) if log_y else (0.0, max(highs))
    hi = hi if hi > lo else lo + 1
    fy = (lambda v: math.log10(max(v, 10 ** lo))) if log_y else (lambda v: v)
    x = lambda v: pad + (v - xs[0]) / ((xs[-1] - xs[0]) or 1) * (width - 2 * pad)  # noqa: E731
    y = lambda v: height - pad - (fy(v) - lo) / (hi - lo) * (height - 2 * pad)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="{width / 2}" y="18" text-anchor="middle">{title}</text>',
             f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">{xlabel}</text>',
             f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" text-anchor="middle">{ylabel}</text>',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>']
    for v in (xs[0], (xs[0] + xs[-1]) / 2, xs[-1]):
        parts.append(f'<text x="{x(v):.1f}" y="{height - pad + 16}" text-anchor="middle">{v:.4g}</text>')
    for t in ([10 ** e for e in range(math.floor(lo), math.ceil(hi) + 1)] if log_y else [0, hi / 2, hi]):
        if (fy(t) if log_y else t) >= lo - 1e-9 and (fy(t) if log_y else t) <= hi + 1e-9:
            parts.append(f'<text x="{pad - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:.3g}</text>')
    for i, (name, qs) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        band = [f"{x(v):.1f},{y(q[0]):.1f}" for v, q in zip(xs, qs)] + [f"{x(v):.1f},{y(q[2]):.1f}" for v, q in reversed(list(zip(xs, qs)))]
        parts.append(f'<polygon points="{" ".join(band)}" fill="{colour}" fill-opacity="0.12" stroke="none"/>')
        line = " ".join(f"{x(v):.1f},{y(q[1]):.1f}" for v, q in zip(xs, qs))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{line}"/>')
        parts.append(f'<text x="{width - pad + 4 - 120}" y="{pad + 14 * i}" fill="{colour}">{name}</text>')
    path.write_text("\n".join([*parts, "</svg>"]))
