"""The trial function: a pure function of (task, config, fidelity) -> metrics. No Optuna, no Ray."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from autotradeoff.errors import TrialFailed
from autotradeoff.space import Constraint
from autotradeoff.stopping import REJECTED, STOPPED, TrialStopped, reporting
from autotradeoff.tasks import get_task

__all__ = ["run_trial", "pick_device"]

Decide = Callable[[int, float, float], bool]


def pick_device(gpu_share: float = 1.0) -> str:
    """CUDA when this process was given a GPU (Ray sets CUDA_VISIBLE_DEVICES per trial), else CPU."""
    return "cuda" if gpu_share > 0 and torch.cuda.is_available() else "cpu"


def run_trial(task_name: str, config: dict[str, Any], fidelity: dict[str, Any] | None = None,
              *, device: str | None = None, constraints: Sequence[Constraint] = (),
              judge: Callable[[dict[str, float]], Decide] | None = None) -> dict[str, Any]:
    """Validate ``config``, run the task once, and return its metrics (all finite) plus wall time.

    With ``constraints`` or ``judge`` the costs known before training come first (``Task.precheck``):
    a config breaking a constraint returns them with ``REJECTED`` (its reason) without training.
    ``judge(known costs)`` gives the early-stopping decision for the task's checkpoints; a trial it
    stops returns the known costs with ``STOPPED``.
    """
    task = get_task(task_name)
    config = task.fill_config(config)
    fidelity = task.fill_fidelity(fidelity)
    torch.set_num_threads(int(fidelity.get("threads", 1)))
    device = device or pick_device(float(fidelity.get("gpu_share", 0.0)))
    start = time.perf_counter()
    known = task.precheck(config, fidelity, device=device) if constraints or (judge and task.checkpoints) else {}
    for constraint in constraints:
        if reason := constraint.violation(known):
            return {**known, REJECTED: f"rejected before training: {reason}", "trial_wall_s": time.perf_counter() - start}
    try:
        with reporting(judge(known)) if judge else contextlib.nullcontext():
            metrics = task.run(config, fidelity, device=device)
    except TrialStopped as stopped:
        return {**known, STOPPED: str(stopped), "trial_wall_s": time.perf_counter() - start}
    missing = set(task.metrics) - set(metrics)
    if missing:
        raise TrialFailed(f"task {task.name} returned no {sorted(missing)[0]!r}")
    bad = {k: v for k, v in metrics.items() if not math.isfinite(float(v))}
    if bad:
        raise TrialFailed(f"non-finite metric {next(iter(bad))}={next(iter(bad.values()))}")
    return {**{k: float(v) for k, v in metrics.items()}, "trial_wall_s": time.perf_counter() - start}
