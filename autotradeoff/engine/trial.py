"""The trial function: a pure function of (task, config, fidelity) -> metrics. No Optuna, no Ray."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from autotradeoff.cost import alone
from autotradeoff.engine.stopping import REJECTED, SHARE, STOPPED
from autotradeoff.errors import TrialFailed, TrialStopped
from autotradeoff.knobs import Constraint
from autotradeoff.progress import reporting
from autotradeoff.tasks import Task, pick_device, task_for

__all__ = ["run_trial"]

Decide = Callable[[int, float, float], bool]


def run_trial(task_name: str, config: dict[str, Any], fidelity: dict[str, Any] | None = None,
              *, device: str | None = None, constraints: Sequence[Constraint] = (),
              judge: Callable[[dict[str, float]], Decide] | None = None) -> dict[str, Any]:
    """Validate ``config``, run the task once, and return its metrics (all finite) plus wall time.

    With ``constraints`` or ``judge`` the costs known before training come first (``Task.precheck``):
    a config breaking a constraint returns them with ``REJECTED`` (its reason) without training.
    ``judge(known costs)`` gives the early-stopping decision for the task's checkpoints; a trial it
    stops returns the known costs with ``STOPPED`` and the share of its work it did (``SHARE``). A task
    that looks its results up in a table (``Task.simulated``) measures nothing: it skips the host's
    timing locks.
    """
    task = task_for(task_name, fidelity)
    config = task.fill_config(config)
    fidelity = task.fill_fidelity(fidelity)
    torch.set_num_threads(int(fidelity.get("threads", 1)))
    device = device or pick_device(float(fidelity.get("gpu_share", 0.0)))
    start = time.perf_counter()
    # this trial's timing phases run alone on the host; its work yields to others'
    with alone.working() if not task.simulated else contextlib.nullcontext():
        known = task.precheck(config, fidelity, device=device) if constraints or (judge and task.checkpoints) else {}
        for constraint in constraints:
            if reason := constraint.violation(known):
                return {**known, REJECTED: f"rejected before training: {reason}", "trial_wall_s": time.perf_counter() - start}
        try:
            decide = judge(known) if judge else None
            with reporting(decide, scale=getattr(decide, "scale", 1.0)) if decide else contextlib.nullcontext():
                metrics = task.run(config, fidelity, device=device)
        except TrialStopped as stopped:
            return {**known, STOPPED: str(stopped), SHARE: stopped.share, "trial_wall_s": time.perf_counter() - start}
    return {**_checked(task, metrics), "trial_wall_s": time.perf_counter() - start}


def _checked(task: Task, metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics as floats; TrialFailed when one the task declares is missing or one is not finite."""
    missing = set(task.metrics) - set(metrics)
    if missing:
        raise TrialFailed(f"task {task.name} returned no {sorted(missing)[0]!r}")
    bad = {k: v for k, v in metrics.items() if not math.isfinite(float(v))}
    if bad:
        raise TrialFailed(f"non-finite metric {next(iter(bad))}={next(iter(bad.values()))}")
    return {k: float(v) for k, v in metrics.items()}
