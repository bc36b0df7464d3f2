"""SST-2 on real data with the real all-MiniLM-L6-v2 (tiny fidelity): the trial function, the fine-tune
cache, then search -> export -> apply through the installed command with real Ray."""

import pytest
import torch
import yaml
from transformers import AutoModelForSequenceClassification

from autotradeoff.techniques.axbert import AxBertForSequenceClassification
from autotradeoff.trial import run_trial

from conftest import run_cli

pytestmark = pytest.mark.integration

TINY = {"train_size": 160, "selection_size": 32, "dev_size": 96, "max_length": 32, "latency_repeats": 3,
        "latency_warmup": 1}
TRAIN = {"lr": 1e-4, "epochs": 1, "batching": "bucket", "drop_mode": "mod-width", "token_budget": 2000}
SPACE = f"""\
task: sst2
objectives: {{accuracy: max, latency_ms: min}}
knobs:
  lr: 1.0e-4
  epochs: 1
  token_budget: 2000
  batching: bucket
  drop_ffn_layers: {{low: 0, high: 3}}
  heads_kept: {{low: 0.25, high: 1.0}}
fidelity: {yaml.safe_dump(TINY, default_flow_style=True).strip()}
"""


@pytest.fixture(scope="module")
def baseline():
    return run_trial("sst2", TRAIN, TINY)


def test_baseline_trial_reports_every_cost(baseline):
    assert baseline["finetune_reused"] == 0 and baseline["train_steps"] > 0 and baseline["train_time_s"] > 0
    assert baseline["params"] == pytest.approx(22.7e6, rel=0.01)  # MiniLM-L6 (384 wide) + a 2-way head
    assert 0 <= baseline["padding_fraction"] < 0.3 and baseline["train_peak_mb"] > 0
    assert baseline["latency_ms"] > 0 and baseline["latency_b32_ms"] > baseline["latency_ms"] and baseline["flops"] > 0
    assert baseline["score"] == baseline["accuracy"]


def test_approximation_reuses_the_cached_fine_tune_and_costs_less(baseline):
    small = run_trial("sst2", {**TRAIN, "drop_ffn_layers": 3, "drop_attn_layers": 2, "heads_kept": 0.5}, TINY)
    assert small["finetune_reused"] == 1 and small["train_time_s"] == baseline["train_time_s"]
    # half of MiniLM's 22.7M parameters are the token embeddings, which AxFormer leaves alone
    assert baseline["params"] - small["params"] > 5e6 and small["flops"] < 0.5 * baseline["flops"]
    assert small["latency_ms"] < baseline["latency_ms"]


def test_greedy_mode_spends_selection_passes(baseline):
    greedy = run_trial("sst2", {**TRAIN, "ax_mode": "greedy", "fallback_tol": 1.0}, TINY)
    assert greedy["selection_passes"] >= 1 + 3 * 6 and greedy["finetune_reused"] == 1
    assert greedy["params"] <= baseline["params"]


def test_search_export_apply_reproduces_the_exported_model(tmp_path):
    (tmp_path / "tiny.yaml").write_text(SPACE)
    found = run_cli("search", "--task", "sst2", "--space", "tiny.yaml", "--budget", "4trials", "--workers", "2",
                    "--study", "glue", "--seed", "0", "--no-progress", cwd=tmp_path, timeout=900)
    assert found.returncode == 0, found.stderr[-3000:]
    exported = run_cli("export", "--study", "glue", "--pick", "min latency_ms", "-o", "chosen.yaml", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    applied = run_cli("apply", "chosen.yaml", "-o", "model", cwd=tmp_path, timeout=600)
    assert applied.returncode == 0, applied.stderr[-3000:]
    record = yaml.safe_load((tmp_path / "chosen.yaml").read_text())
    rows = {line.split()[0]: line.split()[1:] for line in applied.stdout.splitlines() if line.strip()}
    assert float(rows["accuracy"][0]) == pytest.approx(record["metrics"]["accuracy"], abs=1e-4)  # same weights and plan
    assert float(rows["params"][0]) == pytest.approx(record["metrics"]["params"], rel=1e-3)  # printed to 4 digits
    assert 0.5 < float(rows["latency_ms"][2]) < 2.0  # ratio to the exported latency: within timing noise
    for loaded in (AxBertForSequenceClassification.from_pretrained(tmp_path / "model"),
                   AutoModelForSequenceClassification.from_pretrained(tmp_path / "model", trust_remote_code=True)):
        assert sum(p.numel() for p in loaded.parameters()) == record["metrics"]["params"]
    again = run_cli("apply", "chosen.yaml", "-o", "studies", cwd=tmp_path)  # a folder apply did not write
    assert again.returncode == 2 and "is not empty and was not written by apply" in again.stderr


def test_same_seed_fine_tunes_the_same_model(baseline, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOTRADEOFF_CACHE", str(tmp_path))  # a cold cache: fine-tune again, from scratch
    torch.manual_seed(12345)  # whatever the process did before must not matter
    again = run_trial("sst2", TRAIN, TINY)
    assert again["finetune_reused"] == 0
    assert again["accuracy"] == baseline["accuracy"] and again["train_steps"] == baseline["train_steps"]
