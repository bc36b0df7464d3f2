"""The conformance suite: every registered task, and every technique it accepts, at the tiny fidelity the
task declares. A new task or technique in the registry is covered with no new test. Tasks whose data is
not here are skipped with the reason."""

from __future__ import annotations

import itertools

import pytest

from autotradeoff.engine.search import search
from autotradeoff.errors import DataMissingError
from autotradeoff.presets import load_space
from autotradeoff.tasks import get_task, task_names

import conformance
from conftest import TESTS

PAIRS = [(task, technique) for task in task_names() for technique in get_task(task).technique_names]


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """Each call gives the next trial an empty cache, so nothing it trains is reused."""
    counter = itertools.count()
    return lambda: monkeypatch.setenv("AUTOTRADEOFF_CACHE", str(tmp_path / f"cache{next(counter)}"))


def with_data(name: str):
    task = get_task(name)
    try:
        task.check_data(task.fill_fidelity(task.tiny_fidelity))
    except DataMissingError as missing:
        pytest.skip(f"{name}: its data is not under AUTOTRADEOFF_DATA or the cache ({str(missing)[:120]}…)")
    return task


@pytest.mark.parametrize("name", task_names())
def test_knob_names_are_unique_and_defaults_are_all_off(name):
    conformance.check_knob_declarations(get_task(name))


@pytest.mark.parametrize("name", task_names())
def test_every_knobs_low_high_and_choices_pass_the_pre_training_check(name, monkeypatch):
    # latency by the plain protocol (exactly the tiny fidelity's repeats): the interleaved anchor and the 1-s
    # minimum per measurement made each of GLUE's ~55 pre-checks 2.4 s instead of 1.5 s, and what is checked
    # here, that every knob's extremes give finite pre-training costs, does not depend on the scaling
    monkeypatch.setenv("AUTOTRADEOFF_TIMING_REFERENCE", "0")
    conformance.check_extremes(with_data(name))


@pytest.mark.parametrize("name", task_names())
def test_the_same_seed_gives_the_same_accuracy_and_flops(name, fresh):
    conformance.check_same_seed_same_result(with_data(name), fresh)


@pytest.mark.parametrize("name, technique", PAIRS)
def test_a_technique_at_its_all_off_config_is_the_plain_baseline(name, technique, fresh):
    task = with_data(name)
    conformance.check_off_is_baseline(task, next(t for t in task.techniques if t.name == technique), fresh)


@pytest.mark.parametrize("name, technique", PAIRS)
def test_a_cost_reducing_technique_at_its_most_aggressive_lowers_a_cost(name, technique, fresh):
    task = with_data(name)
    chosen = next(t for t in task.techniques if t.name == technique)
    if not chosen.saves:
        pytest.skip(f"{technique} promises no saving against {name}'s baseline (it buys accuracy)")
    conformance.check_aggressive_saves(task, chosen, fresh)


def test_a_plugin_technique_passes_and_broken_ones_are_caught(fresh):
    cora = get_task("cora", ("plugin_techniques:EdgeSample",))
    conformance.check_knob_declarations(cora)
    edges = cora.techniques[-1]
    conformance.check_off_is_baseline(cora, edges, fresh)
    conformance.check_aggressive_saves(cora, edges, fresh)
    broken = get_task("cora", ("plugin_techniques:BrokenEdgeSample",))
    with pytest.raises(AssertionError, match="brokenedgesample at its all-off config changed cora's baseline"):
        conformance.check_off_is_baseline(broken, broken.techniques[-1], fresh)
    with pytest.raises(AssertionError, match=r"badbounds.share: default 1.5 outside its bounds"):
        conformance.check_knob_declarations(get_task("cora", ("plugin_techniques:BadBounds",)))


def test_a_search_runs_with_a_technique_from_the_tests_folder(tmp_path, monkeypatch):
    """One module and one space YAML in tests/, loaded by import path; no file of the package touched."""
    monkeypatch.chdir(tmp_path)
    space = str(TESTS / "spaces" / "cora-edgesample.yaml")
    assert load_space(space).fidelity["techniques"] == ("plugin_techniques:EdgeSample",)
    result = search("cora", "5trials", space=space, study="plugin", runner="local", seed=0, remeasure=0, early_stop=False)
    trials = result.study.get_trials()
    assert len(trials) == 5 and all(t.state.name == "COMPLETE" for t in trials)
    assert trials[0].params["edgesample.share"] == 0.0 and trials[1].params["edgesample.share"] == 0.5  # baselines
    assert trials[1].user_attrs["edges"] < 0.6 * trials[0].user_attrs["edges"]
    assert trials[1].user_attrs["flops"] < trials[0].user_attrs["flops"]
