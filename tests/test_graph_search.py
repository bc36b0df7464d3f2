"""`autotradeoff search --task cora-fewshot` end to end through real Ray on real Cora: the preset names its
task and fidelity, the search starts from supervised training and plain self-training (then CaGCN-st), and an
exported trial re-runs with `autotradeoff trial` to the same metrics."""

import optuna
import pytest
import yaml

from conftest import run_cli

pytestmark = pytest.mark.integration


def test_fewshot_preset_starts_from_its_baselines_and_its_export_reproduces(tmp_path):
    from autotradeoff.space import list_spaces

    preset = yaml.safe_load(list_spaces()["cora-fewshot"].read_text())
    preset["fidelity"]["seeds"] = 2  # the preset's 3 few-label splits, cut to 2 to keep the suite short
    assert preset["baselines"][0] == {"fastrain.stages": 4, "epochs": 2000, "patience": 100}  # plain self-training
    # its stages stop after 30 epochs without a better validation accuracy, not 100: ~220 epochs a split
    # instead of ~750 (still ~1,700 pseudolabels), in the search and in the re-run of its export
    preset["baselines"][0]["patience"] = 30
    (tmp_path / "cora-fewshot.yaml").write_text(yaml.safe_dump(preset, sort_keys=False))
    result = run_cli("search", "--task", "cora-fewshot", "--space", "cora-fewshot.yaml", "--budget", "2trials",
                     "--workers", "2", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="cora-fewshot", storage=f"sqlite:///{tmp_path / 'studies' / 'cora-fewshot.db'}")
    # the queued references a 2-trial budget never reached (CaGCN-st, FASTRAIN) wait, without params
    trials = sorted(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: t.number)
    assert [t.params["fastrain.stages"] for t in trials] == [1, 4]  # supervised, then plain self-training
    supervised, self_trained = (t.user_attrs for t in trials)
    assert supervised["pseudo_labels"] == 0 and self_trained["pseudo_labels"] > 100
    assert supervised["train_epochs"] == 200 and supervised["train_stages"] == 1
    assert self_trained["train_stages"] == 4 and 0 < self_trained["stage1_time_s"] < self_trained["stage4_time_s"]
    assert self_trained["stage1_labels"] == 35 < self_trained["stage4_labels"]  # 5 labels x 7 classes, then pseudolabels
    assert 0.4 < supervised["test_accuracy"] < 0.85 and supervised["test_accuracy_std"] > 0  # 2 few-label splits
    export = run_cli("export", "--study", "cora-fewshot", "--trial", "1", "-o", "chosen.yaml", cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    record = yaml.safe_load((tmp_path / "chosen.yaml").read_text())
    assert record["fidelity"]["labels_per_class"] == 5 and record["config"]["fastrain.stages"] == 4
    rerun = run_cli("trial", "--task", "cora-fewshot", "--config", "chosen.yaml", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    rows = {line.split()[0]: line.split() for line in rerun.stdout.splitlines() if line.strip()}
    for metric in ("val_accuracy", "test_accuracy", "pseudo_labels", "train_edges"):  # same seeds, same code path: the same numbers
        assert rows[metric][3] == "1.000" and float(rows[metric][1]) == pytest.approx(self_trained[metric], rel=1e-3)
