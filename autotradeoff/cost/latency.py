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

An anchor (``Anchor``: the task's baseline deployment on the same input, given by the task) takes the
reference kernel's place where the caller has one: each timed call is followed by one timed anchor call,
and the latency is the median of call / anchor ratios times the anchor's own time on this host in a
tight loop (calibrated once per host, thread count, software and anchor workload, in the same file
folder). Why: the compute-bound, cache-resident reference kernel does not see what moves a memory-bound
model on a VM (the same Cora GCN read 9.3 ms and 7.6 ms twenty minutes apart on a quiet machine, the
reference unmoved: reports/benchmarks/timing_noise.md); a workload of the same kind as the measured one
moves with it. ``AUTOTRADEOFF_TIMING_ANCHOR=0`` uses the reference kernel even where an anchor is given.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from autotradeoff.cost.alone import alone, lock_dir

__all__ = ["Anchor", "LatencyStats", "anchor_ms", "measure_latency", "measure_parts", "reference_ms"]

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
    reference_ms: float = 0.0  # the host's reference (or anchor) time the ratios were scaled by (0: not scaled)
    anchor: str = ""  # the anchor's key where the ratios are to an anchor, not to the reference kernel

    def as_metrics(self, prefix: str = "latency") -> dict[str, float]:
        return {f"{prefix}_ms": self.median_ms, f"{prefix}_iqr_ms": self.iqr_ms}


def _reference_call() -> None:
    _REFERENCE @ _REFERENCE @ _REFERENCE


def _quartiles(samples: list[float]) -> tuple[float, float, float]:
    quartiles = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else samples * 3
    return quartiles[0], statistics.median(samples), quartiles[2]


@dataclass(frozen=True)
class Anchor:
    """A fixed workload timed beside each measured call (see the module docstring). ``key`` names it for the
    host's calibration file (task, baseline model, input shape, device): two anchors with one key must do
    the same work. ``call`` runs it once."""

    key: str
    call: Callable[[], object]


_calibrated: dict[tuple[str, int], float] = {}


def _host_time(key: str, call: Callable[[], object], threads: int, *, warmup: int, calls: int,
               seconds: float = 0.0) -> float:
    """``call``'s median time on this host at ``threads`` threads in a tight loop (after ``warmup`` calls, at least
    ``calls`` calls and ``seconds``): read from the host's file, or measured once and written there for every
    later process. Measured inside ``alone()`` (a search's trials do not train meanwhile)."""
    if (key, threads) in _calibrated:
        return _calibrated[key, threads]
    host = f"{platform.node()}-{platform.processor() or platform.machine()}-{torch.__version__}-t{threads}"
    path = lock_dir() / f"{''.join(c if c.isalnum() else '_' for c in f'{key}-{host}')}.json"
    if path.is_file():
        value = float(json.loads(path.read_text())["ms"])
    else:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with alone(), torch.inference_mode():
                for _ in range(warmup):
                    call()
                samples, started = [], time.perf_counter()
                while len(samples) < calls or time.perf_counter() - started < seconds:
                    start = time.perf_counter()
                    call()
                    samples.append((time.perf_counter() - start) * 1000.0)
        finally:
            torch.set_num_threads(previous)
        value = statistics.median(samples)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"ms": value, "threads": threads, "key": key, "host": host, "calls": len(samples)}))
        os.replace(tmp, path)
    _calibrated[key, threads] = value
    return value


def reference_ms(threads: int) -> float:
    """The reference kernel's median time on this host at ``threads`` threads in a tight loop (500 calls)."""
    return _host_time("reference-hot", _reference_call, threads, warmup=50, calls=450)


def anchor_ms(anchor: Anchor, threads: int) -> float:
    """The anchor's median time on this host at ``threads`` threads in a tight loop (at least 30 calls and 2 s)."""
    return _host_time(f"anchor-{anchor.key}", anchor.call, threads, warmup=3, calls=30, seconds=2.0)


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
    anchor: Anchor | None = None,
) -> LatencyStats:
    """Time ``fn()`` at least ``repeats`` times (and ``min_seconds``) after ``warmup`` untimed calls; return
    median and IQR in ms, scaled by the interleaved ``anchor`` or, without one, the reference kernel (see the
    module docstring)."""
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
    anchored = scaled and anchor is not None and os.environ.get("AUTOTRADEOFF_TIMING_ANCHOR", "1") != "0"
    samples, ratios = [], []
    try:
        scale = (anchor_ms(anchor, threads) if anchored else reference_ms(threads)) if scaled else 0.0
        with alone(), torch.inference_mode():
            for _ in range(warmup):
                fn()
                if anchored:
                    anchor.call()
            sync()
            started = time.perf_counter()
            while len(samples) < repeats or (time.perf_counter() - started < min_seconds and len(samples) < 10 * repeats):
                start = time.perf_counter()
                fn()
                sync()
                middle = time.perf_counter()
                samples.append((middle - start) * 1000.0)
                if anchored:  # the anchor right after the call: both in the same state of the machine
                    anchor.call()
                    ratios.append((middle - start) / (time.perf_counter() - middle))
                elif scaled:
                    _reference_call()  # untimed: refills the caches the timed call used
                    hot = time.perf_counter()
                    _reference_call()
                    ratios.append((middle - start) / (time.perf_counter() - hot))
    finally:
        torch.set_num_threads(previous)
    low, middle, high = _quartiles([r * scale for r in ratios] if scaled else samples)
    return LatencyStats(median_ms=middle, iqr_ms=high - low, min_ms=min(samples), repeats=len(samples), warmup=warmup,
                        threads=threads, raw_median_ms=statistics.median(samples), reference_ms=scale,
                        anchor=anchor.key if anchored else "")


def measure_parts(fn: Callable[[], object], parts: dict[object, tuple[torch.nn.Module, torch.nn.Module]], *,
                  warmup: int = 3, repeats: int = 30, threads: int | None = None) -> dict[object, float]:
    """The median ms each part of a model takes inside ``fn()`` (a call of the whole model): a part is the
    span from its first module's start to its last module's end (``(m, m)``: one module), read by forward hooks
    on ``repeats`` calls after ``warmup``, at ``threads`` threads, alone on the host, autograd off. Raw times,
    not scaled by a reference: the parts of one call are compared with each other, under the same machine state."""
    starts: dict[object, float] = {}
    samples: dict[object, list[float]] = {key: [] for key in parts}
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)

    def began(key: object) -> Callable[..., None]:
        return lambda *_: (sync(), starts.__setitem__(key, time.perf_counter()))[-1]

    def ended(key: object) -> Callable[..., None]:
        return lambda *_: (sync(), samples[key].append((time.perf_counter() - starts[key]) * 1000.0))[-1]

    hooks = [h for key, (first, last) in parts.items()
             for h in (first.register_forward_pre_hook(began(key)), last.register_forward_hook(ended(key)))]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        with alone(), torch.inference_mode():
            for _ in range(warmup + repeats):
                fn()
    finally:
        torch.set_num_threads(previous)
        for hook in hooks:
            hook.remove()
    return {key: statistics.median(times[warmup:]) for key, times in samples.items()}
