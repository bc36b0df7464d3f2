"""The Fashion-MNIST task on the real data (Debian's dataset-fashion-mnist or $AUTOTRADEOFF_DATA), small
settings: all-off is the plain ViT, ICPC trains on fewer FLOPs, exits and costs add up, the tuned ladder keeps
validation accuracy, apply writes a model that reloads alone; CIFAR-10 when its files are here; data errors."""

import json
import pickle
import subprocess
import sys

import numpy as np
import optuna
import pytest
import torch
import yaml

from autotradeoff.engine.trial import run_trial
from autotradeoff.errors import DataMissingError
from autotradeoff.models.vit import ViT
from autotradeoff.tasks import get_task
from autotradeoff.tasks.vision_data import _cifar10, load_images, read_idx
from autotradeoff.tasks.vision_train import train_step_flops

from conftest import run_cli

TINY = {"train_size": 600, "epochs": 1, "batch_size": 64, "test_size": 400, "dim": 32, "depth": 2, "heads": 2,
        "latency_samples": 4, "latency_warmup": 1, "latency_repeats": 3}  # 28 px upsampled to 56, 8 px patches: grid 7
ICPC = {"icpc.min_level": 0.25, "icpc.variable_effort": True, "icpc.threshold_rule": "fixed", "icpc.conf_threshold": 0.5,
        "icpc.infer_start_level": 0.25, "icpc.max_infer_levels": 0}


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
    inactive = {"icpc.level_step": 2, "icpc.level_sampling": "high", "icpc.pos_selection": "interpolate", "icpc.conf_threshold": 0.3,
                "icpc.infer_start_level": 0.5, "icpc.max_infer_levels": 3, "icpc.fallback": "wrong", "icpc.max_drop": 0.1,
                "icpc.threshold_rule": "fixed"}
    other = run_trial("fashion-mnist", inactive, TINY)
    assert other["train_reused"] == 0.0
    for metric in ("val_accuracy", "test_accuracy", "train_flops", "flops", "params", "exit_share_56px", "mean_levels"):
        assert other[metric] == base[metric], metric
    assert base["exit_share_56px"] == 1.0 and base["flops"] == base["flops_full"] and base["effort_threshold"] == 0.0
    # the training FLOPs are every sample's forward + backward at the full level (the 56 px canvas)
    vit = ViT(image_size=56, patch=8, channels=1, classes=10, dim=32, depth=2, heads=2, mlp_ratio=2.0)
    assert base["train_flops"] == pytest.approx(600 * train_step_flops(vit, 7, "top-left", 1))


def test_icpc_trains_on_fewer_flops_and_its_exits_add_up():
    base = run_trial("fashion-mnist", {}, TINY)
    icpc = run_trial("fashion-mnist", ICPC, TINY)
    assert icpc["train_flops"] < base["train_flops"] / 1.15  # 10 batches at levels drawn from 4..7 (never below 28 px)
    shares = {k: v for k, v in icpc.items() if k.startswith("exit_share_")}
    assert list(shares) == [f"exit_share_{px}px" for px in (32, 40, 48, 56)]
    assert sum(shares.values()) == pytest.approx(1.0)
    visits = [sum(list(shares.values())[i:]) for i in range(len(shares))]
    assert icpc["mean_levels"] == pytest.approx(sum(visits))
    assert icpc["flops"] < icpc["flops_full"] * icpc["mean_levels"]  # smaller levels cost less than the full one
    assert icpc["params"] == base["params"]
    fixed_small = run_trial("fashion-mnist", {**ICPC, "icpc.variable_effort": False, "icpc.infer_level": 0.5}, TINY)
    assert fixed_small["train_reused"] == 1.0  # same training knobs: the cached model
    assert fixed_small["exit_share_32px"] == 1.0 and fixed_small["flops"] < base["flops"] / 2


def test_the_tuned_ladder_keeps_validation_accuracy_and_is_used_only_when_it_pays():
    """The threshold is tuned on validation: accuracy there stays within ``max_drop`` of one full-level pass of the
    same model (two samples of slack: batches of other sizes may move a confidence across it), and the ladder is
    used only when it costs fewer FLOPs than that pass."""
    full = run_trial("fashion-mnist", {"icpc.min_level": 0.5}, TINY)
    ladder = {"icpc.min_level": 0.5, "icpc.variable_effort": True, "icpc.infer_start_level": 0.5}
    slack = 2 / 2000
    for drop in (0.0, 0.2):
        tuned = run_trial("fashion-mnist", {**ladder, "icpc.max_drop": drop}, TINY)
        assert tuned["train_reused"] == 1.0 and tuned["val_accuracy"] >= full["val_accuracy"] - drop - slack
        if tuned["effort_threshold"] == 0.0:  # no threshold paid: one full-level pass
            assert tuned["exit_share_56px"] == 1.0 and tuned["flops"] == full["flops"]
        else:
            assert {k for k in tuned if k.startswith("exit_share_")} == {"exit_share_32px", "exit_share_56px"}
            assert tuned["flops"] < full["flops"] and tuned["exit_share_32px"] > 0
    assert tuned["effort_threshold"] > 0  # a loose drop lets the cheap level answer many


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


