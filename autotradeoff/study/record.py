"""The stored record: every attribute name the engine writes on Optuna studies and trials, typed
read/write helpers, and every use of Optuna's private API (``_storage``, ``_trial_id``, ``_study_id``,
``_CachedStorage``).

Per trial (user attributes): each metric under its own name; ``config`` (the whole config, constants
too), ``charge`` (what the trial consumed, ``budget.Charge.as_attrs``), ``holds`` (what it holds while
running), ``fail_reason``, ``rejected``/``stopped`` (why it was PRUNED), ``recovered``, ``requeued`` (a re-run),
``interrupted`` (failed by the search or its worker dying, not by its config: its config was queued again),
``work_share`` (a trial stopped early: the share of its work it did),
``degenerate_reason`` (its model predicts like a constant: kept off the front and the picks), ``reference``
(``baseline`` or ``reference``: a point the search started with),
``runner_trial_id`` (Ray's trial id), ``autotradeoff:owner`` (host, pid, session of its search) and the
early-stopping points ``rung_<share>`` (``rung_1/27``: keyed by the share of the work, so studies
stored under another rule are never judged against). Per study: ``autotradeoff:space`` (what must match to resume),
``autotradeoff:fidelity``, ``autotradeoff:space_file``, ``autotradeoff:constraints``,
``autotradeoff:session:<id>`` (each search run's elapsed time and heartbeat) and ``remeasured:<trial>``
(timed costs measured again after a search; a finished trial's own attributes can't change).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, Trial, TrialState

__all__ = ["Charge", "CONFIG", "CHARGE", "HOLDS", "FAIL_REASON", "REJECTED", "STOPPED", "RECOVERED", "REQUEUED",
           "INTERRUPTED", "RUNNER_ID", "OWNER", "SPACE", "FIDELITY", "SPACE_FILE", "CONSTRAINTS", "SESSION_PREFIX",
           "REMEASURED_PREFIX", "storage_of", "cached", "trial_id", "study_id", "set_trial_attr", "store_metrics", "metrics", "config",
           "reason", "charge", "spent_by", "was_rejected", "was_requeued", "was_interrupted", "interrupt", "degenerate", "is_baseline",
           "is_reference", "DEGENERATE", "REFERENCE", "requeue", "owner", "holds",
           "runner_id", "sessions", "last_beat", "write_session", "remeasured", "write_remeasured", "searched_knobs",
           "task_of", "fidelity_of",
           "constraints_of", "rung_key", "rung_points", "write_rung", "spent", "counts_as_trial", "trial_units", "work_share",
           "WORK_SHARE", "SamplerView"]

# trial attributes
CONFIG, CHARGE, HOLDS, FAIL_REASON = "config", "charge", "holds", "fail_reason"
REJECTED, STOPPED, RECOVERED, REQUEUED, INTERRUPTED = "rejected", "stopped", "recovered", "requeued", "interrupted"
DEGENERATE, REFERENCE, WORK_SHARE = "degenerate_reason", "reference", "work_share"
RUNNER_ID, OWNER, RUNG_PREFIX = "runner_trial_id", "autotradeoff:owner", "rung_"
_NOT_METRICS = {CONFIG, CHARGE, HOLDS, FAIL_REASON, REJECTED, STOPPED, RECOVERED, REQUEUED, INTERRUPTED, DEGENERATE,
                REFERENCE, RUNNER_ID, OWNER, WORK_SHARE}
# study attributes
SPACE, FIDELITY, SPACE_FILE = "autotradeoff:space", "autotradeoff:fidelity", "autotradeoff:space_file"
CONSTRAINTS, SESSION_PREFIX, REMEASURED_PREFIX = "autotradeoff:constraints", "autotradeoff:session:", "remeasured:"

AnyTrial = Trial | FrozenTrial


@dataclass(frozen=True)
class Charge:
    """What one finished trial consumed, in every unit, so a study can switch budget units."""

    wall_s: float
    cpus: float
    gpus: float
    device_share: float  # fraction of the cluster's devices held (GPU share, or CPU share w/o GPUs)

    @property
    def cpu_h(self) -> float:
        return self.cpus * self.wall_s / 3600.0

    @property
    def gpu_h(self) -> float:
        return self.device_share * self.wall_s / 3600.0 if self.gpus == 0 else self.gpus * self.wall_s / 3600.0

    def as_attrs(self) -> dict[str, float]:
        return {"wall_s": self.wall_s, "cpus": self.cpus, "gpus": self.gpus,
                "cpu_h": self.cpu_h, "gpu_h": self.gpu_h}


# --- Optuna's private API, used nowhere else ---------------------------------------------------
def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage behind a study (Optuna keeps it private)."""
    return study._storage


