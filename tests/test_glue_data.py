"""GLUE TSVs (real SST-2 and RTE) and the official metrics."""

import pytest

from autotradeoff.errors import DataMissingError, UsageError
from autotradeoff.tasks.glue_data import load_split, score, validation_split

from conftest import DATA


def test_real_sst2_and_rte_load_with_their_published_sizes():
    assert len(load_split("sst2", "train")) == 67349 and len(load_split("sst2", "dev")) == 872
    rte = load_split("rte", "train")
    # GLUE's RTE train has 2,490 pairs; the shared copy lacks index 2, so count the file's own rows
    rows = (DATA / "glue" / "RTE" / "train.tsv").read_text(encoding="utf-8").count("\n") - 1
    assert len(rte) == rows >= 2489 and len(load_split("rte", "dev")) == 277
    assert all(len(e.text) == 2 for e in rte) and {e.label for e in rte} == {0, 1}


def test_validation_split_is_disjoint_seeded_stratified_and_capped():
    train = load_split("sst2", "train")
    fit, validation = validation_split(train, size=872, seed=3)
    assert abs(len(validation) - 872) <= 2 and len(fit) + len(validation) == len(train)
    assert validation_split(train, size=872, seed=3) == (fit, validation)
    assert set(map(id, fit)).isdisjoint(map(id, validation))
    share = lambda rows: sum(e.label for e in rows) / len(rows)  # noqa: E731
    assert abs(share(validation) - share(train)) < 0.005  # the label mix of train
    rte = load_split("rte", "train")
    assert len(validation_split(rte, size=872)[1]) <= 0.2 * len(rte)  # at most a fifth of a small train set


def test_official_metrics():
    preds, labels = [1, 1, 0, 0, 1, 0], [1, 0, 0, 0, 1, 1]
    sst2 = score("sst2", preds, labels)
    assert sst2["score"] == sst2["accuracy"] == pytest.approx(4 / 6)
    assert score("mrpc", preds, labels)["score"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert score("cola", preds, labels)["score"] == pytest.approx((2 * 2 - 1 * 1) / 9)
    assert score("cola", [1, 1, 1], [1, 0, 1])["mcc"] == 0.0  # constant prediction: MCC 0, not an error


def test_missing_task_folder_and_unknown_task_are_one_line_errors(monkeypatch, tmp_path):
    with pytest.raises(UsageError, match="unknown GLUE task 'sst3'; choices: sst2, rte, qnli, mrpc, cola"):
        load_split("sst3", "train")
    monkeypatch.setenv("AUTOTRADEOFF_OFFLINE", "1")
    with pytest.raises(DataMissingError, match="GLUE QNLI not found: looked for train.tsv, dev.tsv") as missing:
        load_split("qnli", "train")
    assert "nor as the Hugging Face dataset nyu-mll/glue (qnli)" in str(missing.value)  # both places named
    assert "\n" not in str(missing.value)
