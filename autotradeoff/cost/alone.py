"""Timing alone: on one host, a trial's timing phase never overlaps another trial's timing or work.

Every trial of a search (on this host, whatever search it belongs to) does its work inside ``working()``
and calls ``pause_point()`` between training steps and scoring batches; ``measure_latency`` times inside
``alone()``. Two host-wide lock files implement it (``flock``, released by the OS if a process dies):
- *gate*: a timing phase holds it exclusively; work may only (re)start while nobody does;
- *busy*: work holds it shared; a timing phase, once it holds the gate, takes it exclusively, so it
  starts when every other trial has reached its next pause point, and they wait there until it ends.
So timing phases are serialised host-wide, and work in flight finishes its current step first (a long
step delays a timing phase; it never overlaps it). Outside ``working()`` (a library call, a benchmark
script timing a model by hand) nothing is locked. ``AUTOTRADEOFF_TIMING_ALONE=0`` turns the protocol off
(to measure what it buys); ``AUTOTRADEOFF_LOCKS`` moves the lock files (default: a per-user folder in the
system's temporary directory, shared by every search of that user on the host).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["working", "pause_point", "alone", "enabled", "lock_dir"]

_held: dict[str, int] = {}  # this process's lock file descriptors, while inside working()


def enabled() -> bool:
    return os.environ.get("AUTOTRADEOFF_TIMING_ALONE", "1") != "0"


def lock_dir() -> Path:
    """The host-wide folder of the timing locks (and the host's reference timing, ``cost.latency``)."""
    folder = Path(os.environ.get("AUTOTRADEOFF_LOCKS") or Path(tempfile.gettempdir()) / f"autotradeoff-{os.getuid()}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _open(name: str) -> int:
    return os.open(lock_dir() / f"timing-{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)


def _start_work() -> None:
    """Wait at the gate (while a timing phase runs), then hold busy shared."""
    fcntl.flock(_held["gate"], fcntl.LOCK_SH)
    fcntl.flock(_held["busy"], fcntl.LOCK_SH)
    fcntl.flock(_held["gate"], fcntl.LOCK_UN)


@contextlib.contextmanager
def working() -> Iterator[None]:
    """A trial's work: shared with other trials' work, never beside a timing phase."""
    if not enabled() or _held:
        yield
        return
    _held.update(gate=_open("gate"), busy=_open("busy"))
    try:
        _start_work()
        yield
    finally:
        for fd in _held.values():
            os.close(fd)  # closing releases its locks
        _held.clear()


def pause_point() -> None:
    """Between steps of work: let a timing phase that is waiting start, and wait until it ends."""
    if _held:
        fcntl.flock(_held["busy"], fcntl.LOCK_UN)
        _start_work()


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """A timing phase: no other trial on this host times or works meanwhile."""
    if not _held:
        yield
        return
    fcntl.flock(_held["busy"], fcntl.LOCK_UN)  # never wait for others while holding up their timing
    fcntl.flock(_held["gate"], fcntl.LOCK_EX)  # no work (re)starts from here on
    fcntl.flock(_held["busy"], fcntl.LOCK_EX)  # work in flight reaches its pause point
    try:
        yield
    finally:
        fcntl.flock(_held["busy"], fcntl.LOCK_UN)
        fcntl.flock(_held["gate"], fcntl.LOCK_UN)
        _start_work()
