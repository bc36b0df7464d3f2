"""Multi-objective early stopping: tasks say how far a trial is (``progress.checkpoint``), the engine
decides whether it goes on.

The rule (successive halving over several objectives, as in MO-ASHA): rungs sit at 1/27, 1/9 and 1/3 of the
most work a trial of the search can do (``ETA`` = 3): of its own work when that is the same for every
trial, at the same absolute number of epochs when the space searches ``epochs`` (``work_scale``). When
a trial reaches a rung, its point is its best validation score so far plus the cost objectives already
known (measured before training, see ``Task.precheck``, or projected from the time used so far). Among
all trials that reached that rung, points are sorted into non-dominated fronts; the trial goes on if it
is in the best ``ceil(n / ETA)`` by front, else it is stopped and recorded as PRUNED (never on the
reported front). Nothing is stopped before ``MIN_AT_RUNG`` trials reached the rung. A point gets the benefit of
half its validation score's sampling noise (``NOISE_BAND`` binomial standard errors on the validation set,
``progress.score_noise``): another dominates it only when better by more than that on the score and no worse on
the costs. Trials whose cost is
not known until the end are judged on the known parts only when every cost objective is known; otherwise
they run to the end.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

from autotradeoff.front.pareto import dominates
from autotradeoff.progress import RUNGS
from autotradeoff.study import record

__all__ = ["RUNGS", "ETA", "MIN_AT_RUNG", "fronts", "keep", "Judge", "REJECTED", "STOPPED", "SHARE", "work_scale"]

REJECTED = "autotradeoff_rejected"  # trial result key: the config broke a constraint before training (the reason)
STOPPED = "autotradeoff_stopped"  # trial result key: the search stopped the trial early (the reason)
SHARE = "autotradeoff_share"  # trial result key of a stopped trial: the share of its work it did
ETA = 3
# points a rung needs before stopping anything: with 2 the second trial at a rung is stopped when the first dominates
# it (the best ceil(2/3) = 1 front goes on). Replayed on the Cora curves table with the rungs above (seeds 0-29/30-59/
# 90-119): 2 reads 0.43x/0.35x/0.54x of no stopping's time to random search's final front, 3 0.50x/0.48x/0.62x (README)
MIN_AT_RUNG = 2
# the benefit of the doubt at a rung, in standard errors of the validation score (``progress.score_noise``): half,
# as the front's ties are half a timed metric's spread. A 1cpu-h SST-2 search stopped two fine-tunes of the config
# earlier searches put on its front at 1/27, two validation sentences behind another. Replayed on the Cora curves
# table (README): 0.5 reads 0.45x/0.35x/0.57x on seeds 0-29/30-59/90-119 against 0.43x/0.35x/0.54x with none; 1 cost
# far more (0.59x against 0.37x on seeds 240-269)
NOISE_BAND = 0.5
log = logging.getLogger("autotradeoff")


def work_scale(config: dict, work: tuple[str, float] | None) -> float:
    """A trial's work as a share of the most a trial of its search can do: ``config[knob] / most`` for
    ``work`` = (the task's work knob, its highest value in the space); 1 when the amount is not searched."""
    if not work or work[0] not in config or not work[1]:
        return 1.0
    return min(1.0, max(float(config[work[0]]) / float(work[1]), 1e-9))


def fronts(points: Sequence[Sequence[float]], tolerance: Sequence[Sequence[float]] | None = None) -> list[int]:
    """Non-dominated sorting of loss points: the front index of each (0 = not dominated). ``tolerance``: per
    point, per objective, the benefit of the doubt that point gets: another dominates it only when it also
    dominates the point made better by that much (on the score: better by more than the point's own score noise,
    and no worse on costs)."""
    tolerance = tolerance or [[0.0] * len(p) for p in points]
    hopeful = [tuple(x - t for x, t in zip(p, tol)) for p, tol in zip(points, tolerance, strict=True)]
    remaining, index, level = set(range(len(points))), [0] * len(points), 0
    while remaining:  # a cycle can't occur: each step of one would be better by more than the tolerance
        current = {i for i in remaining if not any(dominates(points[j], hopeful[i]) for j in remaining if j != i)}
        for i in current:
            index[i] = level
        remaining -= current
        level += 1
    return index


def keep(mine: Sequence[float], others: Sequence[Sequence[float]], eta: int = ETA, minimum: int = MIN_AT_RUNG,
         tolerance: Sequence[float] | None = None) -> bool:
    """Does the loss point ``mine`` survive a rung where ``others`` (the other trials' points) were seen?
    Kept when it is among the best ``ceil(n / eta)`` points by non-dominated front (ties kept); ``tolerance``:
    per objective, the benefit of the doubt each point gets (the validation score's noise, see ``fronts``)."""
    points = [tuple(mine), *map(tuple, others)]
    if len(points) < minimum:
        return True
    level = fronts(points, tolerance)
    quota = math.ceil(len(points) / eta)
    cutoff = sorted(level)[quota - 1]
    return level[0] <= cutoff


class Judge:
    """One trial's rung decisions, made from the rung points every trial of the study stored (trial
    attributes ``rung_<share>``, e.g. ``rung_1/27``), so trials run by other processes or machines on the same storage count.

    ``objectives``: (name, "max"/"min") pairs; the first "max" one is judged by the validation value the
    task reports (the best so far), the others by ``known`` costs (measured before training), ``train_time_s`` by the time
    used so far divided by the share done. Any other objective makes the point unknown: never stopped.
    ``scale``: the trial's work as a share of the most a trial can do (``work_scale``), which places its rungs.
    The warm-start trials (the task's baseline and the space's ``baselines``) store their rung points but are never
    stopped: the front is read against them, and with a rung judging from its second point two references started
    together would otherwise stop one another (the plain self-training baseline stopped by the supervised one).
    """

    warned = False  # one warning per process when the storage can't be reached

    def __init__(self, storage, study_name: str, trial_id: int, objectives: Sequence[tuple[str, str]],
                 known: dict[str, float] | None = None, clock: Callable[[], float] | None = None,
                 scale: float = 1.0) -> None:
        self.storage, self.study_name, self.trial_id, self.scale = storage, study_name, trial_id, scale
        self.objectives, self.known = list(objectives), dict(known or {})
        self.clock = clock or time.perf_counter
        self.started = self.clock()
        self.reference: bool | None = None  # a warm-start trial (read from the storage at its first rung)

    def point(self, share: float, value: float) -> tuple[float, ...] | None:
        """This trial's loss point at ``share`` of its work (None when an objective can't be known yet)."""
        score = next((name for name, direction in self.objectives if direction == "max"), None)
        losses = []
        for name, direction in self.objectives:
            if name == score:
                x = value
            elif name in self.known:
                x = self.known[name]
            elif name == "train_time_s":
                x = (self.clock() - self.started) / max(share, 1e-9)
            else:
                return None
            losses.append(-x if direction == "max" else x)
        return tuple(losses) if score is not None else None

    def __call__(self, rung: int, share: float, value: float, noise: float = 0.0) -> bool:
        """Stop this trial at ``rung`` (reached at ``share`` of its work with best validation ``value``)? ``noise``: the
        score's standard error (``progress.score_noise``), stored with the point: a point is dominated only by one better by
        more than ``NOISE_BAND`` x its own noise on the score and no worse on costs."""
        point = self.point(share, value)
        if point is None:
            return False
        try:
            at = RUNGS[rung]
            others = record.rung_points(self.storage, self.study_name, at, but=self.trial_id, size=len(point))
            record.write_rung(self.storage, self.trial_id, at, point, noise)
            if self.reference is None:
                self.reference = record.is_reference(self.storage.get_trial(self.trial_id))
        except Exception as exc:  # storage this worker can't reach (SQLite file on another machine): never stop
            if not Judge.warned:
                Judge.warned = True
                log.warning("early stopping off in this worker, the study is out of reach: %s", exc)
            return False
        score = next(i for i, (_, direction) in enumerate(self.objectives) if direction == "max")
        # each point's own score noise; a point stored without one (an older study) gets this trial's
        band = lambda n: [NOISE_BAND * n if i == score else 0.0 for i in range(len(point))]  # noqa: E731
        tolerance = [band(noise), *(band(noise if theirs is None else theirs) for _, theirs in others)]
        return not self.reference and not keep(point, [p for p, _ in others], tolerance=tolerance)
