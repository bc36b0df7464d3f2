"""Peak memory of a block of work, honest on both devices.

CUDA: ``torch.cuda.max_memory_allocated`` after a reset (tensors only, exact). CPU: the process's
resident set size sampled every ``interval_s`` by a background thread, reported as the peak above
the RSS at entry (so memory held before, e.g. by a cached dataset, is not charged). Sampling can
miss a spike shorter than the interval; allocator caching means freed memory may not be returned,
so repeated blocks in one process can read lower than a fresh process would.
"""

from __future__ import annotations

import threading

import psutil
import torch

__all__ = ["PeakMemory"]


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.mb`` is the peak extra memory in MiB."""

    def __init__(self, device: str = "cpu", *, interval_s: float = 0.005):
        self.device, self.interval_s, self.mb = device, interval_s, 0.0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
            return self
        self._process = psutil.Process()
        self._start = self._peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def __exit__(self, *exc) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, self._process.memory_info().rss)
        self.mb = max(0.0, (peak - self._start) / 2**20)
