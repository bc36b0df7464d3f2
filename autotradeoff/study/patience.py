"""Storage that waits out an outage: every call of a search's storage is retried with backoff while the
database is unreachable (a PostgreSQL restart or failover, a network blip, an SQLite file locked past its
busy timeout), with one line when the wait starts and one when it ends; past ``wait_s`` the call raises
``StorageUnavailable`` and the search exits (its study resumes cleanly: see ``resume.reconcile``).

Each Optuna storage call is one transaction, rolled back when the connection fails, so running it again is
safe. The one exception is a commit the server made whose answer was lost: a trial state written twice is
taken as written (``UpdateFinishedTrialError`` after a lost connection).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import BaseStorage

from autotradeoff.errors import StorageUnavailable

__all__ = ["PatientStorage", "is_outage", "DEFAULT_WAIT_S"]

log = logging.getLogger("autotradeoff")
DEFAULT_WAIT_S = 300.0
_FIRST_PAUSE_S, _LONGEST_PAUSE_S = 0.5, 10.0


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it: Optuna wraps SQLAlchemy errors) says the database is out of reach
    or locked, rather than that the request itself is wrong."""
    from sqlalchemy import exc as sa

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (sa.OperationalError, sa.InterfaceError, sa.DisconnectionError, sa.TimeoutError)):
            return True
        if isinstance(seen, sa.DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reason(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


class PatientStorage(BaseStorage):
    """``inner`` (an Optuna storage), each call retried for up to ``wait_s`` seconds of outage."""

    def __init__(self, inner: BaseStorage, *, wait_s: float = DEFAULT_WAIT_S, name: str = "storage") -> None:
        self._inner, self.wait_s, self.name = inner, float(wait_s), name
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self.gave_up: str | None = None  # the message, once a wait ran out: later calls fail at once
        self.outages: list[float] = []  # seconds each outage lasted, as this process saw it

    def __getstate__(self) -> dict[str, Any]:  # Ray Tune pickles the searcher, and with it the study's storage
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # methods beyond BaseStorage's (none that Optuna needs today)
        if name.startswith("_"):  # not set yet (copy, pickle) or private: never the inner storage's
            raise AttributeError(name)
        attr = getattr(self._inner, name)
        return self._patient(name, attr) if callable(attr) else attr

    def _patient(self, name: str, call: Callable) -> Callable:
        @functools.wraps(call)
        def patient(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, call, args, kwargs)
        return patient

    def _call(self, name: str, call: Callable, args: tuple, kwargs: dict) -> Any:
        pause, failed = _FIRST_PAUSE_S, False
        while True:
            if self.gave_up:
                raise StorageUnavailable(self.gave_up)
            started = time.monotonic()
            try:
                result = call(*args, **kwargs)
            except optuna.exceptions.UpdateFinishedTrialError:
                if failed and name == "set_trial_state_values":  # its first attempt was committed, then cut off
                    self._back()
                    return True
                raise
            except Exception as exc:
                if not is_outage(exc):
                    raise
                failed = True
                self._wait(exc, pause, started)
                pause = min(pause * 2, _LONGEST_PAUSE_S)
                continue
            self._back()
            return result

    def _wait(self, exc: BaseException, pause: float, since: float) -> None:
        """Note the outage (one line when it starts: ``since``, when the failed attempt began, which for a
        locked SQLite file is its busy timeout ago), give up past ``wait_s``, else sleep ``pause``."""
        now = time.monotonic()
        with self._lock:
            if self._down_since is None:
                self._down_since = since
                log.warning("%s unreachable (%s); retrying for up to %g s (--storage-wait)", self.name, _reason(exc), self.wait_s)
            down = now - self._down_since
            if down >= self.wait_s and not self.gave_up:
                self.gave_up = (f"{self.name} unreachable for {down:.0f} s, past --storage-wait {self.wait_s:g} s ({_reason(exc)}); "
                                "finished trials are stored: re-run the same command to resume once it is back")
        if self.gave_up:
            raise StorageUnavailable(self.gave_up)
        time.sleep(min(pause, max(0.05, self.wait_s - down)))

    def _back(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is not None:
                self.outages.append(time.monotonic() - self._down_since)
                self._down_since = None
                log.warning("%s reachable again after %.0f s; the search goes on", self.name, self.outages[-1])


def _delegate(name: str) -> Callable:
    def method(self: PatientStorage, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, getattr(self._inner, name), args, kwargs)
    method.__name__ = name
    return method


for _name in [n for n in dir(BaseStorage) if not n.startswith("_") and callable(getattr(BaseStorage, n))]:
    setattr(PatientStorage, _name, _delegate(_name))
PatientStorage.__abstractmethods__ = frozenset()
