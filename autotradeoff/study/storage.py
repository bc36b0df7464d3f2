"""Storage URLs: the default SQLite file, opening any SQLAlchemy URL as an Optuna RDB storage (one-line
errors), absolute SQLite paths for Ray workers, and passwords hidden in messages."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna

from autotradeoff.errors import UsageError
from autotradeoff.study import record
from autotradeoff.study.patience import PatientStorage

__all__ = ["STUDIES_DIR", "default_storage", "open_storage", "absolute_url", "redact"]

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


def _engine_kwargs(parsed: Any, url: str, must_exist: bool, wait_s: float | None = None) -> dict[str, Any]:
    """SQLite: a file (never in-memory) with a 60 s busy timeout (``wait_s`` when shorter); servers: connections
    pinged before use."""
    if parsed.get_backend_name() != "sqlite":
        return {"pool_pre_ping": True}
    database = parsed.database or ""
    if database in ("", ":memory:"):
        raise UsageError(f"storage {url!r}: an in-memory SQLite database would lose the study; give a file path")
    path = Path(database)
    if must_exist and not path.is_file():
        raise UsageError(f"no study database at {path}; run `autotradeoff search` first or pass --storage")
    path.parent.mkdir(parents=True, exist_ok=True)
    return {"connect_args": {"timeout": min(60.0, wait_s or 60.0)}}  # wait on a busy file instead of failing


def open_storage(url: str, *, must_exist: bool = False, wait_s: float | None = None) -> optuna.storages.BaseStorage:
    """An Optuna RDB storage for any SQLAlchemy URL; UsageError (one line) when it can't be opened. With
    ``wait_s``, once open it waits out outages up to that long (``patience.PatientStorage``); opening itself
    never waits: a storage unreachable at start is more often a wrong URL than an outage."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        raise UsageError(f"bad storage URL {url!r}; expected an SQLAlchemy URL such as "
                         "sqlite:///studies/x.db or postgresql://user:pass@host:5432/db") from None
    engine_kwargs = _engine_kwargs(parsed, url, must_exist, wait_s)
    try:
        storage = _rdb_storage(url, engine_kwargs, wal=parsed.get_backend_name() == "sqlite")
        if wait_s is None:
            return storage
        return PatientStorage(record.cached(storage), wait_s=wait_s, name=f"storage {redact(url)}")
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot open storage {redact(url)!r}: {reason}") from None


def _rdb_storage(url: str, engine_kwargs: dict, *, wal: bool, tries: int = 5) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage (``wal``: an SQLite file switched to WAL mode). Two processes opening a new database
    at once both create its tables, and the slower one fails with "table ... already exists", a duplicate schema
    version or "database is locked" (seen with SQLite: a search and a reader started together; SQLite answers a
    reader turning writer mid-race, and a switch of journal mode, at once, without its busy timeout): the schema
    is there by then, so opening again succeeds."""
    import sqlalchemy.exc

    raced = ("already exists", "alembic_version", "UNIQUE constraint failed", "duplicate key", "database is locked")
    for attempt in range(tries):
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
            if wal:
                _write_ahead_log(storage)
            return storage
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            if not any(sign in str(exc) for sign in raced) or attempt == tries - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


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
