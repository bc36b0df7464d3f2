"""Optuna studies as the single source of truth: load, create or resume (the space must match), and
reconcile trials that a dead search left RUNNING.
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotradeoff.errors import UsageError
from autotradeoff.space import SearchSpace
from autotradeoff.study import record

__all__ = ["load_study", "create_or_resume", "reconcile", "whoami", "OWNERLESS_AFTER_S", "SILENT_AFTER_S"]

# A search records itself on a trial within milliseconds of creating it; one RUNNING this long with no
# owner was created by a search that died in between (from any host: none of them will ever claim it).
OWNERLESS_AFTER_S = 600.0
# A live search records itself (its heartbeat) every few seconds while trials run; one on another host
# silent this long is taken for dead (its host may be gone with it), so its trials are settled from here.
SILENT_AFTER_S = 600.0


def load_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """An existing study; UsageError lists the studies in the storage when ``name`` isn't one."""
    names = [s.study_name for s in storage.get_all_studies()]
    if name not in names:
        raise UsageError(f"unknown study {name!r}; studies in this storage: {', '.join(names) or '(none)'}")
    return optuna.load_study(study_name=name, storage=storage)


def create_or_resume(storage: optuna.storages.BaseStorage, name: str, space: SearchSpace,
                     sampler: optuna.samplers.BaseSampler | None = None) -> tuple[optuna.Study, bool]:
    """Create the study, or resume it when it exists with the same task, objectives and knobs."""
    existing = {s.study_name for s in storage.get_all_studies()}
    if name in existing:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        stored = study.user_attrs.get(record.SPACE)
        directions = [o.optuna_direction for o in space.objectives]
        if stored is None and not study.get_trials(deepcopy=False) and study.directions == directions:
            _describe(study, space)  # a search killed while creating it: finish the creation
            return study, False
        if stored != space.signature():
            raise UsageError(f"study {name!r} exists with a different space {stored}; got {space.signature()}. "
                             "Use another --study name to search this space.")
        return study, True
    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                directions=[o.optuna_direction for o in space.objectives], load_if_exists=True)
    _describe(study, space)
    return study, False


def _describe(study: optuna.Study, space: SearchSpace) -> None:
    """Metric names, space signature and fidelity of a new study (repeatable: a creation cut short ends here)."""
    with warnings.catch_warnings():  # experimental in Optuna, but what optuna-dashboard labels axes with
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([o.name for o in space.objectives])
    study.set_user_attr(record.FIDELITY, space.fidelity)
    study.set_user_attr(record.SPACE_FILE, space.source)
    study.set_user_attr(record.SPACE, space.signature())  # last: its presence marks a complete creation


