import pickle

import pytest

from autotradeoff.data import find_files
from autotradeoff.errors import DataMissingError, UsageError
from autotradeoff.tasks.planetoid_data import _stage_raw

from conftest import DATA


def test_unset_data_env_falls_back_to_cache_and_names_what_it_looked_for(monkeypatch, tmp_path):
    monkeypatch.delenv("AUTOTRADEOFF_DATA")
    monkeypatch.setenv("AUTOTRADEOFF_CACHE", str(tmp_path))
    with pytest.raises(DataMissingError) as err:
        find_files("planetoid/Cora/raw", ["ind.cora.allx"], what="Planetoid Cora", download=lambda d: None)
    message = str(err.value)
    assert str(tmp_path / "data" / "planetoid/Cora/raw") in message and "ind.cora.allx" in message
    assert "offline" in message and "\n" not in message


def test_data_env_pointing_nowhere_is_a_usage_error(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTOTRADEOFF_DATA", str(tmp_path / "nope"))
    with pytest.raises(UsageError, match="AUTOTRADEOFF_DATA=.*nope.* is not a directory"):
        find_files("planetoid/Cora/raw", ["x"], what="Cora")


def test_read_only_raw_files_are_staged_with_public_split_rebuilt(tmp_path):
    stage = tmp_path / "raw"
    _stage_raw(DATA / "planetoid" / "Cora" / "raw", stage, "cora")
    with open(stage / "ind.cora.ally", "rb") as f:
        ally = pickle.load(f, encoding="latin1")
    with open(stage / "ind.cora.y", "rb") as f:
        y = pickle.load(f, encoding="latin1")
    assert y.shape == (140, 7) and (y == ally[:140]).all() and y.sum(0).tolist() == [20] * 7
