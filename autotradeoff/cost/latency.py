"""Wall-clock latency as a median with its spread, after warm-up, with a fixed thread count.

Assumptions, stated so results can be compared: the callable is run synchronously (CUDA work is
synchronised before each clock read), with autograd off; the caller puts the model in eval mode
(``measure_latency`` checks that for modules it is given); thread count is fixed for the
measurement and restored afterwards.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

__all__ = ["LatencyStats", "measure_latency"]


@dataclass(frozen=True)
class LatencyStats:
    median_ms: float
    iqr_ms: float  # 75th minus 25th percentile
    min_ms: float
    repeats: int
    warmup: int
    threads: int

    def as_metrics(self, prefix: str = "latency") -> dict[str, float]:
        return {f"{prefix}_ms": self.median_ms, f"{prefix}_iqr_ms": self.iqr_ms}

    def as_dict(self) -> dict:
        return asdict(self)


def measure_latency(
    fn: Callable[[], object],
    *,
    warmup: int = 3,
    repeats: int = 20,
    threads: int | None = None,
    model: torch.nn.Module | None = None,
) -> LatencyStats:
    """Time ``fn()`` ``repeats`` times after ``warmup`` untimed calls; return median and IQR in ms."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0; got repeats={repeats}, warmup={warmup}")
    if model is not None and model.training:
        raise ValueError("measure_latency: the model is in training mode; call model.eval() first")
    previous = torch.get_num_threads()
    threads = threads or previous
    torch.set_num_threads(threads)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    samples = []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                fn()
            sync()
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                sync()
                samples.append((time.perf_counter() - start) * 1000.0)
    finally:
        torch.set_num_threads(previous)
    quartiles = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else samples * 3
    return LatencyStats(median_ms=statistics.median(samples), iqr_ms=quartiles[2] - quartiles[0],
                        min_ms=min(samples), repeats=repeats, warmup=warmup, threads=threads)
