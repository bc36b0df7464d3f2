"""The Fashion-MNIST task on the real data (Debian's dataset-fashion-mnist or $AUTOTRADEOFF_DATA), small
settings: all-off is the plain ViT, ICPC trains on fewer FLOPs, exits and costs add up; data errors."""

import pickle

import numpy as np
import optuna
import pytest
import torch

from autotradeoff.errors import DataMissingError
from autotradeoff.tasks.vision_data import _cifar10, load_images, read_idx
from autotradeoff.tasks.vit import ViT, train_step_flops
from autotradeoff.trial import run_trial

from conftest import run_cli

TINY = {"train_size": 600, "epochs": 1, "batch_size": 64, "test_size": 400, "dim": 32, "depth": 2, "heads": 2,
        "latency_samples": 4, "latency_warmup": 1, "latency_repeats": 3}
ICPC = {"min_level": 0.25, "variable_effort": True, "conf_threshold": 0.5, "infer_start_level": 0.25}


def test_fashion_mnist_loads_the_real_files():
    train, test = load_images("fashion-mnist", "train"), load_images("fashion-mnist", "test")
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and set(train.labels.unique().tolist()) == set(range(10))
    assert (torch.bincount(test.labels) == 1000).all()  # Fashion-MNIST's balanced test set


def test_all_off_config_equals_the_baseline(tmp_path, monkeypatch):
    """Every ICPC knob that has no effect while the technique is off may take any value: the trial is the
    plain ViT (trained at full resolution in a fresh cache each time) to the last digit."""
    base = run_trial("fashion-mnist", {}, TINY)
    monkeypatch.setenv("AUTOTRADEOFF_CACHE", str(tmp_path))
    inactive = {"level_step": 2, "level_sampling": "high", "pos_selection": "interpolate", "conf_threshold": 0.3,
                "infer_start_level": 0.5, "max_infer_levels": 2, "fallback": "wrong"}
    other = run_trial("fashion-mnist", inactive, TINY)
    assert other["train_reused"] == 0.0
    for metric in ("accuracy", "train_flops", "flops", "params", "exit_share_28px", "mean_levels"):
        assert other[metric] == base[metric], metric
    assert base["exit_share_28px"] == 1.0 and base["flops"] == base["flops_full"]
    # the training FLOPs are every sample's forward + backward at the full level
    vit = ViT(image_size=28, patch=4, channels=1, classes=10, dim=32, depth=2, heads=2, mlp_ratio=2.0)
    assert base["train_flops"] == pytest.approx(600 * train_step_flops(vit, 7, "top-left", 1))


def test_icpc_trains_on_fewer_flops_and_its_exits_add_up():
    base = run_trial("fashion-mnist", {}, TINY)
    icpc = run_trial("fashion-mnist", ICPC, TINY)
    assert icpc["train_flops"] < base["train_flops"] / 1.8  # levels 2..7 of 7: ~2.1x fewer tokens on average
    shares = {k: v for k, v in icpc.items() if k.startswith("exit_share_")}
    assert list(shares) == [f"exit_share_{px}px" for px in (8, 12, 16, 20, 24, 28)]
    assert sum(shares.values()) == pytest.approx(1.0)
    visits = [sum(list(shares.values())[i:]) for i in range(len(shares))]
    assert icpc["mean_levels"] == pytest.approx(sum(visits))
    assert icpc["flops"] < icpc["flops_full"] * icpc["mean_levels"]  # smaller levels cost less than the full one
    assert icpc["params"] == base["params"]
    fixed_small = run_trial("fashion-mnist", {**ICPC, "variable_effort": False, "infer_level": 0.5}, TINY)
    assert fixed_small["train_reused"] == 1.0  # same training knobs: the cached model
    assert fixed_small["exit_share_16px"] == 1.0 and fixed_small["flops"] < base["flops"] / 2


def test_idx_reader_rejects_a_truncated_file(tmp_path):
    good = tmp_path / "x-idx1-ubyte"
    good.write_bytes(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes([1, 2, 3]))
    assert read_idx(good).tolist() == [1, 2, 3]
    bad = tmp_path / "y-idx1-ubyte"
    bad.write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + bytes([1, 2]))
    with pytest.raises(DataMissingError, match="truncated"):
        read_idx(bad)


