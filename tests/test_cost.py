import time

import torch

from autotradeoff.cost import count_flops, measure_latency, model_size


def test_latency_is_median_with_spread_and_restores_threads():
    before = torch.get_num_threads()
    model = torch.nn.Linear(64, 64).eval()
    x = torch.randn(32, 64)
    stats = measure_latency(lambda: model(x), warmup=2, repeats=9, threads=1, model=model)
    assert stats.median_ms > 0 and stats.iqr_ms >= 0 and stats.min_ms <= stats.median_ms
    assert stats.repeats == 9 and stats.threads == 1
    assert torch.get_num_threads() == before


def test_latency_refuses_a_model_in_training_mode():
    model = torch.nn.Linear(4, 4)
    try:
        measure_latency(lambda: model(torch.randn(1, 4)), model=model)
    except ValueError as exc:
        assert "eval" in str(exc)
    else:
        raise AssertionError("training-mode model was timed")


def test_flops_of_a_linear_layer_are_two_per_multiply_add():
    model = torch.nn.Linear(10, 20, bias=False)
    assert count_flops(lambda: model(torch.randn(3, 10))) == 2 * 3 * 10 * 20


def test_graph_aggregation_counts_one_flop_per_scattered_element():
    src = torch.randn(50, 8)
    index = torch.randint(0, 10, (50, 1)).expand(-1, 8)
    assert count_flops(lambda: torch.zeros(10, 8).scatter_add_(0, index, src)) == 50 * 8
    assert count_flops(lambda: torch.zeros(10, 8).index_add_(0, torch.randint(0, 10, (50,)), src)) == 50 * 8


def test_model_size_counts_parameters_and_bytes():
    size = model_size(torch.nn.Linear(10, 5))
    assert size == {"params": 55, "model_bytes": 55 * 4}


def test_peak_memory_sees_a_short_lived_allocation_and_not_what_was_held_before():
    from autotradeoff.cost import PeakMemory

    held = torch.ones(64 * 2**20 // 4)  # 64 MiB held before: not charged
    with PeakMemory("cpu") as peak:
        block = torch.ones(200 * 2**20 // 4)  # 200 MiB, written so the pages are resident
        time.sleep(0.05)
        del block
    assert 150 < peak.mb < 400 and held.numel()