def cached(storage: optuna.storages.RDBStorage) -> BaseStorage:
    """Optuna's caching layer over an RDB storage (what it adds itself when given an RDBStorage; a wrapper
    such as ``patience.PatientStorage`` must add it, or every read of the study loads every trial again)."""
    from optuna.storages._cached_storage import _CachedStorage

    return _CachedStorage(storage)


def trial_id(trial: AnyTrial) -> int:
    """A trial's storage id (unique across studies), which the storage API takes."""
    return trial._trial_id


def study_id(study: optuna.Study) -> int:
    """A study's storage id (optuna-dashboard's URLs use it)."""
    return study._study_id


# --- trials --------------------------------------------------------------------------------------
def set_trial_attr(study: optuna.Study, trial: AnyTrial, key: str, value: Any) -> None:
    """Set one attribute of a running trial, live or frozen (as read back from the storage)."""
    storage_of(study).set_trial_user_attr(trial_id(trial), key, value)


def store_metrics(study: optuna.Study, trial: AnyTrial, values: dict[str, float]) -> None:
    """A trial's metrics, each under its own name (what optuna-dashboard shows)."""
    for name, value in values.items():
        set_trial_attr(study, trial, name, float(value))


def metrics(trial: FrozenTrial, study_attrs: dict[str, Any] | None = None) -> dict[str, float]:
    """A trial's metrics, with the ones measured again after the search (``remeasured``) in place of
    the first measurement when ``study_attrs`` are given: the one place metrics are read from."""
    out = {k: v for k, v in trial.user_attrs.items() if k not in _NOT_METRICS and not k.startswith(RUNG_PREFIX)
           and isinstance(v, (int, float)) and not isinstance(v, bool)}
    again = remeasured(study_attrs or {}, trial.number)
    out.update({k: v for k, v in again.items() if isinstance(v, (int, float))})
    return out


def config(trial: FrozenTrial) -> dict[str, Any]:
    """The whole config a trial ran (its params alone for trials stored before configs were)."""
    return trial.user_attrs.get(CONFIG, dict(trial.params))


def reason(trial: FrozenTrial) -> str | None:
    """Why a trial failed, was rejected before training or was stopped early (None when it did not)."""
    attrs = trial.user_attrs
    return attrs.get(FAIL_REASON) or attrs.get(REJECTED) or attrs.get(STOPPED)


def charge(trial: FrozenTrial) -> dict[str, float] | None:
    return trial.user_attrs.get(CHARGE)


def was_rejected(trial: FrozenTrial) -> bool:
    return REJECTED in trial.user_attrs


def was_requeued(trial: AnyTrial) -> bool:
    return bool(trial.user_attrs.get(REQUEUED))


def degenerate(trial: FrozenTrial) -> str | None:
    """Why a complete trial's model counts as a constant predictor (None when it does not)."""
    return trial.user_attrs.get(DEGENERATE)


def is_baseline(trial: AnyTrial) -> bool:
    """The task's all-default point a search starts with."""
    return trial.user_attrs.get(REFERENCE) == "baseline"


def is_reference(trial: AnyTrial) -> bool:
    """A warm-start trial: the task's baseline or one of the space's ``baselines:``."""
    return REFERENCE in trial.user_attrs


def was_interrupted(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get(INTERRUPTED))


def interrupt(study: optuna.Study, trial: AnyTrial) -> None:
    """Mark a still-running trial as interrupted (the search or its worker died, not its config) and queue
    its config again: under a ``trials`` budget it is not counted, its re-run is."""
    set_trial_attr(study, trial, INTERRUPTED, True)
    requeue(study, trial.params)


def requeue(study: optuna.Study, params: dict[str, Any]) -> None:
    """Queue a config again (an interrupted trial's) so the next ask runs it before new suggestions."""
    if params:
        study.enqueue_trial(dict(params), user_attrs={REQUEUED: True})


def owner(trial: FrozenTrial) -> dict[str, Any]:
    """Host, pid and session of the search that runs (or ran) a trial; empty before it recorded itself."""
    return trial.user_attrs.get(OWNER) or {}


def holds(trial: FrozenTrial) -> dict[str, float]:
    return trial.user_attrs.get(HOLDS) or {}


def runner_id(trial: FrozenTrial) -> str:
    return trial.user_attrs.get(RUNNER_ID, "")


