"""Search budgets: parse "20gpu-h" / "2cpu-h" / "90m" / "2h" / "40trials", charge trials, say what is left.

What each unit charges (the README's "Budget" section says the same):

* ``cpu-h``  a finished trial costs ``cpus held x wall hours``.
* ``gpu-h``  a finished trial costs ``GPU share held x wall hours``. On a machine (or Ray cluster)
  without GPUs a trial holds no GPU, so its *device share* is charged instead: the fraction of the
  cluster's CPUs it held. One gpu-h there is one hour of the whole CPU machine.
* ``s``/``m``/``h``  wall-clock time of the search itself (all ``search`` runs of the study added).
* ``trials``  number of finished trials (complete, pruned or failed).

Spent amounts are derived from what the study stores (each trial's charge, each run's elapsed time),
so resuming a study carries them over and nothing is charged twice.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from autotradeoff.errors import UsageError
from autotradeoff.study.record import Charge

__all__ = ["Budget", "Charge", "parse_budget", "parse_seconds", "UNITS"]

# unit spelled by the user -> (canonical unit, factor to that unit)
_UNIT_ALIASES: dict[str, tuple[str, float]] = {
    "gpu-h": ("gpu-h", 1.0), "gpuh": ("gpu-h", 1.0), "gpu-hours": ("gpu-h", 1.0),
    "cpu-h": ("cpu-h", 1.0), "cpuh": ("cpu-h", 1.0), "cpu-hours": ("cpu-h", 1.0),
    "s": ("s", 1.0), "sec": ("s", 1.0), "m": ("s", 60.0), "min": ("s", 60.0),
    "h": ("s", 3600.0), "trials": ("trials", 1.0), "trial": ("trials", 1.0),
}
UNITS = ("gpu-h", "cpu-h", "s", "m", "h", "trials")
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:e([+-]?\d+))?\s*([a-z-]+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    """An amount in one canonical unit: ``gpu-h``, ``cpu-h``, ``s`` (wall clock) or ``trials``."""

    amount: float
    unit: str
    text: str = ""

    def __str__(self) -> str:
        return self.text or f"{self.amount:g}{self.unit}"

    def of(self, charge: Charge) -> float:
        """The part of this budget that one trial's charge uses."""
        return {"gpu-h": charge.gpu_h, "cpu-h": charge.cpu_h, "s": 0.0, "trials": 1.0}[self.unit]

    def fmt(self, value: float) -> str:
        if self.unit == "trials":
            return f"{value:.0f} trials"
        if self.unit == "s":
            return f"{value / 60:.1f} min" if value >= 120 else f"{value:.0f} s"
        return f"{value:.3g} {self.unit}"

    def can_start(self, *, spent: float, reserved: float, per_trial: float | None) -> bool:
        """True if the budget still covers one more trial after those already running.

        ``reserved``: what the running trials are expected to cost (in this budget's unit);
        ``per_trial``: the typical (median) cost of a finished trial (None before any finished: then only the
        budget left must be positive).
        """
        left = self.amount - spent - reserved
        if self.unit == "trials":
            return left >= 1 - 1e-9
        if left <= 0:
            return False
        return per_trial is None or per_trial <= left


def parse_budget(text: str) -> Budget:
    """Parse a budget string strictly; raise UsageError naming the value and the allowed units."""
    match = _PATTERN.match(str(text))
    unit = match and _UNIT_ALIASES.get(match.group(3).lower())
    if not match or not unit:
        raise UsageError(
            f"bad budget {text!r}; expected a positive number followed by one of "
            f"{', '.join(UNITS)} (e.g. 20gpu-h, 0.05cpu-h, 90m, 2h, 40trials)")
    value = float(match.group(1) + (f"e{match.group(2)}" if match.group(2) else ""))
    canonical, factor = unit
    amount = value * factor
    if not math.isfinite(amount) or amount <= 0:
        raise UsageError(f"bad budget {text!r}; the amount must be a positive finite number")
    if canonical == "trials" and amount != int(amount):
        raise UsageError(f"bad budget {text!r}; a trial budget must be a whole number")
    return Budget(amount=amount, unit=canonical, text=str(text).strip())


def parse_seconds(text: str | float, option: str) -> float:
    """A duration such as ``300``, ``300s``, ``5m`` or ``1h`` in seconds; UsageError naming ``option`` otherwise."""
    try:
        seconds = float(text)
    except (TypeError, ValueError):
        match = _PATTERN.match(str(text))
        unit = match and _UNIT_ALIASES.get(match.group(3).lower())
        if not match or not unit or unit[0] != "s":
            raise UsageError(f"{option} {text!r}: expected a duration such as 300, 300s, 5m or 1h") from None
        seconds = float(match.group(1) + (f"e{match.group(2)}" if match.group(2) else "")) * unit[1]
    if not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"{option} {text!r}: expected a positive duration such as 300, 300s, 5m or 1h")
    return seconds
