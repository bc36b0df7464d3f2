"""The trial function: a pure function of (task, config, fidelity) -> metrics. No Optuna, no Ray."""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from autotradeoff.errors import TrialFailed
from autotradeoff.tasks import get_task

__all__ = ["run_trial", "pick_device"]


def pick_device(gpu_share: float = 1.0) -> str:
    """CUDA when this process was given a GPU (Ray sets CUDA_VISIBLE_DEVICES per trial), else CPU."""
    return "cuda" if gpu_share > 0 and torch.cuda.is_available() else "cpu"


def run_trial(task_name: str, config: dict[str, Any], fidelity: dict[str, Any] | None = None,
              *, device: str | None = None) -> dict[str, float]:
    """Validate ``config``, run the task once, and return its metrics (all finite) plus wall time."""
    task = get_task(task_name)
    config = task.fill_config(config)
    fidelity = task.fill_fidelity(fidelity)
    torch.set_num_threads(int(fidelity.get("threads", 1)))
    device = device or pick_device(float(fidelity.get("gpu_share", 0.0)))
    start = time.perf_counter()
    metrics = task.run(config, fidelity, device=device)
    missing = set(task.metrics) - set(metrics)
    if missing:
        raise TrialFailed(f"task {task.name} returned no {sorted(missing)[0]!r}")
    bad = {k: v for k, v in metrics.items() if not math.isfinite(float(v))}
    if bad:
        raise TrialFailed(f"non-finite metric {next(iter(bad))}={next(iter(bad.values()))}")
    return {**{k: float(v) for k, v in metrics.items()}, "trial_wall_s": time.perf_counter() - start}
