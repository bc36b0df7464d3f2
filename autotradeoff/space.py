"""Search spaces: a YAML file -> validated knobs, objectives and fidelity; ``suggest(trial)`` -> config.

A task declares every knob it understands (type, hard bounds, default = its "off"/baseline value)
and its fidelity settings the same way. A YAML space picks, per knob, a range inside those bounds
or a constant; knobs it leaves out stay at the task's default. Everything is validated here, once,
with one message shape: ``<file>: knobs.<name>.high must be an int in [1, 8]; got 12.``
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from autotradeoff.errors import UsageError

__all__ = ["Knob", "Objective", "Constraint", "SearchSpace", "load_space", "parse_objectives", "parse_constraints",
           "space_dirs", "list_spaces"]

_KINDS = ("int", "float", "categorical")


@dataclass(frozen=True)
class Knob:
    """One setting: ``kind`` int/float within [low, high] (optionally log), or categorical choices."""

    name: str
    kind: str
    default: Any
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()
    help: str = ""
    when: tuple[tuple[str, tuple], ...] = ()  # searched only if every named knob has one of the values

    def active(self, config: dict[str, Any]) -> bool:
        return all(config.get(name) in values for name, values in self.when)

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"one of {', '.join(map(str, self.choices))}"
        if self.kind == "text":
            return "a non-empty text (a name or path)"
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
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if self.kind == "int" and value != int(value):
            raise bad
        value = int(value) if self.kind == "int" else float(value)
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise bad
        return value

    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial for a value of this (searched) knob."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


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


_CONSTRAINT = re.compile(r"^\s*([A-Za-z_]\w*)\s*(<=|>=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def parse_constraints(spec: Any, metrics: dict[str, str], where: str) -> tuple[Constraint, ...]:
    """``["latency_ms <= 5", "params<=1e6"]`` (or one comma-separated string) -> Constraints."""
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
        if name not in metrics:
            raise UsageError(f"{where}: unknown metric {name!r} in constraint {entry.strip()!r}; choices: {', '.join(metrics)}.")
        out.append(Constraint(name, op, float(number)))
    return tuple(out)


@dataclass(frozen=True)
class SearchSpace:
    """Validated space: searched knobs, constants, objectives and fidelity for one task."""

    task: str
    name: str
    searched: dict[str, Knob]
    constants: dict[str, Any]
    objectives: tuple[Objective, ...]
    fidelity: dict[str, Any]
    source: str = ""
    task_knobs: dict[str, Knob] = field(default_factory=dict, repr=False)
    metrics: tuple[str, ...] = ()  # every metric the task reports; only these are stored per trial
    metric_prefixes: tuple[str, ...] = ()  # and those starting with one of these (per-level shares, say)
    references: tuple[dict[str, Any], ...] = ()  # further named points enqueued after the baseline
    constraints: tuple[Constraint, ...] = ()  # bounds a config must meet; checked before training when possible

    def reference_configs(self) -> list[dict[str, Any]]:
        """The baseline, then each ``baselines:`` entry of the YAML (the rest of its knobs at baseline)."""
        return [self.baseline(), *({**self.baseline(), **ref} for ref in self.references)]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Define-by-run: the full config for one Optuna trial (searched knobs + constants).

        A conditional knob (``when:``) whose condition fails is not asked for; it keeps the task's
        default, so the config stays complete and Optuna only models the knobs that mattered.
        """
        config = dict(self.constants)
        for name, knob in self.searched.items():  # conditional knobs come after their parents
            config[name] = knob.suggest(trial) if knob.active(config) else self.task_knobs[name].default
        return config

    def baseline(self) -> dict[str, Any]:
        """The searched knobs at the task's default ("off") values, clipped into this space."""
        config = {}
        for name, knob in self.searched.items():
            value = self.task_knobs[name].default
            if knob.kind == "categorical":
                value = value if value in knob.choices else knob.choices[0]
            else:
                value = min(max(value, knob.low), knob.high)
            config[name] = value
        return config

    def signature(self) -> dict[str, Any]:
        """What must match for a stored study to be resumed with this space."""
        return {"task": self.task, "objectives": [str(o) for o in self.objectives],
                "knobs": sorted(self.searched)}


def space_dirs() -> list[Path]:
    """Where named spaces are looked for, first match wins."""
    package = Path(__file__).resolve().parent
    # ./search_spaces, the checkout's (editable install), the copy inside an installed wheel
    dirs = [Path.cwd() / "search_spaces", package.parent / "search_spaces", package / "search_spaces"]
    return [d for i, d in enumerate(dirs) if d.is_dir() and d.resolve() not in {x.resolve() for x in dirs[:i]}]