def whoami() -> dict[str, Any]:
    """This process, as a trial's owner: host and pid."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _seconds(since: datetime, until: datetime) -> float:
    """Seconds from ``since`` to ``until``; a naive time (Optuna's ``datetime_start``) is this host's local time."""
    return (until.astimezone(timezone.utc) - since.astimezone(timezone.utc)).total_seconds()


def _gone(study_attrs: dict[str, Any], who: dict[str, Any], now: datetime) -> str | None:
    """Why the search ``who`` (a trial's owner, or a session's record) counts as dead (None while it may be
    alive): its process is gone from this host, or, on another host, its heartbeat is older than ``SILENT_AFTER_S``."""
    if who.get("host") == socket.gethostname():
        if who.get("pid") == os.getpid() or _alive(int(who.get("pid", -1))):
            return None
        return "which is gone"
    beat = record.last_beat(study_attrs, who.get("session"))
    silent = None if beat is None else _seconds(beat, now)
    if silent is None or silent <= SILENT_AFTER_S:
        return None
    return f"silent for {silent:.0f} s (over {SILENT_AFTER_S:g} s)"


def _creators_gone(study_attrs: dict[str, Any], trial: FrozenTrial, now: datetime) -> int:
    """How many searches may have created an ownerless trial, when every one of them is dead (else 0).

    A search records its session (host, pid) before it creates any trial, so the creator is among the
    sessions on record: on this host those started by the trial's start (same clock), on other hosts
    all of them (their clocks may differ). Any that may still be alive keeps the trial as it is."""
    here, start = socket.gethostname(), trial.datetime_start
    candidates = {session: who for session, who in record.sessions(study_attrs).items()
                  if who.get("host") != here or start is None or _started_by(who, start)}
    if not candidates or any(_gone(study_attrs, {**who, "session": s}, now) is None for s, who in candidates.items()):
        return 0
    return len(candidates)


def _started_by(who: dict[str, Any], start: datetime) -> bool:
    """Did the session ``who`` start no later than ``start``?"""
    try:
        return _seconds(datetime.fromisoformat(who["started"]), start) >= 0
    except (KeyError, TypeError, ValueError):
        return True  # no start on record: it may be the creator


def reconcile(study: optuna.Study, finished: dict[str, dict[str, Any]] | None = None,
              store: Callable[[FrozenTrial, dict[str, Any]], bool] | None = None) -> tuple[int, int]:
    """Settle trials left RUNNING by a search process that no longer exists.

    A trial the runner finished before that process died (``finished``: runner trial id -> its last
    result, read back from Ray's result files) is stored by ``store(trial, result)``, which returns
    False when the result is not a usable one. The others are FAIL with the reason, charged for what
    they held up to the dead process's last heartbeat, and their configs queued again. A trial owned by
    another host is settled the same way only once its search's heartbeat is ``SILENT_AFTER_S`` old
    (this host can't see that process; the heartbeat is UTC, so time zones don't matter); with no
    heartbeat recorded it is left alone. A trial with no owner at all (its search died between creating
    it and recording itself on it) is failed as soon as every search that may have created it is dead,
    and whatever the host after ``OWNERLESS_AFTER_S``; nothing ran: nothing is charged or queued.
    Returns (recovered, failed).
    """
    recovered = failed = 0
    now, attrs = datetime.now(timezone.utc), study.user_attrs
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        who = record.owner(trial)
        if not who:
            creators = _creators_gone(attrs, trial, now)
            old = trial.datetime_start is not None and _seconds(trial.datetime_start, now) > OWNERLESS_AFTER_S
            if creators or old:
                why = f"every search that may have created it ({creators}) is gone" if creators else \
                    f"it is over {OWNERLESS_AFTER_S:g} s old"
                _fail(study, trial, f"left RUNNING with no owner, {why}: its search died between creating it and "
                                    "recording itself (nothing was run)")
                failed += 1
            continue
        gone = _gone(attrs, who, now)
        if gone is None:
            continue
        result = (finished or {}).get(record.runner_id(trial))
        if result is not None and store is not None and store(trial, result):
            recovered += 1
            continue
        _charge_to_last_beat(study, trial, record.last_beat(attrs, who.get("session")))
        record.interrupt(study, trial)
        _fail(study, trial, f"left RUNNING by search process {who.get('pid')} on {who.get('host')}, {gone}; "
                            "failed on resume and its config queued again")
        failed += 1
    return recovered, failed


def _charge_to_last_beat(study: optuna.Study, trial: FrozenTrial, beat: datetime | None) -> None:
    """Charge what a dead search's trial held from its start up to that search's last heartbeat."""
    holds = record.holds(trial)
    if beat is not None and holds and trial.datetime_start is not None:
        wall = max(0.0, _seconds(trial.datetime_start, beat))
        record.set_trial_attr(study, trial, record.CHARGE, record.Charge(wall_s=wall, **holds).as_attrs())


def _fail(study: optuna.Study, trial: FrozenTrial, reason: str) -> None:
    record.set_trial_attr(study, trial, record.FAIL_REASON, reason)
    study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
