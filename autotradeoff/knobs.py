"""Value types every layer shares: a ``Knob`` (one setting, validated in one message shape), an
``Objective`` and a ``Constraint``, and the parsers of objective and constraint specs.

A leaf module: it imports nothing of the package but ``errors``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from autotradeoff.errors import UsageError

__all__ = ["Knob", "Objective", "Constraint", "STAGES", "TRAINING_STAGES", "TEST_PREFIX", "EXIT_PREFIX", "is_test_metric",
           "refuse_test_metric", "parse_objectives", "parse_constraints"]

# The stages of a trial's pipeline, in order. A knob names the first stage it changes; knobs of the
# stages before the model is trained shape its weights, so they key every cache of trained models.
STAGES = ("data", "train", "approximate", "inference")
TRAINING_STAGES = ("data", "train")
# Metrics measured on the test split carry this prefix: they are stored and reported, never decided on.
TEST_PREFIX = "test_"
# Per-level metrics of variable-effort inference (ICPC): the share of samples answered at each level,
# exit_share_<px>px; the report draws them without importing the technique (and torch).
EXIT_PREFIX = "exit_share_"


def is_test_metric(name: str) -> bool:
    return name.startswith(TEST_PREFIX)


def refuse_test_metric(name: str, where: str) -> None:
    """UsageError when a search would decide on ``name``, a test metric (objective, constraint, pick rule)."""
    if is_test_metric(name):
        counterpart = f"val_{name[len(TEST_PREFIX):]}"
        raise UsageError(f"{where}: {name!r} is measured on the test split, which a search only reports; "
                         f"select on validation (e.g. {counterpart!r}).")


@dataclass(frozen=True)
class Knob:
    """One setting: ``kind`` int/float within [low, high] (optionally log), categorical choices, or
    text (fidelity only). ``default`` is the baseline ("off") value; ``stage`` the first pipeline stage
    the knob changes (see ``STAGES``)."""

    name: str
    kind: str
    default: Any
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None  # a searched range's grid (Optuna's step): low, low + step, ..., high
    choices: tuple = ()
    help: str = ""
    when: tuple[tuple[str, tuple], ...] = ()  # searched only if every named knob has one of the values
    stage: str = "train"

    def active(self, config: dict[str, Any]) -> bool:
        """Whether the knob matters in ``config`` (every ``when`` condition holds)."""
        return all(config.get(name) in values for name, values in self.when)

    def describe(self) -> str:
        """What values are allowed, in words: ``an int in [1, 8]``."""
        if self.kind == "categorical":
            return f"one of {', '.join(map(str, self.choices))}"
        if self.kind == "text":
            return "a non-empty text (a name or path)"
        if self.kind == "names":
            return "a list of names (module:attribute paths or registered names)"
        return f"{'an' if self.kind == 'int' else 'a'} {self.kind} in [{self.low:g}, {self.high:g}]"

    def check(self, value: Any, where: str) -> Any:
        """Return ``value`` coerced to this knob's type, or raise UsageError in the one message shape."""
        bad = UsageError(f"{where} must be {self.describe()}; got {value!r}.")
        if self.kind == "categorical":
            if value not in self.choices:
                raise bad
            return value
        if self.kind == "text":  # fidelity only (e.g. the pretrained model): never searched
            if not isinstance(value, str) or not value.strip():
                raise bad
            return value
        if self.kind == "names":  # fidelity only (plug-in techniques)
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
                raise bad
            return tuple(value)
        return self._number(value, bad)

    def _number(self, value: Any, bad: UsageError) -> int | float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if self.kind == "int" and value != int(value):
            raise bad
        value = int(value) if self.kind == "int" else float(value)
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise bad
        return value

    def extremes(self) -> tuple:
        """The values a conformance check walks: low and high, or every choice."""
        return self.choices if self.kind == "categorical" else (self.low, self.high)

    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial for a value of this (searched) knob."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        value = trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)
        return self.on_grid(value) if self.step else value

    def on_grid(self, value: float) -> int | float:
        """The point of a stepped range nearest ``value``, without float residue (0.1 + 0.05 is
        0.15000000000000002: Optuna's value; the grid's is 0.15)."""
        value = self.low + round((value - self.low) / self.step) * self.step
        return int(value) if self.kind == "int" else float(f"{value:.12g}")


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str  # "max" or "min"

    @property
    def optuna_direction(self) -> str:
        return "maximize" if self.direction == "max" else "minimize"

    def __str__(self) -> str:
        return f"{self.name}:{self.direction}"


