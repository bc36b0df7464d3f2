"""Search spaces: YAML -> validated knobs, objectives, constraints and fidelity; ``suggest(trial)`` -> config.

A task declares every knob it understands (type, hard bounds, default = its "off"/baseline value)
and its fidelity settings the same way. A YAML space picks, per knob, a range inside those bounds
or a constant; knobs it leaves out stay at the task's default. Everything is validated here, once,
with one message shape: ``<file>: knobs.<name>.high must be an int in [1, 8]; got 12.`` This module
knows no task by name: ``presets`` resolves a name to its task and space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from autotradeoff.errors import UsageError
from autotradeoff.knobs import Constraint, Knob, Objective, parse_constraints, parse_objectives

__all__ = ["SearchSpace", "build_space", "read_space", "space_path", "space_dirs", "list_spaces"]

_KEYS = {"task", "description", "objectives", "knobs", "fidelity", "baselines", "constraints", "techniques"}


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
    work: tuple[str, float] | None = None  # (the task's work knob, its highest value) when searched: rungs are absolute

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
                value = knob.on_grid(value) if knob.step else value
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


def space_path(name_or_path: str) -> Path:
    """The YAML file of a space given by name (``cora``) or path; UsageError lists the named ones."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UsageError(f"search space file {name_or_path!r} does not exist")
        return path
    spaces = list_spaces()
    if name_or_path not in spaces:
        raise UsageError(f"unknown search space {name_or_path!r}; choices: {', '.join(spaces) or '(none found)'}")
    return spaces[name_or_path]


def _knob_range(knob: Knob, spec: Any, where: str) -> tuple[Knob | None, Any]:
    """A YAML knob entry -> (searched Knob, None) or (None, constant value)."""
    if not isinstance(spec, dict):
        return None, knob.check(spec, where)
    allowed = {"value", "when"} | ({"choices"} if knob.kind == "categorical" else {"low", "high", "log", "step"})
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
    return replace(knob, low=low, high=high, log=log, step=_step(knob, spec, low, high, where)), None


def _step(knob: Knob, spec: dict[str, Any], low: float, high: float, where: str) -> float | None:
    """A range's ``step`` (Optuna's: values low, low + step, ..., high), checked; None without one."""
    if "step" not in spec:
        return None
    step = spec["step"]
    kind = "an int" if knob.kind == "int" else "a number"
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0 or (knob.kind == "int" and step != int(step)):
        raise UsageError(f"{where}.step must be {kind} > 0; got {step!r}.")
    if spec.get("log", False):
        raise UsageError(f"{where}: step and log cannot be combined (Optuna samples a log range without a grid).")
    steps = (high - low) / step
    if abs(steps - round(steps)) > 1e-9 * max(1.0, steps):
        raise UsageError(f"{where}: high - low ({high - low:g}) must be a whole number of steps of {step:g}.")
    return int(step) if knob.kind == "int" else float(step)


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


def read_space(name_or_path: str) -> tuple[str, dict[str, Any]]:
    """(source path, parsed YAML) of a space; one-line errors for a bad file or a missing ``task``."""
    path = space_path(name_or_path)
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
    return source, data


def _mapping(data: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise UsageError(f"{source}: {key} must be a mapping; got {value!r}.")
    return value


def _knobs(spec: dict[str, Any], task: Any, source: str) -> tuple[dict[str, Knob], dict[str, Any]]:
    """(searched knobs, constants) of a space's ``knobs:`` mapping."""
    searched, constants = {}, {}
    for name, entry in spec.items():
        if name not in task.knobs:
            raise UsageError(f"{source}: unknown knob {name!r} for task {task.name}; choices: {', '.join(task.knobs)}.")
        knob, value = _knob_range(task.knobs[name], entry, f"{source}: knobs.{name}")
        if knob is not None and isinstance(entry, dict) and "when" in entry:
            known = {n: task.knobs[n] for n in (*constants, *searched)}
            knob = replace(knob, when=_conditions(entry["when"], f"{source}: knobs.{name}", known))
        if knob is None:
            constants[name] = value
        else:
            searched[name] = knob
    if not searched:
        raise UsageError(f"{source}: knobs must search at least one knob (a range or choices); all are constants.")
    return searched, constants


def _fidelity(data: dict[str, Any], task: Any, source: str) -> dict[str, Any]:
    """The space's fidelity (its ``techniques:`` among it), validated and completed with the task's defaults."""
    given = dict(_mapping(data, "fidelity", source))
    if data.get("techniques"):
        given["techniques"] = data["techniques"]
    fidelity = {}
    for name, value in given.items():
        if name not in task.fidelity:
            raise UsageError(f"{source}: unknown fidelity setting {name!r} for task {task.name}; choices: {', '.join(task.fidelity)}.")
        fidelity[name] = task.fidelity[name].check(value, f"{source}: fidelity.{name}")
    return task.fill_fidelity(fidelity)


def build_space(data: Any, *, source: str, task: Any, objectives_override: str | None = None,
                constraints: Sequence[str] = ()) -> SearchSpace:
    """Validate parsed YAML ``data`` against ``task``'s declared knobs, fidelity and metrics. ``task`` must
    already hold the plug-in techniques the YAML's ``techniques:`` lists (``presets.load_space`` does that)."""
    if not isinstance(data, dict):
        raise UsageError(f"{source}: must be a mapping with keys task, objectives, knobs, fidelity; got {type(data).__name__}.")
    unknown = set(data) - _KEYS
    if unknown:
        raise UsageError(f"{source}: unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(_KEYS))}.")
    searched, constants = _knobs(_mapping(data, "knobs", source), task, source)
    objectives = parse_objectives(
        objectives_override if objectives_override is not None else data.get("objectives", task.default_objectives),
        task.metrics, "--objectives" if objectives_override is not None else f"{source}: objectives")
    return SearchSpace(task=task.name, name=Path(source).stem, searched=searched, constants=constants,
                       work=_work(searched, getattr(task, "work_knob", None)),
                       objectives=objectives, fidelity=_fidelity(data, task, source), source=source,
                       task_knobs=dict(task.knobs), metrics=tuple(task.metrics),
                       metric_prefixes=tuple(task.metric_prefixes),
                       references=_references(data.get("baselines") or [], source, searched),
                       constraints=(*parse_constraints(data.get("constraints") or [], task.metrics, f"{source}: constraints"),
                                    *parse_constraints(list(constraints), task.metrics, "--constraint")))


def _work(searched: dict[str, Knob], name: str | None) -> tuple[str, float] | None:
    """(work knob, the most of it a trial can get) when the space searches the task's work knob."""
    knob = searched.get(name or "")
    if knob is None:
        return None
    return name, float(max(knob.choices) if knob.kind == "categorical" else knob.high)


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
