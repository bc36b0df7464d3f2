"""Optuna studies as the single source of truth: storage URLs, create/resume, reconcile, the ledger.

Stored per study (user attrs): ``autotradeoff:space`` (task, objectives, searched knobs: what must
match to resume), ``autotradeoff:fidelity``, ``autotradeoff:session:<id>`` (each search run's
elapsed wall time). Per trial: every metric as a user attr, ``charge`` (what the trial consumed),
``fail_reason``, ``runner_trial_id`` (Ray's trial id), ``autotradeoff:owner`` (host, pid of the driver).
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotradeoff.budget import Charge
from autotradeoff.errors import UsageError
from autotradeoff.space import SearchSpace

__all__ = ["default_storage", "open_storage", "create_or_resume", "load_study", "reconcile",
           "spent", "owner", "requeue", "OWNER_ATTR", "SPACE_ATTR", "FIDELITY_ATTR", "SESSION_PREFIX", "redact"]

OWNER_ATTR = "autotradeoff:owner"
SPACE_ATTR = "autotradeoff:space"
FIDELITY_ATTR = "autotradeoff:fidelity"
SESSION_PREFIX = "autotradeoff:session:"
# A search records itself on a trial within milliseconds of creating it; one RUNNING this long with no
# owner was created by a search that died in between (from any host: none of them will ever claim it).
OWNERLESS_AFTER_S = 600.0
# A live search records itself (its heartbeat) every few seconds while trials run; one on another host
# silent this long is taken for dead (its host may be gone with it), so its trials are settled from here.
SILENT_AFTER_S = 600.0
STUDIES_DIR = Path("studies")


def default_storage(study_name: str) -> str:
    """``sqlite:///studies/<study>.db`` relative to the working directory."""
    return f"sqlite:///{STUDIES_DIR / f'{study_name}.db'}"


def redact(url: str) -> str:
    """The URL with any password replaced, for messages."""
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def open_storage(url: str, *, must_exist: bool = False) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage for any SQLAlchemy URL; UsageError (one line) when it can't be opened."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        raise UsageError(f"bad storage URL {url!r}; expected an SQLAlchemy URL such as "
                         "sqlite:///studies/x.db or postgresql://user:pass@host:5432/db") from None
    engine_kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            raise UsageError(f"storage {url!r}: an in-memory SQLite database would lose the study; give a file path")
        path = Path(database)
        if must_exist and not path.is_file():
            raise UsageError(f"no study database at {path}; run `autotradeoff search` first or pass --storage")
        path.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": 60}  # wait on a busy file instead of failing
    else:
        engine_kwargs["pool_pre_ping"] = True
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        if parsed.get_backend_name() == "sqlite":
            _write_ahead_log(storage)
        return storage
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot open storage {redact(url)!r}: {reason}") from None


