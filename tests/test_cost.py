import os
import time

import torch

from autotradeoff.cost import count_flops, measure_latency, model_size


def test_latency_is_median_with_spread_and_restores_threads():
    before = torch.get_num_threads()
    model = torch.nn.Linear(64, 64).eval()
    x = torch.randn(32, 64)
    stats = measure_latency(lambda: model(x), warmup=2, repeats=9, threads=1, model=model, min_seconds=0.0)
    assert stats.median_ms > 0 and stats.iqr_ms >= 0 and stats.min_ms <= stats.raw_median_ms
    assert stats.repeats == 9 and stats.threads == 1 and stats.reference_ms > 0
    assert torch.get_num_threads() == before
    longer = measure_latency(lambda: model(x), warmup=0, repeats=3, threads=1, model=model, min_seconds=0.2)
    assert 3 < longer.repeats <= 30  # a time floor, capped at 10x the repeats


def test_latency_is_scaled_by_the_interleaved_reference_and_can_be_raw(monkeypatch):
    """The ratio to the reference kernel times the host's reference time: a call that takes as long as the
    reference kernel itself reads as about that reference time."""
    from autotradeoff.cost.latency import _reference_call, reference_ms

    scaled = measure_latency(_reference_call, warmup=2, repeats=30, threads=1, min_seconds=0.0)
    assert 0.7 < scaled.median_ms / reference_ms(1) < 1.4
    monkeypatch.setenv("AUTOTRADEOFF_TIMING_REFERENCE", "0")
    raw = measure_latency(_reference_call, warmup=2, repeats=30, threads=1, min_seconds=0.0)
    assert raw.reference_ms == 0 and raw.median_ms == raw.raw_median_ms


def test_an_anchor_cancels_a_slowdown_of_the_whole_machine(monkeypatch, tmp_path):
    """Timed beside an anchor, a call that does twice the anchor's work reads twice the anchor's calibrated time,
    even while the machine slows down threefold during the measurement (both sides of each ratio slow alike);
    the raw median follows the slowdown."""
    from autotradeoff.cost import Anchor
    from autotradeoff.cost.latency import _reference_call, anchor_ms

    monkeypatch.setenv("AUTOTRADEOFF_LOCKS", str(tmp_path))
    slow = [1.0]

    def work(units: float) -> None:
        for _ in range(round(units * slow[0])):
            _reference_call()

    anchor = Anchor("test-slowdown", lambda: work(2))
    calibrated = anchor_ms(anchor, 1)

    def call() -> None:
        work(4)
        slow[0] = min(3.0, slow[0] + 0.1)

    stats = measure_latency(call, warmup=1, repeats=30, threads=1, min_seconds=0.0, anchor=anchor)
    assert stats.anchor == "test-slowdown" and stats.reference_ms == calibrated
    assert 1.6 < stats.median_ms / calibrated < 2.5, (stats.median_ms, calibrated)
    assert stats.raw_median_ms / calibrated > 3.5, (stats.raw_median_ms, calibrated)


def test_an_anchors_calibration_is_read_from_the_hosts_file_and_can_be_turned_off(monkeypatch, tmp_path):
    """Every process on a host scales by the same calibrated anchor time (a file in the locks folder);
    ``AUTOTRADEOFF_TIMING_ANCHOR=0`` times beside the reference kernel instead."""
    import json

    from autotradeoff.cost import Anchor, latency

    monkeypatch.setenv("AUTOTRADEOFF_LOCKS", str(tmp_path))
    anchor = Anchor("test-file", latency._reference_call)
    first = latency.anchor_ms(anchor, 1)
    (written,) = [p for p in tmp_path.glob("anchor_test_file*.json")]
    assert json.loads(written.read_text())["ms"] == first
    written.write_text(json.dumps({"ms": 100.0}))  # as another process on this host had measured it
    monkeypatch.setattr(latency, "_calibrated", {})
    same = measure_latency(latency._reference_call, warmup=1, repeats=20, threads=1, min_seconds=0.0, anchor=anchor)
    assert same.reference_ms == 100.0 and 70 < same.median_ms < 140
    monkeypatch.setenv("AUTOTRADEOFF_TIMING_ANCHOR", "0")
    plain = measure_latency(latency._reference_call, warmup=1, repeats=20, threads=1, min_seconds=0.0, anchor=anchor)
    assert plain.anchor == "" and plain.reference_ms == latency.reference_ms(1)


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


TRAINER = """
import json, os, sys, time
from autotradeoff.cost import alone
folder, steps = sys.argv[1], []
with alone.working():
    open(os.path.join(folder, "training"), "w").close()  # the timer starts only once training runs
    deadline = time.time() + 30
    while time.time() < deadline and not os.path.exists(os.path.join(folder, "window.json")):
        alone.pause_point()
        start = time.time()
        while time.time() - start < 0.02:  # a training step: busy, no pause inside
            pass
        steps.append((start, time.time()))
json.dump(steps, open(os.path.join(folder, "steps.json"), "w"))
"""
TIMER = """
import json, os, sys, time
from autotradeoff.cost import alone
folder = sys.argv[1]
deadline = time.time() + 30
while time.time() < deadline and not os.path.exists(os.path.join(folder, "training")):
    time.sleep(0.01)
time.sleep(0.4)
with alone.working():
    with alone.alone():
        start = time.time()
        time.sleep(0.3)  # the timing phase
        window = (start, time.time())
json.dump(window, open(os.path.join(folder, "window.json"), "w"))
"""


def test_a_timing_phase_runs_alone_on_the_host_and_training_waits_for_it(tmp_path):
    """Two processes on real host locks: no training step of one overlaps the other's timing phase. The timer
    starts once training runs and training goes on until the timer is done, whatever the imports cost."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "AUTOTRADEOFF_LOCKS": str(tmp_path / "locks")}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env) for code in (TRAINER, TIMER)]
    assert [p.wait(timeout=90) for p in procs] == [0, 0]
    steps = json.loads((tmp_path / "steps.json").read_text())
    start, end = json.loads((tmp_path / "window.json").read_text())
    assert len(steps) > 10
    assert steps[0][0] < start  # training was under way when the timing phase was asked for
    assert not [s for s in steps if s[0] < end and s[1] > start]  # no step overlapped the timing phase
    gaps = [b[0] - a[1] for a, b in zip(steps, steps[1:])]
    assert max(gaps) >= 0.25  # the trainer waited at its pause point while the timer measured
    off = subprocess.run([sys.executable, "-c", "from autotradeoff.cost import alone; import os;"
                          "print(alone.enabled())"], env={**env, "AUTOTRADEOFF_TIMING_ALONE": "0"},
                         capture_output=True, text=True)
    assert off.stdout.strip() == "False"