# --- search runs (sessions) ----------------------------------------------------------------------
def write_session(study: optuna.Study, session: str, entry: dict[str, Any]) -> None:
    study.set_user_attr(f"{SESSION_PREFIX}{session}", entry)


def sessions(study_attrs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each search run's record (elapsed seconds, start, owner, last heartbeat) by session id."""
    return {k[len(SESSION_PREFIX):]: v for k, v in study_attrs.items() if k.startswith(SESSION_PREFIX)}


def last_beat(study_attrs: dict[str, Any], session: str | None) -> datetime | None:
    """When the search run ``session`` last recorded itself (its heartbeat), if it did."""
    entry = study_attrs.get(f"{SESSION_PREFIX}{session}") or {}
    try:
        return datetime.fromisoformat(entry["beat"])
    except (KeyError, TypeError, ValueError):
        return None


# --- study-wide ----------------------------------------------------------------------------------
def remeasured(study_attrs: dict[str, Any], number: int) -> dict[str, Any]:
    return study_attrs.get(f"{REMEASURED_PREFIX}{number}") or {}


def write_remeasured(study: optuna.Study, number: int, entry: dict[str, Any]) -> None:
    study.set_user_attr(f"{REMEASURED_PREFIX}{number}", entry)


def searched_knobs(study_attrs: dict[str, Any]) -> list[str]:
    """The knobs the study's space searches (its stored signature)."""
    return list((study_attrs.get(SPACE) or {}).get("knobs") or [])


def task_of(study_attrs: dict[str, Any]) -> str | None:
    return (study_attrs.get(SPACE) or {}).get("task")


def fidelity_of(study_attrs: dict[str, Any]) -> dict[str, Any]:
    return study_attrs.get(FIDELITY) or {}


def constraints_of(study_attrs: dict[str, Any]) -> list[str]:
    """The last search's constraints as text (``latency_ms <= 5``)."""
    return list(study_attrs.get(CONSTRAINTS) or [])


# --- early-stopping rungs ------------------------------------------------------------------------
def rung_key(share: float) -> str:
    """The trial attribute of a rung point at ``share`` of the most work a trial can do: ``rung_1/27``. Keyed by
    the share, not the rung's number, so a study stored under other rungs (``rung_0`` was 1/9 before the
    1/27 rung came) is not read as this rule's."""
    return f"{RUNG_PREFIX}{Fraction(share).limit_denominator(10_000)}"


def rung_points(storage: BaseStorage, study_name: str, share: float, *, but: int,
                size: int) -> list[tuple[tuple[float, ...], float | None]]:
    """The points the study's other trials (all but trial id ``but``) stored at the rung at ``share``, each with
    the standard error of its score stored beside it (None where none was: studies before 2026-12-05)."""
    key, noise = rung_key(share), _noise_key(share)
    trials = storage.get_all_trials(storage.get_study_id_from_name(study_name), deepcopy=False)
    return [(tuple(t.user_attrs[key]), t.user_attrs.get(noise)) for t in trials
            if trial_id(t) != but and len(t.user_attrs.get(key) or ()) == size]


def write_rung(storage: BaseStorage, trial: int, share: float, point: tuple[float, ...], noise: float = 0.0) -> None:
    """Store a trial's rung point and its score's standard error (``rung_noise_1/27``)."""
    storage.set_trial_user_attr(trial, rung_key(share), list(point))
    storage.set_trial_user_attr(trial, _noise_key(share), float(noise))


def _noise_key(share: float) -> str:
    """The standard error stored beside a rung point: ``rung_noise_1/27`` (a rung attribute: never a metric)."""
    return rung_key(share).replace(RUNG_PREFIX, f"{RUNG_PREFIX}noise_", 1)


# --- budget --------------------------------------------------------------------------------------
def spent_by(trial: FrozenTrial) -> dict[str, float]:
    """What one trial adds to the budget spent, in every unit but wall seconds (those are the sessions')."""
    charged = charge(trial)
    return {"gpu-h": charged["gpu_h"] if charged else 0.0, "cpu-h": charged["cpu_h"] if charged else 0.0,
            "trials": float(trial_units(trial))}


def spent(study: optuna.Study, trials: list[FrozenTrial] | None = None) -> dict[str, float]:
    """Budget spent so far in every unit, derived from what the study stores (never double-counted)."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    total = {"gpu-h": 0.0, "cpu-h": 0.0, "trials": 0.0}
    for trial in trials:
        for unit, value in spent_by(trial).items():
            total[unit] += value
    elapsed = [entry.get("elapsed_s", 0.0) for entry in sessions(study.user_attrs).values()]
    return {**total, "s": float(sum(elapsed))}


def counts_as_trial(trial: FrozenTrial) -> bool:
    """Does a finished trial use one of a ``trials`` budget? Not when it was rejected before training, nor
    when it was interrupted (its re-run counts instead)."""
    return bool(charge(trial)) and not was_rejected(trial) and not was_interrupted(trial)


def work_share(trial: FrozenTrial) -> float:
    """The share of its work a trial did: what a trial stopped early stored, else 1."""
    return float(trial.user_attrs.get(WORK_SHARE, 1.0))


def trial_units(trial: FrozenTrial) -> float:
    """What a finished trial uses of a ``trials`` budget: 1, the share of its work when it was stopped early,
    0 when it does not count (``counts_as_trial``)."""
    return work_share(trial) if counts_as_trial(trial) else 0.0


# --- what samplers see ---------------------------------------------------------------------------
_CONSTRAINTS_KEY = "constraints"  # Optuna's trial system attribute of constraint values (optuna.samplers._base)


class SamplerView:
    """A study as a sampler should see it. ``constraints`` (a trial's constraint values from its stored metrics):
    every finished trial shows the values of the constraints of this run, so a study resumed with other
    constraints gives every sampler one count of them per trial (Optuna's GP refuses a mix; Optuna 5 refuses
    to change a finished trial, so they are restated here, not in storage). ``rejected``: for a sampler that
    reads COMPLETE trials only (GP, NSGA-II), each config rejected before training (PRUNED, with constraint
    values) shown as a COMPLETE trial that breaks its constraints, with the worst value of each objective seen
    so far, so its constraint model learns where the bounds cut (before any trial completed: shown as running).
    Everything else is the study itself."""

    def __init__(self, study: optuna.Study, constraints: Callable[[FrozenTrial], Sequence[float]] | None = None,
                 rejected: bool = True) -> None:
        self._study, self._constraints, self._rejected = study, constraints, rejected

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy, states, use_cache=False)

    def _get_trials(self, deepcopy: bool = True, states: Any = None, use_cache: bool = False) -> list[FrozenTrial]:
        wanted = None if states is None else set(states)
        more = {TrialState.PRUNED} if self._rejected and wanted is not None and TrialState.COMPLETE in wanted else set()
        trials = [self._restated(t) for t in self._study._get_trials(deepcopy=deepcopy, states=None if wanted is None
                                                                      else wanted | more, use_cache=use_cache)]
        if not self._rejected:
            return trials
        worst = self._worst(trials)
        shown = []
        for trial in trials:
            rejected = trial.state == TrialState.PRUNED and REJECTED in trial.user_attrs
            if rejected and trial.system_attrs.get(_CONSTRAINTS_KEY):
                trial = self._as_infeasible(trial, worst) if worst is not None else self._pending(trial)
                if wanted is None or trial.state in wanted:
                    shown.append(trial)
            elif wanted is None or trial.state in wanted:
                shown.append(trial)
        return shown

    def _restated(self, trial: FrozenTrial) -> FrozenTrial:
        """``trial`` with the constraint values of this run, where it has others stored."""
        if self._constraints is None or trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            return trial  # Optuna's samplers state constraints for these two states only
        new = tuple(self._constraints(trial))
        if tuple(trial.system_attrs.get(_CONSTRAINTS_KEY, ())) == new:
            return trial
        shown = copy.copy(trial)
        shown.system_attrs = {**trial.system_attrs, _CONSTRAINTS_KEY: new}
        return shown

    def _worst(self, trials: list[FrozenTrial]) -> list[float] | None:
        done = [t.values for t in trials if t.state == TrialState.COMPLETE and t.values]
        if not done:
            return None
        pick = [max if d == optuna.study.StudyDirection.MINIMIZE else min for d in self._study.directions]
        return [f(v[i] for v in done) for i, f in enumerate(pick)]

    @staticmethod
    def _pending(trial: FrozenTrial) -> FrozenTrial:
        """A config rejected before any trial completed has no worst value yet: shown as still running, so a
        sampler that caches finished trials (Optuna 5.1's GA samplers) looks at it again once it has one."""
        shown = copy.copy(trial)
        shown.state = TrialState.RUNNING
        return shown

    @staticmethod
    def _as_infeasible(trial: FrozenTrial, worst: list[float]) -> FrozenTrial:
        shown = copy.copy(trial)
        shown.state = TrialState.COMPLETE
        shown.values = list(worst)
        return shown
