"""The checks every task and technique must pass, as plain functions (the conformance suite parametrises
them over the registry; a test runs them on a broken plug-in to show they fail)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from autotradeoff.errors import UsageError
from autotradeoff.tasks import Task
from autotradeoff.techniques import Technique

# metrics a trial computes deterministically from its seed (timings are not)
EXACT = ("val_accuracy", "test_accuracy", "val_score", "test_score", "flops", "params", "edges", "train_flops", "train_steps", "padding_fraction")


def tiny(task: Task, **config) -> tuple[dict, dict]:
    """(config, fidelity) of a whole trial that takes seconds: the task's tiny settings."""
    return task.fill_config({**task.tiny_config, **config}), task.fill_fidelity(task.tiny_fidelity)


def run(task: Task, config: dict, fidelity: dict, fresh: Callable[[], None]) -> dict[str, float]:
    """One trial on one thread, after ``fresh()`` (which gives it an empty cache: nothing trained is reused)."""
    fresh()
    torch.set_num_threads(1)
    return task.run(config, fidelity, device="cpu")


def check_knob_declarations(task: Task) -> None:
    """Knob names are unique and namespaced; every default lies inside its own bounds; every technique's
    knobs at their defaults are off."""
    names = [t.name for t in task.techniques]
    assert len(set(names)) == len(names), f"technique names repeat: {names}"
    assert not any("." in name for name in task.own_knobs), "a task's own knob names carry no dots"
    assert len(task.knobs) == len(task.own_knobs) + sum(len(t.knobs) for t in task.techniques), "knob names collide"
    for name, knob in task.knobs.items():
        assert _valid(knob, knob.default), f"{name}: default {knob.default!r} outside its bounds"
    defaults = task.fill_config({})
    for technique in task.techniques:
        assert technique.family == task.family, f"{technique.name} is a {technique.family} technique"
        assert technique.own(defaults) == technique.off() and technique.is_off(technique.off()), \
            f"{technique.name}: the task's default config is not all-off"


def _valid(knob, value) -> bool:
    try:
        return knob.check(value, knob.name) == value
    except UsageError:
        return False


def check_extremes(task: Task) -> None:
    """Each knob's low and high, and every choice, fill a config and pass the pre-training check."""
    config, fidelity = tiny(task)
    for name, knob in task.knobs.items():
        for value in knob.extremes():
            filled = task.fill_config({**config, name: value}, where=f"{task.name}: {name}={value!r}")
            known = task.precheck(filled, fidelity, device="cpu")
            bad = {k: v for k, v in known.items() if not math.isfinite(v)}
            assert not bad, f"{task.name}: {name}={value!r}: precheck gave non-finite {bad}"


def exact(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k in EXACT}


def check_off_is_baseline(task: Task, technique: Technique, fresh: Callable[[], None]) -> None:
    """With the technique installed at its all-off config the trial equals the task with no technique."""
    plain = task.using([])
    config, fidelity = tiny(plain)
    with_it = task.using([technique])
    assert exact(run(with_it, with_it.fill_config(config), fidelity, fresh)) == exact(run(plain, config, fidelity, fresh)), \
        f"{technique.name} at its all-off config changed {task.name}'s baseline"


def check_same_seed_same_result(task: Task, fresh: Callable[[], None]) -> None:
    """The same seed gives the same accuracy and FLOPs, each run training from scratch."""
    config, fidelity = tiny(task)
    assert exact(run(task, config, fidelity, fresh)) == exact(run(task, config, fidelity, fresh))


def check_aggressive_saves(task: Task, technique: Technique, fresh: Callable[[], None]) -> None:
    """A cost-reducing technique at its most aggressive setting lowers one of the costs it names."""
    config, fidelity = tiny(task)
    keyed = {technique.key(k): v for k, v in technique.aggressive.items()}
    base, cheap = run(task, config, fidelity, fresh), run(task, task.fill_config({**config, **keyed}), fidelity, fresh)
    assert any(cheap[m] < base[m] for m in technique.saves), \
        f"{technique.name} at {technique.aggressive} lowered none of {technique.saves}: " \
        f"{ {m: (base[m], cheap[m]) for m in technique.saves} }"