def absolute_url(url: str) -> str:
    """``url`` with a relative SQLite path made absolute: Ray runs trials in their own working folders,
    where ``sqlite:///studies/x.db`` would name another (new, empty) file."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or Path(parsed.database).is_absolute():
        return url
    return parsed.set(database=str(Path(parsed.database).resolve())).render_as_string(hide_password=False)


def _write_ahead_log(storage: optuna.storages.RDBStorage) -> None:
    """SQLite in WAL mode (kept in the file): readers (the dashboard, `front`) never block the writers,
    and writers of several search processes queue on the busy timeout instead of failing."""
    with storage.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA journal_mode=WAL")


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
        stored = study.user_attrs.get(SPACE_ATTR)
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
    study.set_user_attr(FIDELITY_ATTR, space.fidelity)
    study.set_user_attr("autotradeoff:space_file", space.source)
    study.set_user_attr(SPACE_ATTR, space.signature())  # last: its presence marks a complete creation


def owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def requeue(study: optuna.Study, params: dict[str, Any]) -> None:
    """Queue a config again (an interrupted trial's) so the next ask runs it before new suggestions."""
    if params:
        study.enqueue_trial(dict(params), user_attrs={"requeued": True})


def _last_beat(study: optuna.Study, session: str | None) -> datetime | None:
    """When the search run ``session`` last recorded itself (its heartbeat), if it did."""
    record = study.user_attrs.get(f"{SESSION_PREFIX}{session}") or {}
    try:
        return datetime.fromisoformat(record["beat"])
    except (KeyError, TypeError, ValueError):
        return None


def _seconds(since: datetime, until: datetime) -> float:
    """Seconds from ``since`` to ``until``; a naive time (Optuna's ``datetime_start``) is this host's local time."""
    return (until.astimezone(timezone.utc) - since.astimezone(timezone.utc)).total_seconds()


def reconcile(study: optuna.Study, finished: dict[str, dict[str, Any]] | None = None,
              store: Callable[[FrozenTrial, dict[str, Any]], bool] | None = None) -> tuple[int, int]:
    """Settle trials left RUNNING by a search process that no longer exists.

    A trial the runner finished before that process died (``finished``: runner trial id -> its last
    result, read back from Ray's result files) is stored by ``store(trial, result)``, which returns
    False when the result is not a usable one. The others are FAIL with the reason, charged for what
    they held up to the dead process's last heartbeat, and their configs queued again. A trial owned by
    another host is settled the same way only once its search's heartbeat is ``SILENT_AFTER_S`` old
    (this host can't see that process; the heartbeat is UTC, so time zones don't matter); with no
    heartbeat recorded it is left alone. A trial with no owner at all after ``OWNERLESS_AFTER_S`` is
    failed whatever the host (nothing ran: nothing is charged or queued). Returns (recovered, failed).
    """
    recovered = failed = 0
    host, now = socket.gethostname(), datetime.now(timezone.utc)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        who = trial.user_attrs.get(OWNER_ATTR) or {}
        if not who and trial.datetime_start is not None and \
                _seconds(trial.datetime_start, now) > OWNERLESS_AFTER_S:
            _fail(study, trial, f"left RUNNING with no owner for over {OWNERLESS_AFTER_S:g} s: its search died "
                                "between creating it and recording itself (nothing was run)")
            failed += 1
            continue
        beat = _last_beat(study, who.get("session"))
        if who.get("host") == host:
            if who.get("pid") == os.getpid() or _alive(int(who.get("pid", -1))):
                continue
            gone = "which is gone"
        else:
            silent = None if beat is None else _seconds(beat, now)
            if silent is None or silent <= SILENT_AFTER_S:
                continue
            gone = f"silent for {silent:.0f} s (over {SILENT_AFTER_S:g} s)"
        result = (finished or {}).get(trial.user_attrs.get("runner_trial_id", ""))
        if result is not None and store is not None and store(trial, result):
            recovered += 1
            continue
        holds = trial.user_attrs.get("holds")
        if beat is not None and holds and trial.datetime_start is not None:
            wall = max(0.0, _seconds(trial.datetime_start, beat))
            study._storage.set_trial_user_attr(trial._trial_id, "charge", Charge(wall_s=wall, **holds).as_attrs())
        _fail(study, trial, f"left RUNNING by search process {who.get('pid')} on {who.get('host')}, {gone}; "
                            "failed on resume and its config queued again")
        requeue(study, trial.params)
        failed += 1
    return recovered, failed


def _fail(study: optuna.Study, trial: FrozenTrial, reason: str) -> None:
    study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
    study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)


def spent(study: optuna.Study, trials: list[FrozenTrial] | None = None) -> dict[str, float]:
    """Budget spent so far in every unit, derived from what the study stores (never double-counted)."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    charges = [t.user_attrs["charge"] for t in trials if "charge" in t.user_attrs]
    sessions = [v.get("elapsed_s", 0.0) for k, v in study.user_attrs.items() if k.startswith(SESSION_PREFIX)]
    return {"gpu-h": sum(c["gpu_h"] for c in charges), "cpu-h": sum(c["cpu_h"] for c in charges),
            "trials": float(sum("rejected" not in t.user_attrs for t in trials if "charge" in t.user_attrs)),
            "s": float(sum(sessions))}
