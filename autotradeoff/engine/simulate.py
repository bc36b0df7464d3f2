"""Simulated workers for tasks that look their results up in a table (``Task.simulated``), after Syne Tune's
simulated backend: ``workers`` asynchronous workers on a simulated clock.

A free worker asks the driver for a config at the clock's time; the trial is looked up at once, and it
finishes at that time plus what it would have taken (``Task.simulated_seconds``; a trial stopped early,
the share of its work it did; a config rejected before training, nothing). Finished trials are told in
the order of their simulated end, so the sampler sees the trials still running on the other workers exactly
as it would in a real parallel search (constant liar, GP batches), and budgets in ``cpu-h`` or wall time
mean what the search would have cost. One approximation: a trial's early-stopping decisions are taken when
it starts, against the rung points of the trials started before it (with one worker, exactly those that
reached the rung before it).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autotradeoff.engine.driver import Progress, SearchDriver
from autotradeoff.engine.runner import trial_outcome
from autotradeoff.engine.stopping import REJECTED, SHARE
from autotradeoff.tasks import Task, task_for

__all__ = ["SimClock", "run_simulated", "trial_seconds"]


@dataclass
class SimClock:
    """Simulated seconds: the driver's clock while a simulated search runs."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def trial_seconds(task: Task, config: dict[str, Any], fidelity: dict[str, Any], metrics: dict[str, Any] | None) -> float:
    """What a trial took on the simulated clock: the whole trial, or the share of it a stopped trial did;
    nothing for a config rejected before training. A config the table can't price (a failure) costs nothing."""
    metrics = metrics or {}
    if REJECTED in metrics:
        return 0.0
    try:
        whole = task.simulated_seconds(task.fill_config(config), task.fill_fidelity(fidelity))
    except Exception:  # the trial failed for its own reason (not in the table): it is stored as FAIL anyway
        return 0.0
    return whole * float(metrics.get(SHARE, 1.0))


def run_simulated(driver: SearchDriver, *, clock: SimClock, workers: int,
                  on_progress: Callable[[Progress], None] | None = None) -> None:
    """Run the driver's search on ``workers`` simulated workers until its budget is out (the driver's clock
    must be ``clock``)."""
    space = driver.space
    task = task_for(space.task, space.fidelity)
    finishing: list[tuple[float, int, str, dict[str, Any] | None, str | None]] = []
    number = 0
    try:
        while True:
            while len(finishing) < workers and (config := driver.ask(key := f"sim-{driver.session}-{number}")) is not None:
                number += 1
                metrics, error = trial_outcome(space.task, config, space.fidelity, constraints=space.constraints,
                                               judge=driver.judge(key))
                ends = clock.now + trial_seconds(task, config, space.fidelity, metrics)
                heapq.heappush(finishing, (ends, number, key, metrics, error))
            if not finishing:
                break
            clock.now, _, key, metrics, error = heapq.heappop(finishing)
            driver.tell(key, metrics, error=error)
            driver.heartbeat()
            if on_progress:
                on_progress(driver.progress())
    finally:
        driver.close()
