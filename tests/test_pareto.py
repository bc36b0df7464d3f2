import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autotradeoff.errors import UsageError
from autotradeoff.front.pareto import _tolerance, dominates, front, hypervolume, hypervolume_history, losses, pick, reference_point
from autotradeoff.knobs import Objective

OBJ = (Objective("accuracy", "max"), Objective("latency_ms", "min"))


def row(number, accuracy, latency, state="COMPLETE", **extra):
    return {"number": number, "state": state, "config": {"k": number},
            "metrics": {"accuracy": accuracy, "latency_ms": latency, **extra}}


ROWS = [row(0, 0.80, 10.0), row(1, 0.82, 20.0), row(2, 0.79, 30.0), row(3, 0.70, 2.0),
        row(4, 0.99, 1.0, state="FAIL"), row(5, 0.815, 12.0)]


def test_front_keeps_only_non_dominated_complete_trials():
    assert [r["number"] for r in front(ROWS, OBJ)] == [1, 5, 0, 3]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.7, 0.75, 0.8, 0.85]), st.floats(0.5, 3.0), st.sampled_from([0.0, 0.2, 1.0]),
                          st.floats(0.0, 4.0)), max_size=40), st.booleans(), st.booleans())
def test_the_fast_front_is_the_definition_weighed_pair_by_pair(points, noise, third):
    """``front`` skips most comparisons on large studies; it must keep exactly the points that no other point
    beats by more than the pair's mean half-spread (``dominates`` with ``_tolerance``), ties and duplicates included."""
    objectives = (*OBJ, Objective("flops", "min")) if third else OBJ
    rows = [row(n, acc, round(lat, 1), latency_iqr_ms=iqr, flops=round(fl)) for n, (acc, lat, iqr, fl) in enumerate(points)]
    tolerance = (lambda a, b: _tolerance(a, b, objectives)) if noise else (lambda a, b: None)
    expected = [r["number"] for r in rows if not any(
        dominates(losses(o, objectives), losses(r, objectives), tolerance(o, r)) for o in rows if o is not r)]
    assert sorted(r["number"] for r in front(rows, objectives, noise=noise)) == sorted(expected)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), max_size=12))
def test_the_two_objective_hypervolume_sweep_agrees_with_slicing(points):
    as_3d = hypervolume([(x, y, 0) for x, y in points], (10, 10, 1))  # the general slicing path, a unit-deep third axis
    assert hypervolume(points, (10, 10)) == pytest.approx(as_3d)


def test_hypervolume_of_known_shapes():
    assert hypervolume([(0, 0)], (1, 1)) == 1
    assert hypervolume([(0, 1), (1, 0)], (2, 2)) == 3
    assert hypervolume([(0, 0, 0)], (2, 1, 3)) == 6
    assert hypervolume([(1, 0, 0), (0, 1, 0)], (2, 2, 1)) == 3
    assert hypervolume([(3, 3)], (2, 2)) == 0  # outside the reference box


def test_hypervolume_history_never_decreases_and_ignores_failures():
    history = hypervolume_history(ROWS, OBJ)
    assert [n for n, _ in history] == [0, 1, 2, 3, 5]
    values = [v for _, v in history]
    assert values == sorted(values) and values[-1] > 0
    ref = reference_point(ROWS, OBJ)
    assert ref[0] > -0.70 and ref[1] > 30.0  # worse than every complete trial


@pytest.mark.parametrize("rule, expected", [
    ("accuracy>=max-0.01, min latency_ms", 5),
    ("accuracy >= max - 0.03, min latency_ms", 0),
    ("latency_ms<=15, max accuracy", 5),
    ("accuracy>=max*0.99, min latency_ms", 5),
    ("max accuracy", 1),
    ("latency_ms < min+1, max accuracy", 3),
])
def test_pick_rules(rule, expected):
    assert pick(ROWS, rule)["number"] == expected


@pytest.mark.parametrize("rule, message", [
    ("accuracy>=max-0.01", "bad pick rule"),
    ("accuracy=>max, min latency_ms", "bad pick clause 'accuracy=>max'"),
    ("speed<=3, min latency_ms", "unknown metric 'speed'; choices: accuracy, latency_ms"),
    ("accuracy>=2, min latency_ms", "no complete trial satisfies"),
])
def test_bad_pick_rules_are_one_line_usage_errors(rule, message):
    with pytest.raises(UsageError, match=message):
        pick(ROWS, rule)
