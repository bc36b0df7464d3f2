"""Multi-objective early stopping: tasks say how far a trial is, the driver decides whether it goes on.

Tasks call ``checkpoint(done, value)`` inside their training loops (``done`` in [0, 1] of the current
``part``, ``value`` a validation score, higher is better); ``part(i, n)`` nests loops (seeds, ensemble
members, self-training stages) so that ``done`` becomes the share of the whole trial. Outside a search
both are no-ops.

The rule (successive halving over several objectives, as in MO-ASHA): rungs sit at 1/9 and 1/3 of a
trial's work (``ETA`` = 3). When a trial reaches a rung, its point is its validation score there plus
the cost objectives already known (measured before training, see ``Task.precheck``, or projected from
the time used so far). Among all trials that reached that rung, points are sorted into non-dominated
fronts; the trial goes on if it is in the best ``ceil(n / ETA)`` by front, else it is stopped and
recorded as PRUNED (never on the reported front). Nothing is stopped before ``MIN_AT_RUNG`` trials
reached the rung. Trials whose cost is not known until the end are judged on the known parts only
when every cost objective is known; otherwise they run to the end.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar

from autotradeoff.pareto import _dominates

__all__ = ["checkpoint", "part", "reporting", "RUNGS", "ETA", "MIN_AT_RUNG", "fronts", "keep", "TrialStopped", "Judge",
           "REJECTED", "STOPPED"]

REJECTED = "autotradeoff_rejected"  # trial result key: the config broke a constraint before training (the reason)
STOPPED = "autotradeoff_stopped"  # trial result key: the search stopped the trial early (the reason)
ETA = 3
RUNGS = (1 / 9, 1 / 3)  # shares of a trial's work at which it is judged
MIN_AT_RUNG = 6  # points a rung needs before anything is stopped there

_handler: ContextVar[Callable[[float, float], None] | None] = ContextVar("autotradeoff_checkpoint", default=None)
_span: ContextVar[tuple[float, float]] = ContextVar("autotradeoff_span", default=(0.0, 1.0))


class TrialStopped(Exception):
    """Raised inside a trial at a checkpoint when the search stopped it early."""


def checkpoint(done: float, value: float) -> None:
    """Report progress ``done`` (share of the current part) with validation ``value`` (higher is better)."""
    handler = _handler.get()
    if handler is not None:
        start, width = _span.get()
        handler(start + width * min(max(done, 0.0), 1.0), float(value))


@contextlib.contextmanager
def part(index: int, count: int) -> Iterator[None]:
    """The ``index``-th of ``count`` equal parts of the enclosing span of work."""
    start, width = _span.get()
    token = _span.set((start + width * index / count, width / max(count, 1)))
    try:
        yield
    finally:
        _span.reset(token)


@contextlib.contextmanager
def reporting(decide: Callable[[int, float, float], bool]) -> Iterator[None]:
    """Route checkpoints of this trial to ``decide(rung, share done, value)`` once per rung reached;
    when it answers True the trial is stopped (``TrialStopped`` raised at the checkpoint)."""
    state = {"next": 0, "best": -math.inf}

    def handler(share: float, value: float) -> None:
        state["best"] = max(state["best"], value)
        while state["next"] < len(RUNGS) and share >= RUNGS[state["next"]] - 1e-9:
            rung, state["next"] = state["next"], state["next"] + 1
            if decide(rung, share, state["best"]):
                raise TrialStopped(f"stopped early at {share:.0%} of its work (rung {rung}): "
                                   f"validation {state['best']:.4f} and its known costs are dominated")

    token = _handler.set(handler)
    try:
        yield
    finally:
        _handler.reset(token)


def fronts(points: Sequence[Sequence[float]]) -> list[int]:
    """Non-dominated sorting of loss points: the front index of each (0 = not dominated)."""
    remaining, index, level = set(range(len(points))), [0] * len(points), 0
    while remaining:
        current = {i for i in remaining if not any(_dominates(points[j], points[i]) for j in remaining if j != i)}
        for i in current:
            index[i] = level
        remaining -= current
        level += 1
    return index


def keep(mine: Sequence[float], others: Sequence[Sequence[float]], eta: int = ETA, minimum: int = MIN_AT_RUNG) -> bool:
    """Does the loss point ``mine`` survive a rung where ``others`` (the other trials' points) were seen?
    Kept when it is among the best ``ceil(n / eta)`` points by non-dominated front (ties kept)."""
    points = [tuple(mine), *map(tuple, others)]
    if len(points) < minimum:
        return True
    level = fronts(points)
    quota = math.ceil(len(points) / eta)
    cutoff = sorted(level)[quota - 1]
    return level[0] <= cutoff


class Judge:
    """One trial's rung decisions, made from the rung points every trial of the study stored (trial
    attributes ``rung_<r>``), so trials run by other processes or machines on the same storage count.

    ``objectives``: (name, "max"/"min") pairs; the first "max" one is judged by the validation value the
    task reports, the others by ``known`` costs (measured before training), ``train_time_s`` by the time
    used so far divided by the share done. Any other objective makes the point unknown: never stopped.
    """

    warned = False  # one warning per process when the storage can't be reached

    def __init__(self, storage, study_name: str, trial_id: int, objectives: Sequence[tuple[str, str]],
                 known: dict[str, float] | None = None, clock: Callable[[], float] | None = None) -> None:
        import time

        self.storage, self.study_name, self.trial_id = storage, study_name, trial_id
        self.objectives, self.known = list(objectives), dict(known or {})
        self.clock = clock or time.perf_counter
        self.started = self.clock()

    def point(self, share: float, value: float) -> tuple[float, ...] | None:
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

    def __call__(self, rung: int, share: float, value: float) -> bool:
        point = self.point(share, value)
        if point is None:
            return False
        key = f"rung_{rung}"
        try:
            study_id = self.storage.get_study_id_from_name(self.study_name)
            others = [tuple(t.user_attrs[key]) for t in self.storage.get_all_trials(study_id, deepcopy=False)
                      if t._trial_id != self.trial_id and len(t.user_attrs.get(key) or ()) == len(point)]
            self.storage.set_trial_user_attr(self.trial_id, key, list(point))
        except Exception as exc:  # storage this worker can't reach (SQLite file on another machine): never stop
            if not Judge.warned:
                Judge.warned = True
                print(f"autotradeoff: early stopping off in this worker, the study is out of reach: {exc}", file=sys.stderr)
            return False
        return not keep(point, others)
