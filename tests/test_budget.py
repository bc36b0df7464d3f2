import pytest

from autotradeoff.engine.budget import Budget, Charge, parse_budget
from autotradeoff.errors import UsageError


@pytest.mark.parametrize("text, amount, unit", [
    ("20gpu-h", 20, "gpu-h"), ("0.05cpu-h", 0.05, "cpu-h"), ("90m", 5400, "s"), ("2h", 7200, "s"),
    ("40trials", 40, "trials"), ("1.5GPU-H", 1.5, "gpu-h"), (" 30 s ", 30, "s"), ("1e1trials", 10, "trials"),
])
def test_budget_strings_parse_to_canonical_units(text, amount, unit):
    budget = parse_budget(text)
    assert budget.unit == unit and budget.amount == pytest.approx(amount)


@pytest.mark.parametrize("text", ["", "20", "gpu-h", "-1h", "0h", "20 gpus", "1.5trials", "nan h", "20gpu-hh", "5 m m"])
def test_bad_budget_names_value_and_units(text):
    with pytest.raises(UsageError) as err:
        parse_budget(text)
    assert repr(text) in str(err.value)
    assert "\n" not in str(err.value)


def test_gpu_hours_without_gpu_charge_the_cpu_share_of_the_machine():
    charge = Charge(wall_s=3600, cpus=1, gpus=0, device_share=0.5)
    assert charge.cpu_h == 1 and charge.gpu_h == 0.5
    with_gpu = Charge(wall_s=1800, cpus=2, gpus=0.25, device_share=0.125)
    assert with_gpu.gpu_h == pytest.approx(0.125) and with_gpu.cpu_h == 1


def test_no_new_trial_when_budget_cannot_cover_it():
    budget = Budget(1.0, "cpu-h")
    assert budget.can_start(spent=0.0, reserved=0.0, per_trial=None)
    assert budget.can_start(spent=0.5, reserved=0.2, per_trial=0.2)
    assert not budget.can_start(spent=0.5, reserved=0.4, per_trial=0.2)  # a long-running trial holds the rest
    assert not budget.can_start(spent=1.0, reserved=0.0, per_trial=None)
    trials = Budget(3, "trials")
    assert trials.can_start(spent=1, reserved=1, per_trial=1) and not trials.can_start(spent=2, reserved=1, per_trial=1)