def list_spaces() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for directory in space_dirs():
        for path in sorted(directory.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def _resolve(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UsageError(f"search space file {name_or_path!r} does not exist")
        return path
    spaces = list_spaces()
    if name_or_path not in spaces:
        raise UsageError(f"unknown search space {name_or_path!r}; choices: {', '.join(spaces) or '(none found)'}")
    return spaces[name_or_path]


def parse_objectives(spec: Any, metrics: dict[str, str], where: str) -> tuple[Objective, ...]:
    """``{"accuracy": "max", ...}``, a list of such/plain names, or "accuracy:max,latency_ms" -> Objectives."""
    if isinstance(spec, str):
        spec = [part.strip() for part in spec.split(",") if part.strip()]
    items: list[tuple[str, Any]] = []
    if isinstance(spec, dict):
        items = list(spec.items())
    elif isinstance(spec, (list, tuple)):  # a tuple: a task's default_objectives
        for entry in spec:
            if isinstance(entry, dict) and len(entry) == 1:
                items.extend(entry.items())
            elif isinstance(entry, str):
                name, _, direction = entry.partition(":")
                items.append((name.strip(), direction.strip() or None))
            else:
                raise UsageError(f"{where} entries must be 'name' or 'name: max|min'; got {entry!r}.")
    else:
        raise UsageError(f"{where} must be a mapping of metric to max/min; got {spec!r}.")
    if len(items) < 2:
        raise UsageError(f"{where} needs at least 2 objectives for a Pareto front; got {len(items)}.")
    objectives = []
    for name, direction in items:
        if name not in metrics:
            raise UsageError(f"{where}: unknown metric {name!r}; choices: {', '.join(metrics)}.")
        direction = metrics[name] if direction is None else str(direction).lower()
        if direction not in ("max", "min"):
            raise UsageError(f"{where}.{name} must be max or min; got {direction!r}.")
        objectives.append(Objective(name, direction))
    if len({o.name for o in objectives}) != len(objectives):
        raise UsageError(f"{where} names a metric twice: {[o.name for o in objectives]}.")
    return tuple(objectives)


def _knob_range(knob: Knob, spec: Any, where: str) -> tuple[Knob | None, Any]:
    """A YAML knob entry -> (searched Knob, None) or (None, constant value)."""
    if not isinstance(spec, dict):
        return None, knob.check(spec, where)
    allowed = {"value", "when"} | ({"choices"} if knob.kind == "categorical" else {"low", "high", "log"})
    unknown = set(spec) - allowed
    if unknown:
        raise UsageError(f"{where}: unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(allowed))}.")
    if "value" in spec:
        if len(spec) > 1 or "when" in spec:
            raise UsageError(f"{where}: 'value' fixes the knob and cannot be combined with {sorted(set(spec) - {'value'})}.")
        return None, knob.check(spec["value"], f"{where}.value")
    if knob.kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UsageError(f"{where}.choices must be a non-empty list of {knob.describe()}; got {choices!r}.")
        checked = tuple(knob.check(c, f"{where}.choices[{i}]") for i, c in enumerate(choices))
        if len(set(checked)) != len(checked):
            raise UsageError(f"{where}.choices has duplicates: {list(checked)}.")
        return replace(knob, choices=checked), None
    missing = [key for key in ("low", "high") if key not in spec]
    if missing:
        raise UsageError(f"{where}: missing {missing[0]!r}; a range needs low and high (or 'value' for a constant).")
    low, high = knob.check(spec["low"], f"{where}.low"), knob.check(spec["high"], f"{where}.high")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise UsageError(f"{where}.log must be true or false; got {log!r}.")
    if low > high:
        raise UsageError(f"{where}: low must be <= high; got low={low!r}, high={high!r}.")
    if log and low <= 0:
        raise UsageError(f"{where}: a log range needs low > 0; got low={low!r}.")
    if low == high:
        return None, low
    return replace(knob, low=low, high=high, log=log), None


def _conditions(spec: Any, where: str, known: dict[str, Knob]) -> tuple[tuple[str, tuple], ...]:
    """``when: {model: [gat]}`` -> (("model", ("gat",)),); parents must come earlier in the YAML."""
    if not isinstance(spec, dict) or not spec:
        raise UsageError(f"{where}.when must map an earlier knob to its value(s), e.g. {{model: [gat]}}; got {spec!r}.")
    out = []
    for parent, values in spec.items():
        if parent not in known:
            raise UsageError(f"{where}.when: {parent!r} is not a knob listed before it; choices: {', '.join(known) or '(none)'}.")
        values = values if isinstance(values, list) else [values]
        out.append((parent, tuple(known[parent].check(v, f"{where}.when.{parent}") for v in values)))
    return tuple(out)


def build_space(data: Any, *, source: str, task: Any, objectives_override: str | None = None,
                constraints: Sequence[str] = ()) -> SearchSpace:
    """Validate parsed YAML ``data`` against ``task``'s declared knobs, fidelity and metrics."""
    if not isinstance(data, dict):
        raise UsageError(f"{source}: must be a mapping with keys task, objectives, knobs, fidelity; got {type(data).__name__}.")
    allowed = {"task", "description", "objectives", "knobs", "fidelity", "baselines", "constraints"}
    unknown = set(data) - allowed
    if unknown:
        raise UsageError(f"{source}: unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(allowed))}.")
    knobs_spec = data.get("knobs") or {}
    fidelity_spec = data.get("fidelity") or {}
    for key, value in (("knobs", knobs_spec), ("fidelity", fidelity_spec)):
        if not isinstance(value, dict):
            raise UsageError(f"{source}: {key} must be a mapping; got {value!r}.")
    searched, constants = {}, {}
    for name, spec in knobs_spec.items():
        if name not in task.knobs:
            raise UsageError(f"{source}: unknown knob {name!r} for task {task.name}; choices: {', '.join(task.knobs)}.")
        knob, value = _knob_range(task.knobs[name], spec, f"{source}: knobs.{name}")
        if knob is not None and isinstance(spec, dict) and "when" in spec:
            known = {n: task.knobs[n] for n in (*constants, *searched)}
            knob = replace(knob, when=_conditions(spec["when"], f"{source}: knobs.{name}", known))
        if knob is None:
            constants[name] = value
        else:
            searched[name] = knob
    if not searched:
        raise UsageError(f"{source}: knobs must search at least one knob (a range or choices); all are constants.")
    fidelity = {}
    for name, value in fidelity_spec.items():
        if name not in task.fidelity:
            raise UsageError(f"{source}: unknown fidelity setting {name!r} for task {task.name}; choices: {', '.join(task.fidelity)}.")
        fidelity[name] = task.fidelity[name].check(value, f"{source}: fidelity.{name}")
    objectives = parse_objectives(
        objectives_override if objectives_override is not None else data.get("objectives", task.default_objectives),
        task.metrics, "--objectives" if objectives_override is not None else f"{source}: objectives")
    return SearchSpace(task=task.name, name=Path(source).stem, searched=searched, constants=constants,
                       objectives=objectives, fidelity=task.fill_fidelity(fidelity), source=source,
                       task_knobs=dict(task.knobs), metrics=tuple(task.metrics),
                       metric_prefixes=tuple(task.metric_prefixes),
                       references=_references(data.get("baselines") or [], source, searched),
                       constraints=(*parse_constraints(data.get("constraints") or [], task.metrics, f"{source}: constraints"),
                                    *parse_constraints(list(constraints), task.metrics, "--constraint")))


def _references(spec: Any, source: str, searched: dict[str, Knob]) -> tuple[dict[str, Any], ...]:
    """``baselines: [{stages: 4}]``: reference points (e.g. plain self-training) the search starts with."""
    if not isinstance(spec, list) or not all(isinstance(entry, dict) for entry in spec):
        raise UsageError(f"{source}: baselines must be a list of mappings of searched knobs to values; got {spec!r}.")
    references = []
    for i, entry in enumerate(spec):
        for name in entry:
            if name not in searched:
                raise UsageError(f"{source}: baselines[{i}].{name} is not a searched knob; choices: {', '.join(searched)}.")
        references.append({name: searched[name].check(value, f"{source}: baselines[{i}].{name}") for name, value in entry.items()})
    return tuple(references)


def load_space(name_or_path: str, *, task_name: str | None = None, objectives: str | None = None,
               constraints: Sequence[str] = ()) -> SearchSpace:
    """Load and validate a space by name (``cora``) or path; check it belongs to ``task_name``."""
    from autotradeoff.tasks import get_task

    path = _resolve(name_or_path)
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", exc)).split())  # one line, whatever the parser said
        raise UsageError(f"{source}:{where} is not valid YAML ({problem}).") from None
    if not isinstance(data, dict) or "task" not in data:
        raise UsageError(f"{source}: missing 'task'; a search space names the task it searches.")
    task = get_task(str(data["task"]))
    if task_name is not None and task.name != task_name:
        raise UsageError(f"{source}: is a space for task {task.name!r}, not {task_name!r}.")
    return build_space(data, source=source, task=task, objectives_override=objectives, constraints=constraints)