def test_cifar10_reads_the_python_batches(tmp_path, monkeypatch):
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": np.full((2, 3072), 7, dtype=np.uint8), b"labels": [1, 9]}
        (folder / name).write_bytes(pickle.dumps(batch))
    monkeypatch.setenv("AUTOTRADEOFF_DATA", str(tmp_path))
    train, test = _cifar10("train"), _cifar10("test")
    assert train.images.shape == (10, 3, 32, 32) and test.labels.tolist() == [1, 9]


def test_missing_cifar10_exits_2_with_one_line_naming_what_it_looked_for(tmp_path):
    result = run_cli("search", "--task", "cifar10", "--budget", "1trials", "--no-progress", cwd=tmp_path,
                     env={"AUTOTRADEOFF_DATA": str(tmp_path)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "CIFAR-10" in lines[0] and "cifar-10-batches-py" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "studies").exists() or not any((tmp_path / "studies").iterdir())


def test_a_patch_that_does_not_divide_the_image_is_a_usage_error(tmp_path):
    space = tmp_path / "bad.yaml"
    space.write_text("task: fashion-mnist\nknobs: {min_level: {low: 0.25, high: 1.0}}\nfidelity: {patch: 5}\n")
    result = run_cli("search", "--task", "fashion-mnist", "--space", str(space), "--budget", "1trials", cwd=tmp_path)
    assert result.returncode == 2 and "fidelity.patch" in result.stderr and "got 5" in result.stderr


TINY_SPACE = """\
task: fashion-mnist
objectives: {accuracy: max, flops: min}
knobs:
  min_level: {low: 0.25, high: 1.0}
  variable_effort: {choices: [false, true]}
  conf_threshold: {low: 0.3, high: 0.9, when: {variable_effort: true}}
baselines:
  - {min_level: 0.25, variable_effort: true, conf_threshold: 0.5}
fidelity: {train_size: 600, epochs: 1, batch_size: 64, test_size: 400, dim: 32, depth: 2, heads: 2,
           latency_samples: 4, latency_warmup: 1, latency_repeats: 3}
"""


@pytest.mark.integration
def test_an_icpc_search_stores_exits_and_its_report_shows_the_chosen_configs_histogram(tmp_path):
    (tmp_path / "icpc.yaml").write_text(TINY_SPACE)
    result = run_cli("search", "--task", "fashion-mnist", "--space", "icpc.yaml", "--study", "icpc", "--budget", "4trials",
                     "--workers", "2", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="icpc", storage=f"sqlite:///{tmp_path / 'studies' / 'icpc.db'}")
    trials = sorted(study.get_trials(), key=lambda t: t.number)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    baseline, reference = trials[0].user_attrs, trials[1].user_attrs  # all-off, then the YAML's ICPC baseline
    assert {k for k in baseline if k.startswith("exit_share_")} == {"exit_share_28px"}
    shares = [v for k, v in reference.items() if k.startswith("exit_share_")]
    assert len(shares) == 6 and sum(shares) == pytest.approx(1.0)
    page = (tmp_path / "reports" / "icpc" / "index.html").read_text()
    assert "Chosen config: trial" in page and "share of samples exiting at each inference level" in page
    rule = "accuracy>=0, min flops"  # the cheapest: a variable-effort trial starting at a small level
    redraw = run_cli("front", "--study", "icpc", "--pick", "bad rule", cwd=tmp_path)
    assert redraw.returncode == 2 and "bad pick rule" in redraw.stderr
    redraw = run_cli("front", "--study", "icpc", "--pick", rule, cwd=tmp_path)
    assert redraw.returncode == 0, redraw.stderr
    chosen = min((t for t in trials), key=lambda t: t.user_attrs["flops"])
    page = (tmp_path / "reports" / "icpc" / "index.html").read_text()
    assert f"Chosen config: trial {chosen.number}" in page
