"""How far a trial's training is: tasks, models and techniques report progress here; the engine
listens (``engine.stopping``) and may stop a hopeless trial.

``checkpoint(done, value)`` reports ``done`` in [0, 1] of the current ``part`` with a validation
score ``value`` (higher is better; ``informative=False`` when the model still predicts like a constant,
so the score says nothing yet about where training ends: a rung reached then is passed, not judged,
else a rung early in a fine-tune would rank every trial by its costs alone); ``part(i, n)`` nests loops (seeds, ensemble members,
self-training stages) so that ``done`` becomes the share of the whole trial. Outside a search both
are no-ops. ``reporting(decide, scale)`` routes one trial's checkpoints to a decision once per rung;
``listening(callback)`` hands every checkpoint to ``callback`` (a learning curve being recorded).
``due(done)`` says whether a checkpoint there would be judged (a task whose validation score costs a
pass computes it only then); work inside ``quiet()`` reports nothing (a side computation, such as the
fine-tune an approximation is planned on, is not the trial's progress).

Rungs sit at absolute amounts of work: ``scale`` is this trial's work as a share of the most work a
trial of its search can do (``epochs`` over the space's highest ``epochs``, say), so when the amount
of work is searched, every trial is judged after the same number of epochs, not after the same share
of its own (which compared epoch 3 of a short trial with epoch 23 of a long one).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from autotradeoff.errors import TrialStopped

__all__ = ["checkpoint", "score_noise", "due", "part", "quiet", "reporting", "listening", "RUNGS"]

# shares of the most work a trial can do at which it is judged; the rung at 1/27 (replayed on the Cora curves table,
# seeds 0-209: early stopping's time to random search's final front 0.47-0.62x of no stopping's, against 0.53-0.74x
# with rungs at 1/9 and 1/3 only, better on each of the seven 30-seed sets); a GLUE fine-tune mostly still predicts a
# constant there, so that rung is passed (``informative=False``: one scoring pass); the faster learners are judged
RUNGS = (1 / 27, 1 / 9, 1 / 3)

_handler: ContextVar[Callable[[float, float, bool, int], None] | None] = ContextVar("autotradeoff_checkpoint", default=None)
_span: ContextVar[tuple[float, float]] = ContextVar("autotradeoff_span", default=(0.0, 1.0))
_next_rung: ContextVar[dict[str, float] | None] = ContextVar("autotradeoff_next_rung", default=None)


def checkpoint(done: float, value: float, *, informative: bool = True, samples: int = 0) -> None:
    """Report progress ``done`` (share of the current part) with validation ``value`` (higher is better);
    ``informative``: False while the model predicts like a constant (its rung is passed, not judged);
    ``samples``: how many validation examples ``value`` is scored on (0: unknown), which sets its noise."""
    handler = _handler.get()
    if handler is not None:
        start, width = _span.get()
        handler(start + width * min(max(done, 0.0), 1.0), float(value), informative, int(samples))


def score_noise(value: float, samples: int) -> float:
    """The sampling noise of a validation score: one binomial standard error, sqrt(p (1 - p) / n), of a share
    ``value`` measured on ``samples`` examples (0 when their number is unknown). At a rung a point gets part of
    it as benefit of the doubt (``stopping.NOISE_BAND``): early in a fine-tune a difference of two validation
    sentences says nothing about where training ends."""
    if samples <= 0:
        return 0.0
    p = min(max(value, 0.0), 1.0)
    return math.sqrt(p * (1 - p) / samples)


def _rung_at(state: dict[str, float]) -> float | None:
    """The share of this trial's own work at which its next rung falls; None when none is left before its end."""
    if state["next"] >= len(RUNGS) or RUNGS[int(state["next"])] / state["scale"] >= 1 - 1e-9:
        return None
    return RUNGS[int(state["next"])] / state["scale"]


def due(done: float) -> bool:
    """Would a checkpoint at ``done`` of the current part reach a rung not judged yet? False outside a search."""
    state = _next_rung.get()
    if _handler.get() is None or state is None or (at := _rung_at(state)) is None:
        return False
    start, width = _span.get()
    return start + width * min(max(done, 0.0), 1.0) >= at - 1e-9


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Checkpoints inside report nothing (and ``due`` is False): work that is not the trial's progress."""
    token = _handler.set(None)
    try:
        yield
    finally:
        _handler.reset(token)


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
def reporting(decide: Callable[[int, float, float, float], bool], scale: float = 1.0) -> Iterator[None]:
    """Route checkpoints of this trial to ``decide(rung, share done, value, noise)`` once per rung reached
    (``value``: the best validation score so far, ``noise``: its ``score_noise``);
    when it answers True the trial is stopped (``TrialStopped`` raised at the checkpoint, with the share
    of its work done). ``scale``: this trial's work as a share of the most a trial can do; rung ``r``
    is reached at ``RUNGS[r] / scale`` of its own work, and a rung it only reaches at its end is skipped
    (nothing is left to save), as is one reached by an uninformative checkpoint."""
    state = {"next": 0, "best": -math.inf, "scale": min(max(float(scale), 1e-9), 1.0)}

    def handler(share: float, value: float, informative: bool = True, samples: int = 0) -> None:
        state["best"] = max(state["best"], value)
        while (at := _rung_at(state)) is not None and share >= at - 1e-9:
            rung, state["next"] = int(state["next"]), state["next"] + 1
            if informative and decide(rung, share, state["best"], score_noise(state["best"], samples)):
                raise TrialStopped(f"stopped early at {share:.0%} of its work (rung {rung}): "
                                   f"validation {state['best']:.4f} and its known costs are dominated", share=share)

    token, state_token = _handler.set(handler), _next_rung.set(state)
    try:
        yield
    finally:
        _handler.reset(token)
        _next_rung.reset(state_token)


@contextlib.contextmanager
def listening(callback: Callable[[float, float], None]) -> Iterator[None]:
    """Hand every checkpoint of the work inside to ``callback(share of the whole work, value)``: how a
    learning curve is recorded (``benchmarks/cora_curves.py``). Nothing is ever stopped."""
    token = _handler.set(lambda share, value, informative=True, samples=0: callback(share, value))
    try:
        yield
    finally:
        _handler.reset(token)