@dataclass(frozen=True)
class Constraint:
    """A bound on one metric a config must meet, e.g. ``latency_ms <= 5`` or ``accuracy >= 0.8``."""

    metric: str
    op: str  # "<=" or ">="
    bound: float

    def excess(self, value: float) -> float:
        """How far ``value`` is past the bound (<= 0: met), Optuna's constraint convention."""
        return value - self.bound if self.op == "<=" else self.bound - value

    def violation(self, metrics: dict[str, Any]) -> str | None:
        """A one-line reason when ``metrics`` holds this metric and it breaks the bound, else None."""
        value = metrics.get(self.metric)
        if value is None or self.excess(float(value)) <= 0:
            return None
        return f"{self.metric}={float(value):.6g} breaks the constraint {self}"

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def parse_constraints(spec: Any, metrics: dict[str, str] | None, where: str) -> tuple[Constraint, ...]:
    """``["latency_ms <= 5", "params<=1e6"]`` (or one comma-separated string) -> Constraints. ``metrics``:
    the names allowed (None: any, for constraints read back from a study)."""
    if isinstance(spec, str):
        spec = [part for part in spec.split(",") if part.strip()]
    if not isinstance(spec, (list, tuple)) or not all(isinstance(entry, str) for entry in spec):
        raise UsageError(f"{where} must be a list of 'metric <= number' or 'metric >= number'; got {spec!r}.")
    out = []
    for entry in spec:
        match = _CONSTRAINT.match(entry)
        if not match:
            raise UsageError(f"{where}: bad constraint {entry.strip()!r}; write 'metric <= number' or 'metric >= number', "
                             "e.g. 'latency_ms <= 5'.")
        name, op, number = match.groups()
        if metrics is not None:
            refuse_test_metric(name, where)
        if metrics is not None and name not in metrics:
            raise UsageError(f"{where}: unknown metric {name!r} in constraint {entry.strip()!r}; choices: {', '.join(metrics)}.")
        out.append(Constraint(name, op, float(number)))
    return tuple(out)


def _objective_items(spec: Any, where: str) -> list[tuple[str, Any]]:
    """``{"accuracy": "max"}``, a list of such or of plain names, or "accuracy:max,latency_ms" -> pairs."""
    if isinstance(spec, str):
        spec = [part.strip() for part in spec.split(",") if part.strip()]
    if isinstance(spec, dict):
        return list(spec.items())
    if not isinstance(spec, (list, tuple)):  # a tuple: a task's default_objectives
        raise UsageError(f"{where} must be a mapping of metric to max/min; got {spec!r}.")
    items: list[tuple[str, Any]] = []
    for entry in spec:
        if isinstance(entry, dict) and len(entry) == 1:
            items.extend(entry.items())
        elif isinstance(entry, str):
            name, _, direction = entry.partition(":")
            items.append((name.strip(), direction.strip() or None))
        else:
            raise UsageError(f"{where} entries must be 'name' or 'name: max|min'; got {entry!r}.")
    return items


def parse_objectives(spec: Any, metrics: dict[str, str], where: str) -> tuple[Objective, ...]:
    """Objectives from a spec (see ``_objective_items``), each a known metric, at least two, none twice."""
    items = _objective_items(spec, where)
    if len(items) < 2:
        raise UsageError(f"{where} needs at least 2 objectives for a Pareto front; got {len(items)}.")
    objectives = []
    for name, direction in items:
        refuse_test_metric(name, where)
        if name not in metrics:
            raise UsageError(f"{where}: unknown metric {name!r}; choices: {', '.join(metrics)}.")
        direction = metrics[name] if direction is None else str(direction).lower()
        if direction not in ("max", "min"):
            raise UsageError(f"{where}.{name} must be max or min; got {direction!r}.")
        objectives.append(Objective(name, direction))
    if len({o.name for o in objectives}) != len(objectives):
        raise UsageError(f"{where} names a metric twice: {[o.name for o in objectives]}.")
    return tuple(objectives)
