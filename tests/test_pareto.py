import pytest

from autotradeoff.errors import UsageError
from autotradeoff.pareto import front, hypervolume, hypervolume_history, pick, reference_point
from autotradeoff.space import Objective

OBJ = (Objective("accuracy", "max"), Objective("latency_ms", "min"))


def row(number, accuracy, latency, state="COMPLETE", **extra):
    return {"number": number, "state": state, "config": {"k": number},
            "metrics": {"accuracy": accuracy, "latency_ms": latency, **extra}}


ROWS = [row(0, 0.80, 10.0), row(1, 0.82, 20.0), row(2, 0.79, 30.0), row(3, 0.70, 2.0),
        row(4, 0.99, 1.0, state="FAIL"), row(5, 0.815, 12.0)]


def test_front_keeps_only_non_dominated_complete_trials():
    assert [r["number"] for r in front(ROWS, OBJ)] == [1, 5, 0, 3]


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
