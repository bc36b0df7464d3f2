"""Wall-clock latency as a median with its spread, after warm-up, with a fixed thread count, each call
interleaved with a fixed reference kernel so that the machine's own speed swings cancel out.

Assumptions, stated so results can be compared: the callable is run synchronously (CUDA work is
synchronised before each clock read), with autograd off; the caller puts the model in eval mode
(``measure_latency`` checks that for modules it is given); thread count is fixed for the
measurement and restored afterwards; inside a search's trial the whole measurement (warm-up included)
runs alone on the host (``cost.alone``).

Why a reference: on a shared or virtual CPU the same call's time swings by 20% and more over seconds
(frequency, neighbours), so medians taken at different moments disagree far more than the models do.
Each timed call is followed by the reference kernel (three 256 x 256 float32 matmuls, ~1 ms on one core)
twice: the first run is untimed (it pays for the caches the timed call evicted), the second is timed
with caches as hot as in a tight loop. The latency is the median of call / hot-reference ratios times
the host's reference time in a tight loop, calibrated once per host, thread count and software (a file
beside the timing locks), so every trial on the host shares the scale. Measured on this project's 2-core
VM over 10 windows with other work between them (benchmarks/timing_noise.py has the full protocol):
the window-to-window spread of a Cora GCN fell from a MAD of 8.2% (raw median) to 1.2%, of MiniLM on one
sentence from 8.1% to 3.5%, at 0.96x and 1.00x of the raw median (a ratio to the reference run cold
behind the timed call read 0.84x and 0.85x instead). A measurement runs at least ``repeats`` calls and
at least ``min_seconds`` (at most ``10 x repeats`` calls). On CUDA the raw median is reported.
``AUTOTRADEOFF_TIMING_REFERENCE=0`` restores the plain protocol (the raw median of exactly ``repeats``
calls), to measure what the reference buys.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch

from autotradeoff.cost.alone import alone, lock_dir

__all__ = ["LatencyStats", "measure_latency", "reference_ms"]

_REFERENCE = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))


@dataclass(frozen=True)
class LatencyStats:
    median_ms: float
    iqr_ms: float  # 75th minus 25th percentile
    min_ms: float
    repeats: int
    warmup: int
    threads: int
    raw_median_ms: float = 0.0  # the calls' own median, before the reference scaling
    reference_ms: float = 0.0  # the host's reference time the ratios were scaled by (0: not scaled)

    def as_metrics(self, prefix: str = "latency") -> dict[str, float]:
        return {f"{prefix}_ms": self.median_ms, f"{prefix}_iqr_ms": self.iqr_ms}


def _reference_call() -> None:
    _REFERENCE @ _REFERENCE @ _REFERENCE


def _quartiles(samples: list[float]) -> tuple[float, float, float]:
    quartiles = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else samples * 3
    return quartiles[0], statistics.median(samples), quartiles[2]


@cache
def reference_ms(threads: int) -> float:
    """The reference kernel's median time on this host at ``threads`` threads in a tight loop: read from
    the host's file, or measured (500 calls) and written there for every later process."""
    key = f"{platform.node()}-{platform.processor() or platform.machine()}-{torch.__version__}-t{threads}"
    path = lock_dir() / f"reference-hot-{''.join(c if c.isalnum() else '_' for c in key)}.json"
    if path.is_file():
        return float(json.loads(path.read_text())["ms"])
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            samples = []
            for _ in range(500):
                start = time.perf_counter()
                _reference_call()
                samples.append((time.perf_counter() - start) * 1000.0)
    finally:
        torch.set_num_threads(previous)
    value = statistics.median(samples[50:])
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"ms": value, "threads": threads, "key": key}))
    os.replace(tmp, path)
    return value


def _on_cuda(model: torch.nn.Module | None) -> bool:
    return model is not None and any(p.is_cuda for p in model.parameters())


def measure_latency(
    fn: Callable[[], object],
    *,
    warmup: int = 3,
    repeats: int = 20,
    threads: int | None = None,
    model: torch.nn.Module | None = None,
    min_seconds: float = 1.0,
) -> LatencyStats:
    """Time ``fn()`` at least ``repeats`` times (and ``min_seconds``) after ``warmup`` untimed calls; return
    median and IQR in ms, scaled by the interleaved reference (see the module docstring)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0; got repeats={repeats}, warmup={warmup}")
    if model is not None and model.training:
        raise ValueError("measure_latency: the model is in training mode; call model.eval() first")
    previous = torch.get_num_threads()
    threads = threads or previous
    torch.set_num_threads(threads)
    plain = os.environ.get("AUTOTRADEOFF_TIMING_REFERENCE", "1") == "0"
    scaled, min_seconds = not plain and not _on_cuda(model), 0.0 if plain else min_seconds
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    samples, ratios = [], []
    try:
        with alone(), torch.inference_mode():
            scale = reference_ms(threads) if scaled else 0.0
            for _ in range(warmup):
                fn()
            sync()
            started = time.perf_counter()
            while len(samples) < repeats or (time.perf_counter() - started < min_seconds and len(samples) < 10 * repeats):
                start = time.perf_counter()
                fn()
                sync()
                middle = time.perf_counter()
                samples.append((middle - start) * 1000.0)
                if scaled:
                    _reference_call()  # untimed: refills the caches the timed call used
                    hot = time.perf_counter()
                    _reference_call()
                    ratios.append((middle - start) / (time.perf_counter() - hot))
    finally:
        torch.set_num_threads(previous)
    low, middle, high = _quartiles([r * scale for r in ratios] if scaled else samples)
    return LatencyStats(median_ms=middle, iqr_ms=high - low, min_ms=min(samples), repeats=len(samples), warmup=warmup,
                        threads=threads, raw_median_ms=statistics.median(samples), reference_ms=scale)
