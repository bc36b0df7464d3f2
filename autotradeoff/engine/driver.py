"""Ask/tell between a runner and the study: budget gating, charging, metrics and failures stored.

The driver knows nothing of Ray: the Ray runner and the in-process runner both call ``ask`` for a
config and ``tell`` with what the trial returned, so every rule lives here once.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotradeoff.engine.budget import Budget, Charge
from autotradeoff.engine.stopping import REJECTED, SHARE, STOPPED, Judge, work_scale
from autotradeoff.front import pareto
from autotradeoff.space import SearchSpace
from autotradeoff.study import record
from autotradeoff.study.resume import whoami

__all__ = ["SearchDriver", "Progress", "REJECTED_STREAK"]

REJECTED_STREAK = 50  # configs in a row rejected before training that end a search (``_rejected_streak``)

log = logging.getLogger("autotradeoff")


@dataclass
class Progress:
    complete: int
    failed: int  # for a reason of the config's own (an exception, NaN, out of memory, its time limit)
    running: int
    front_size: int
    spent: float
    budget: Budget
    interrupted: int = 0  # failed because the search or its worker died; their configs were re-run
    degenerate: int = 0  # complete, but predicting like a constant: off the front
    warnings: list[str] = field(default_factory=list)  # lines for the user, oldest first

    @property
    def left(self) -> float:
        return max(0.0, self.budget.amount - self.spent)


@dataclass
class _Running:
    trial: optuna.Trial
    started: float
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Tally:
    """Running totals over the finished trials, each trial added once: a finished trial no longer changes
    (Optuna refuses to update one), so an ask in a study of thousands of trials weighs only the trials that
    finished since the previous ask instead of summing them all again (issue 19's engine overhead)."""

    seen: set[int] = field(default_factory=set)
    spent: dict[str, float] = field(default_factory=lambda: {"gpu-h": 0.0, "cpu-h": 0.0, "trials": 0.0})  # record.spent's
    full: list[dict] = field(default_factory=list)  # charges of counted trials that did all their work
    partial: list[dict] = field(default_factory=list)  # charges of counted trials stopped early
    complete: int = 0
    failed: int = 0
    interrupted: int = 0
    degenerate: int = 0
    streak: int = 0  # configs rejected before training in a row, in the order they finished
    fresh: list[FrozenTrial] = field(default_factory=list)  # complete trials added since the front last took them
    done: int = 0  # trials[:done] are all finished and added (the study's trials come sorted by number)

    def add(self, trials: list[FrozenTrial]) -> None:
        """Add the trials finished since the last call; ``trials`` as the study returns them, sorted by number."""
        for trial in trials[self.done:]:
            if trial.number in self.seen or not trial.state.is_finished():
                continue
            self.seen.add(trial.number)
            if trial.state == TrialState.COMPLETE:
                self.fresh.append(trial)
            for unit, value in record.spent_by(trial).items():
                self.spent[unit] += value
            if record.counts_as_trial(trial):
                (self.full if record.work_share(trial) >= 1.0 else self.partial).append(record.charge(trial))
            self.complete += trial.state == TrialState.COMPLETE
            self.interrupted += record.was_interrupted(trial)
            self.failed += trial.state == TrialState.FAIL and not record.was_interrupted(trial)
            self.degenerate += trial.state == TrialState.COMPLETE and bool(record.degenerate(trial))
            self.streak = self.streak + 1 if record.was_rejected(trial) else 0
        while self.done < len(trials) and trials[self.done].number in self.seen:
            self.done += 1


@dataclass
class SearchDriver:
    """Hands out configs while the budget covers them and records every outcome in the study.

    ``resources``: what one trial holds ({"cpu": c, "gpu": g}); ``cluster_cpus``: all CPUs the runner
    can use (a trial's device share, charged as gpu-h when no GPU exists, is ``c / cluster_cpus``).
    ``clock``: seconds, for charges and the search's elapsed time (the simulated clock of ``engine.simulate``
    for tasks that look their results up in a table; the heartbeat always keeps real time).
    """

    study: optuna.Study
    space: SearchSpace
    budget: Budget
    resources: dict[str, float]
    cluster_cpus: float
    trial_timeout: float | None = None  # seconds a trial may run before the runner stops it
    early_stop: bool = True  # trials of tasks with checkpoints may be stopped at a rung (``stopping``)
    storage_url: str | None = None  # for Ray workers' early-stopping decisions
    storage_wait: float | None = None  # seconds the workers' storage waits out an outage (the study's storage does too)
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    learning_settings: tuple[str, ...] = ()  # named by the warning when the baseline learns nothing
    warnings: list[str] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic
    _running: dict[str, _Running] = field(default_factory=dict)
    _last_beat: float = 0.0
    _started: float = 0.0
    _previous_s: float = 0.0
    _started_iso: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    _front: list[dict] = field(default_factory=list)  # the front as ``progress`` last saw it
    _tally: _Tally = field(default_factory=_Tally)

    def __post_init__(self) -> None:
        self._started = self.clock()
        self._previous_s = record.spent(self.study)["s"]
        self._record_session()

    # --- budget -----------------------------------------------------------------------------
    def spent_now(self, trials: list | None = None) -> float:
        """Budget spent so far; ``trials`` (already read from the study) saves reading them again. The sums of
        ``record.spent``, of the same per-trial ``record.spent_by``, kept as running totals (``_Tally``)."""
        if self.budget.unit == "s":
            return self._previous_s + self.elapsed()
        self._tally.add(self.study.get_trials(deepcopy=False) if trials is None else trials)
        return self._tally.spent[self.budget.unit]

    def elapsed(self) -> float:
        return self.clock() - self._started

    def _per_trial(self) -> float | None:
        """Typical (median) cost of a finished trial in the budget's unit (wall seconds for wall-clock
        budgets). Median, not mean: costs are heavy-tailed where a stage is cached (the first trial with
        new training knobs fine-tunes, later ones reuse it), and the mean stopped SST-2 searches with
        room left for several typical trials. Configs rejected before training are not typical trials, nor
        trials stopped early (a new trial may run to its end): the median is over trials that did, while any did."""
        charges = self._tally.full or self._tally.partial
        if not charges:
            return None
        key = {"gpu-h": "gpu_h", "cpu-h": "cpu_h", "s": "wall_s", "trials": None}[self.budget.unit]
        return 1.0 if key is None else statistics.median(c[key] for c in charges)

    def can_start(self) -> bool:
        trials = self.study.get_trials(deepcopy=False)  # read once per ask: spent and median come from it
        self._tally.add(trials)
        if self._rejected_streak() >= REJECTED_STREAK:
            return False
        per_trial = self._per_trial()
        if self.budget.unit == "s":  # trials run side by side: only the clock matters
            return self.spent_now() + (per_trial or 0.0) <= self.budget.amount
        return self.budget.can_start(spent=self.spent_now(trials), reserved=self._reserved(per_trial), per_trial=per_trial)

    def _rejected_streak(self) -> int:
        """How many of the latest finished trials in a row were configs the constraints rejected before training.
        They cost nothing and use none of a budget, so a sampler that keeps proposing them (one blind to PRUNED
        trials proposes the same config again and again) would never end the search: at ``REJECTED_STREAK`` in
        a row it ends, with a warning that says why."""
        streak = self._tally.streak
        if streak >= REJECTED_STREAK:
            line = (f"the search ended early: the sampler proposed {streak} configs in a row that the constraints reject "
                    "(loosen them; a sampler passed through the Python API must see PRUNED trials, as "
                    "engine.samplers.SeesRejected lets a GP or NSGA-II do)")
            if line not in self.warnings:
                self.warnings.append(line)
                log.warning(line)
        return streak

    def _reserved(self, per_trial: float | None) -> float:
        """Expected cost of the running trials: each at least the median, or what it has used so far."""
        if self.budget.unit == "trials":
            return float(len(self._running))
        now = self.clock()
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
        # runner id and owner first: a search killed while the sampler works (a GP takes a second)
        # still owns its trial, so the next run can settle it, and an owned trial always names its runner
        # id (killed between the two writes, the trial has no owner: failed later as one that never ran)
        if key:
            trial.set_user_attr(record.RUNNER_ID, key)
        trial.set_user_attr(record.OWNER, {**whoami(), "session": self.session})
        config = self.space.suggest(trial)
        trial.set_user_attr(record.CONFIG, config)  # constants too, so export/trial can replay it whole
        charge = self._charge(0.0)  # what it holds, so a resume can charge it if this process dies
        trial.set_user_attr(record.HOLDS, {"cpus": charge.cpus, "gpus": charge.gpus, "device_share": charge.device_share})
        self._running[key] = _Running(trial, self.clock(), config)
        self._record_session()  # a beat after every start: a resume charges each trial of a killed search from it on
        return config

    def tell(self, key: str, metrics: dict[str, Any] | None, *, error: str | None = None, retry: bool = False,
             interrupted: bool = False) -> int | None:
        """Store a finished trial: COMPLETE with all metrics, or FAIL with ``error``. Returns its number.
        ``retry``: the failure may be the machine's, not the config's (a killed worker): queue the config
        again, once (a config whose re-run dies the same way is not retried forever, and then counts).
        ``interrupted``: the search itself stopped the trial (Ctrl-C, its runner failed): always queued again.
        A trial queued again is marked interrupted: under a ``trials`` budget its re-run counts, not it."""
        running = self._running.pop(key, None)
        if running is None:
            return None
        trial = running.trial
        try:
            trial.set_user_attr(record.CHARGE, self._charge(self.clock() - running.started).as_attrs())
        except optuna.exceptions.UpdateFinishedTrialError:
            # another search settled it while this one was silent past SILENT_AFTER_S (suspended,
            # storage out of reach): what it stored stands, this result is dropped
            log.warning("trial %d was settled by another search while this one was silent; its result is not stored",
                        trial.number)
            return None
        metrics, values = metrics or {}, None
        early = metrics.get(REJECTED) or metrics.get(STOPPED)
        if error is None and not early:
            error, values = self._objective_values(metrics)
        if error is not None:
            self._fail(trial, error, requeue=interrupted or (retry and not record.was_requeued(trial)))
        elif early:  # rejected before training / stopped at a rung: PRUNED, off the front
            self._store_metrics(trial, metrics)
            trial.set_user_attr(record.REJECTED if REJECTED in metrics else record.STOPPED, early)
            if SHARE in metrics:  # a trials budget counts the share of its work a stopped trial did
                trial.set_user_attr(record.WORK_SHARE, float(metrics[SHARE]))
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self._store_metrics(trial, metrics)
            self._flag_degenerate(trial, metrics)
            self.study.tell(trial, values)
        self._record_session()
        return trial.number

    def _flag_degenerate(self, trial: optuna.Trial, metrics: dict[str, Any]) -> None:
        """A model that predicts like a constant is stored with the reason, off the front and the picks; when
        it is the baseline, the search says in one line that the fidelity is too small to learn anything."""
        if metrics.get("degenerate", 0.0) < 0.5:
            return
        trial.set_user_attr(record.DEGENERATE, (
            f"predicts like a constant: {metrics.get('val_top_prediction_share', 0):.0%} of validation predictions in "
            f"one class; a constant predictor scores {metrics.get('val_constant_score', float('nan')):.4g}"))
        if record.is_baseline(trial):
            settings = {**self.space.fidelity, **record.config(trial)}
            named = ", ".join(f"{k}={settings[k]}" for k in self.learning_settings if k in settings)
            self.warnings.append(f"the baseline (trial {trial.number}) learns nothing at this fidelity: {named}; raise them "
                                 "with --fidelity or the space's fidelity:")
            log.warning(self.warnings[-1])

    def _fail(self, trial: optuna.Trial, error: str, *, requeue: bool) -> None:
        trial.set_user_attr(record.FAIL_REASON, error[:2000])
        if requeue:
            record.interrupt(self.study, trial)
        self.study.tell(trial, state=TrialState.FAIL)

    def _store_metrics(self, trial: optuna.Trial | FrozenTrial, metrics: dict[str, Any]) -> None:
        """The task's metrics (not the runner's own fields) and the trial's wall time."""
        record.store_metrics(self.study, trial, {
            name: value for name, value in metrics.items()
            if name in self.space.metrics or name == "trial_wall_s" or name.startswith(self.space.metric_prefixes)})

    def recover(self, trial: FrozenTrial, result: dict[str, Any]) -> bool:
        """Store the result the runner kept for a trial whose search process died before telling it
        (``study.reconcile``); False when it is no complete result. Charged by the runner's own clock."""
        if "autotradeoff_error" in result:
            return False
        early = result.get(REJECTED) or result.get(STOPPED)  # rejected or stopped at a rung: PRUNED, as ``tell`` stores it
        error, values = (None, None) if early else self._objective_values(result)
        if error is not None:
            return False
        holds = record.holds(trial)
        wall = float(result.get("time_total_s", result.get("trial_wall_s", 0.0)))
        charge = Charge(wall_s=wall, **holds) if holds else self._charge(wall)
        record.set_trial_attr(self.study, trial, record.CHARGE, charge.as_attrs())
        self._store_metrics(trial, result)
        record.set_trial_attr(self.study, trial, record.RECOVERED, "from the runner's results after its search process died")
        if early:
            record.set_trial_attr(self.study, trial, record.REJECTED if result.get(REJECTED) else record.STOPPED, early)
            if SHARE in result:
                record.set_trial_attr(self.study, trial, record.WORK_SHARE, float(result[SHARE]))
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
        for key in list(self._running):
            self.tell(key, None, error=reason, interrupted=True)
        self._record_session()

    def heartbeat(self, every_s: float = 5.0) -> None:
        """Record this run's elapsed time now and then while trials run, so that if this process is
        killed, a resume can charge its unfinished trials up to the last beat (see ``study.reconcile``)."""
        if time.monotonic() - self._last_beat >= every_s:
            self._record_session()

    def trial_id(self, key: str) -> int:
        """The storage id of the running trial ``key`` (Ray workers take early-stopping decisions with it)."""
        return record.trial_id(self._running[key].trial)

    def judge(self, key: str) -> Callable[[dict[str, float]], Judge] | None:
        """Early-stopping decisions for the running trial ``key`` (None when switched off)."""
        if not self.early_stop:
            return None
        objectives = [(o.name, o.direction) for o in self.space.objectives]
        scale = work_scale(self._running[key].config, self.space.work)
        return lambda known: Judge(record.storage_of(self.study), self.study.study_name, self.trial_id(key), objectives,
                                   known, scale=scale)

    def stopping_spec(self) -> dict[str, Any] | None:
        """What a Ray worker needs to build the same ``Judge`` against the study's storage."""
        if not self.early_stop or not self.storage_url:
            return None
        return {"url": self.storage_url, "study": self.study.study_name, "work": self.space.work,
                "wait_s": self.storage_wait,
                "objectives": [(o.name, o.direction) for o in self.space.objectives]}

    def overdue(self) -> list[str]:
        """Keys of running trials past ``trial_timeout``."""
        if not self.trial_timeout:
            return []
        now = self.clock()
        return [key for key, r in self._running.items() if now - r.started > self.trial_timeout]

    def _record_session(self) -> None:
        self._last_beat = time.monotonic()
        record.write_session(self.study, self.session, {
            "elapsed_s": self.elapsed(), "started": self._started_iso, **whoami(),
            "beat": datetime.now(timezone.utc).isoformat()})

    def progress(self) -> Progress:
        trials = self.study.get_trials(deepcopy=False)
        self._tally.add(trials)
        spent, tally = self.spent_now(trials), self._tally
        return Progress(complete=tally.complete, failed=tally.failed, running=self.running,
                        front_size=len(self._grow_front()), spent=spent, budget=self.budget,
                        interrupted=tally.interrupted, degenerate=tally.degenerate, warnings=list(self.warnings))

    def _grow_front(self) -> list[dict]:
        """The front for the progress line, grown by the trials completed since the last call: weighing only
        the new ones against it keeps each call short in a study of thousands of trials (``front``/``report``
        weigh every trial; with noise ties the two may differ by a point)."""
        new, self._tally.fresh = self._tally.fresh, []
        if new:
            self._front = pareto.front(self._front + pareto.rows_of(self.study, new), self.space.objectives)
        return self._front