def test_cifar10_runs_on_the_real_files_when_they_are_here(monkeypatch):
    monkeypatch.setenv("AUTOTRADEOFF_OFFLINE", "1")
    try:
        load_images("cifar10", "test")
    except DataMissingError as missing:
        pytest.skip(f"CIFAR-10's python batches are not under AUTOTRADEOFF_DATA or the cache here: {str(missing)[:200]}")
    base = run_trial("cifar10", {}, TINY)  # 32 px upsampled to 64, 8 px patches: grid 8, native 4
    icpc = run_trial("cifar10", {**ICPC, "icpc.min_level": 0.5}, TINY)
    assert base["exit_share_64px"] == 1.0 and 0.1 < base["test_accuracy"] <= 1.0
    assert [k for k in icpc if k.startswith("exit_share_")] == [f"exit_share_{px}px" for px in (32, 40, 48, 56, 64)]
    assert icpc["train_flops"] < base["train_flops"]


def test_missing_cifar10_exits_2_with_one_line_naming_what_it_looked_for(tmp_path):
    result = run_cli("search", "--task", "cifar10", "--budget", "1trials", "--no-progress", cwd=tmp_path,
                     env={"AUTOTRADEOFF_DATA": str(tmp_path)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "CIFAR-10" in lines[0] and "cifar-10-batches-py" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "studies").exists() or not any((tmp_path / "studies").iterdir())


def test_a_patch_that_does_not_divide_the_image_is_a_usage_error(tmp_path):
    space = tmp_path / "bad.yaml"
    space.write_text("task: fashion-mnist\nknobs: {icpc.min_level: {low: 0.25, high: 1.0}}\nfidelity: {patch: 5}\n")
    result = run_cli("search", "--task", "fashion-mnist", "--space", str(space), "--budget", "1trials", cwd=tmp_path)
    assert result.returncode == 2 and "fidelity.patch" in result.stderr and "got 5" in result.stderr


TINY_SPACE = """\
task: fashion-mnist
objectives: {val_accuracy: max, flops: min}
knobs:
  icpc.min_level: {low: 0.25, high: 1.0}
  icpc.variable_effort: {choices: [false, true]}
  icpc.conf_threshold: {low: 0.3, high: 0.9, when: {icpc.variable_effort: true}}
  icpc.threshold_rule: {choices: [tuned, fixed], when: {icpc.variable_effort: true}}
  icpc.max_infer_levels: 0
baselines:
  - {icpc.min_level: 0.25, icpc.variable_effort: true, icpc.threshold_rule: fixed, icpc.conf_threshold: 0.5}
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
    assert {k for k in baseline if k.startswith("exit_share_")} == {"exit_share_56px"}
    shares = [v for k, v in reference.items() if k.startswith("exit_share_")]
    assert len(shares) == 4 and sum(shares) == pytest.approx(1.0)  # 32, 40, 48, 56 px
    page = (tmp_path / "reports" / "icpc" / "index.html").read_text()
    assert "Chosen config: trial" in page and "share of validation samples exiting at each inference level" in page
    rule = "val_accuracy>=0, min flops"  # the cheapest: a variable-effort trial starting at a small level
    redraw = run_cli("front", "--study", "icpc", "--pick", "bad rule", cwd=tmp_path)
    assert redraw.returncode == 2 and "bad pick rule" in redraw.stderr
    redraw = run_cli("front", "--study", "icpc", "--pick", rule, cwd=tmp_path)
    assert redraw.returncode == 0, redraw.stderr
    chosen = min((t for t in trials), key=lambda t: t.user_attrs["flops"])
    page = (tmp_path / "reports" / "icpc" / "index.html").read_text()
    assert f"Chosen config: trial {chosen.number}" in page


def test_apply_writes_an_image_model_that_reloads_alone_and_reproduces_the_trial(tmp_path):
    """search -> export -> apply through the installed command; then a fresh interpreter that imports only the
    directory's own file classifies the test images to the trial's test accuracy and exit shares."""
    (tmp_path / "icpc.yaml").write_text(TINY_SPACE)
    result = run_cli("search", "--task", "fashion-mnist", "--space", "icpc.yaml", "--study", "icpc", "--budget", "2trials",
                     "--runner", "local", "--remeasure", "0", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert run_cli("export", "--study", "icpc", "--trial", "1", "-o", "chosen.yaml", cwd=tmp_path).returncode == 0
    applied = run_cli("apply", "chosen.yaml", "-o", "model", cwd=tmp_path, timeout=600)
    assert applied.returncode == 0, applied.stderr[-3000:]
    assert "icpc_vit.py" in applied.stdout and "test_exit_share_32px" in applied.stdout
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "README.md", "autotradeoff.yaml", "config.json", "icpc_vit.py", "model.safetensors"]
    record = yaml.safe_load((tmp_path / "chosen.yaml").read_text())
    exported, task = record["metrics"], get_task("fashion-mnist")
    torch.save(task.data(task.fill_fidelity(record["fidelity"]))["test"], tmp_path / "test.pt")  # the trial's 400 test images
    script = """
import importlib.util, json, sys, torch
spec = importlib.util.spec_from_file_location("icpc_vit", "model/icpc_vit.py")
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
images, labels = torch.load("test.pt")
classes, exit_px = mod.load("model").classify(images)
assert not any(name.startswith("autotradeoff") for name in sys.modules)
print(json.dumps({"accuracy": (classes == labels).float().mean().item(),
                  **{str(p): (exit_px == p).float().mean().item() for p in (32, 40, 48, 56)}}))
"""
    out = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, cwd=tmp_path, check=True)
    alone = json.loads(out.stdout)
    assert alone["accuracy"] == pytest.approx(exported["test_accuracy"], abs=1e-9)
    for px in (32, 40, 48, 56):
        assert alone[str(px)] == pytest.approx(exported[f"test_exit_share_{px}px"], abs=1e-9)
    again = run_cli("apply", "chosen.yaml", "-o", "studies", cwd=tmp_path)  # a folder apply did not write
    assert again.returncode == 2 and "is not empty and was not written by apply" in again.stderr
