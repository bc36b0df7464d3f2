"""Ask/tell between a runner and the study: budget gating, charging, metrics and failures stored.

The driver knows nothing of Ray: the Ray runner and the in-process runner both call ``ask`` for a
config and ``tell`` with what the trial returned, so every rule lives here once.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotradeoff.budget import Budget, Charge
from autotradeoff.space import SearchSpace
from autotradeoff.stopping import REJECTED, STOPPED, Judge
from autotradeoff.study import OWNER_ATTR, SESSION_PREFIX, owner, requeue, spent

__all__ = ["SearchDriver", "Progress"]


@dataclass
class Progress:
    complete: int
    failed: int
    running: int
    front_size: int
    spent: float
    budget: Budget

    @property
    def left(self) -> float:
        return max(0.0, self.budget.amount - self.spent)


@dataclass
class _Running:
    trial: optuna.Trial
    started: float


@dataclass
class SearchDriver:
    """Hands out configs while the budget covers them and records every outcome in the study.

    ``resources``: what one trial holds ({"cpu": c, "gpu": g}); ``cluster_cpus``: all CPUs the runner
    can use (a trial's device share, charged as gpu-h when no GPU exists, is ``c / cluster_cpus``).
    """

    study: optuna.Study
    space: SearchSpace
    budget: Budget
    resources: dict[str, float]
    cluster_cpus: float
    trial_timeout: float | None = None  # seconds a trial may run before the runner stops it
    early_stop: bool = True  # trials of tasks with checkpoints may be stopped at a rung (``stopping``)
    storage_url: str | None = None  # for Ray workers' early-stopping decisions
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _running: dict[str, _Running] = field(default_factory=dict)
    _last_beat: float = 0.0
    _started: float = field(default_factory=time.monotonic)
    _previous_s: float = 0.0
    _started_iso: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        self._previous_s = spent(self.study)["s"]
        self._record_session()

    # --- budget -----------------------------------------------------------------------------
    def spent_now(self, trials: list | None = None) -> float:
        """Budget spent so far; ``trials`` (already read from the study) saves reading them again."""
        if self.budget.unit == "s":
            return self._previous_s + self.elapsed()
        return spent(self.study, trials)[self.budget.unit]

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def _per_trial(self, trials: list) -> float | None:
        """Typical (median) cost of a finished trial in the budget's unit (wall seconds for wall-clock
        budgets). Median, not mean: costs are heavy-tailed where a stage is cached (the first trial with
        new training knobs fine-tunes, later ones reuse it), and the mean stopped SST-2 searches with
        room left for several typical trials. Configs rejected before training are not typical trials."""
        charges = [t.user_attrs["charge"] for t in trials if "charge" in t.user_attrs and "rejected" not in t.user_attrs]
        if not charges:
            return None
        key = {"gpu-h": "gpu_h", "cpu-h": "cpu_h", "s": "wall_s", "trials": None}[self.budget.unit]
        return 1.0 if key is None else statistics.median(c[key] for c in charges)

    def can_start(self) -> bool:
        trials = self.study.get_trials(deepcopy=False)  # read once per ask: spent and median come from it
        per_trial = self._per_trial(trials)
        if self.budget.unit == "s":  # trials run side by side: only the clock matters
            return self.spent_now() + (per_trial or 0.0) <= self.budget.amount
        return self.budget.can_start(spent=self.spent_now(trials), reserved=self._reserved(per_trial), per_trial=per_trial)

    def _reserved(self, per_trial: float | None) -> float:
        """Expected cost of the running trials: each at least the median, or what it has used so far."""
        if self.budget.unit == "trials":
            return float(len(self._running))
        now = time.monotonic()
        return sum(max(per_trial or 0.0, self.budget.of(self._charge(now - r.started))) for r in self._running.values())

    def _charge(self, wall: float) -> Charge:
        gpus = float(self.resources.get("gpu", 0.0))
        cpus = float(self.resources.get("cpu", 1.0))
        return Charge(wall_s=wall, cpus=cpus, gpus=gpus, device_share=cpus / max(self.cluster_cpus, cpus))

    @property
    def running(self) -> int:
        return len(self._running)

    # --- ask / tell ---------------------------------------------------------------------------
    def ask(self, key: str) -> dict[str, Any] | None:
        """A config for a new trial under ``key`` (the runner's trial id), or None if the budget is out."""
        if not self.can_start():
            return None
        trial = self.study.ask()
        # owner and runner id first: a search killed while the sampler works (a GP takes a second)
        # still owns its trial, so the next run can settle it, and the trial names its runner id
        trial.set_user_attr(OWNER_ATTR, {**owner(), "session": self.session})
        if key:
            trial.set_user_attr("runner_trial_id", key)
        config = self.space.suggest(trial)
        trial.set_user_attr("config", config)  # constants too, so export/trial can replay it whole
        charge = self._charge(0.0)  # what it holds, so a resume can charge it if this process dies
        trial.set_user_attr("holds", {"cpus": charge.cpus, "gpus": charge.gpus, "device_share": charge.device_share})
        self._running[key] = _Running(trial, time.monotonic())
        return config

    def tell(self, key: str, metrics: dict[str, Any] | None, *, error: str | None = None, retry: bool = False) -> int | None:
        """Store a finished trial: COMPLETE with all metrics, or FAIL with ``error``. Returns its number.
        ``retry``: the failure was the machine's, not the config's (a killed worker): queue the config
        again, once (a config that fails again the same way is not retried forever)."""
        running = self._running.pop(key, None)
        if running is None:
            return None
        trial = running.trial
        try:
            trial.set_user_attr("charge", self._charge(time.monotonic() - running.started).as_attrs())
        except optuna.exceptions.UpdateFinishedTrialError:
            # another search settled it while this one was silent past study.SILENT_AFTER_S (suspended,
            # storage out of reach): what it stored stands, this result is dropped
            print(f"autotradeoff: trial {trial.number} was settled by another search while this one was silent; "
                  "its result is not stored", file=sys.stderr, flush=True)
            return None
        values = None
        early = (metrics or {}).get(REJECTED) or (metrics or {}).get(STOPPED)
        if error is None and early:  # rejected before training / stopped at a rung: PRUNED, off the front
            self._store_metrics(trial._trial_id, metrics)
            trial.set_user_attr("rejected" if REJECTED in metrics else "stopped", early)
            self.study.tell(trial, state=TrialState.PRUNED)
            self._record_session()
            return trial.number
        if error is None:
            error, values = self._objective_values(metrics or {})
        if error is None:
            self._store_metrics(trial._trial_id, metrics or {})
            self.study.tell(trial, values)
        else:
            trial.set_user_attr("fail_reason", error[:2000])
            self.study.tell(trial, state=TrialState.FAIL)
            if retry and not trial.user_attrs.get("requeued"):
                requeue(self.study, trial.params)
        self._record_session()
        return trial.number

    def _store_metrics(self, trial_id: int, metrics: dict[str, Any]) -> None:
        for name, value in metrics.items():  # not the runner's own fields
            if name in self.space.metrics or name == "trial_wall_s" or name.startswith(self.space.metric_prefixes):
                self.study._storage.set_trial_user_attr(trial_id, name, float(value))

    def recover(self, trial: FrozenTrial, result: dict[str, Any]) -> bool:
        """Store the result the runner kept for a trial whose search process died before telling it
        (``study.reconcile``); False when it is no complete result. Charged by the runner's own clock."""
        if "autotradeoff_error" in result:
            return False
        early = result.get(REJECTED) or result.get(STOPPED)  # rejected or stopped at a rung: PRUNED, as ``tell`` stores it
        error, values = (None, None) if early else self._objective_values(result)
        if error is not None:
            return False
        holds = trial.user_attrs.get("holds") or {}
        wall = float(result.get("time_total_s", result.get("trial_wall_s", 0.0)))
        storage = self.study._storage
        storage.set_trial_user_attr(trial._trial_id, "charge", Charge(wall_s=wall, **holds).as_attrs()
                                    if holds else self._charge(wall).as_attrs())
        self._store_metrics(trial._trial_id, result)
        storage.set_trial_user_attr(trial._trial_id, "recovered", "from the runner's results after its search process died")
        if early:
            storage.set_trial_user_attr(trial._trial_id, "rejected" if result.get(REJECTED) else "stopped", early)
            self.study.tell(trial.number, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            self.study.tell(trial.number, values, skip_if_finished=True)
        return True

    def _objective_values(self, metrics: dict[str, Any]) -> tuple[str | None, list[float] | None]:
        values = []
        for objective in self.space.objectives:
            value = metrics.get(objective.name)
            if value is None:
                return f"trial returned no objective {objective.name!r}", None
            if not math.isfinite(float(value)):
                return f"objective {objective.name} is {value}", None
            values.append(float(value))
        return None, values

    def close(self, reason: str = "search stopped before the trial finished; its config is queued again") -> None:
        """Fail whatever is still running (interrupt, runner crash), queue those configs again so the
        next run of the same command tries them first, and store this run's elapsed time."""
        for key, running in list(self._running.items()):
            self.tell(key, None, error=reason)
            requeue(self.study, running.trial.params)
        self._record_session()

    def heartbeat(self, every_s: float = 5.0) -> None:
        """Record this run's elapsed time now and then while trials run, so that if this process is
        killed, a resume can charge its unfinished trials up to the last beat (see ``study.reconcile``)."""
        if time.monotonic() - self._last_beat >= every_s:
            self._record_session()

    def trial_id(self, key: str) -> int:
        return self._running[key].trial._trial_id

    def judge(self, key: str) -> Callable[[dict[str, float]], Judge] | None:
        """Early-stopping decisions for the running trial ``key`` (None when switched off)."""
        if not self.early_stop:
            return None
        objectives = [(o.name, o.direction) for o in self.space.objectives]
        return lambda known: Judge(self.study._storage, self.study.study_name, self.trial_id(key), objectives, known)

    def stopping_spec(self) -> dict[str, Any] | None:
        """What a Ray worker needs to build the same ``Judge`` against the study's storage."""
        if not self.early_stop or not self.storage_url:
            return None
        return {"url": self.storage_url, "study": self.study.study_name,
                "objectives": [(o.name, o.direction) for o in self.space.objectives]}

    def overdue(self) -> list[str]:
        """Keys of running trials past ``trial_timeout``."""
        if not self.trial_timeout:
            return []
        now = time.monotonic()
        return [key for key, r in self._running.items() if now - r.started > self.trial_timeout]

    def _record_session(self) -> None:
        self._last_beat = time.monotonic()
        self.study.set_user_attr(f"{SESSION_PREFIX}{self.session}", {
            "elapsed_s": self.elapsed(), "started": self._started_iso, **owner(),
            "beat": datetime.now(timezone.utc).isoformat()})

    def progress(self) -> Progress:
        trials = self.study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        front = self.study.best_trials if complete else []
        return Progress(complete=len(complete), failed=sum(t.state == TrialState.FAIL for t in trials),
                        running=self.running, front_size=len(front), spent=self.spent_now(trials), budget=self.budget)
