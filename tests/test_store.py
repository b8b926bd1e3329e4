import json
import math

import pytest

from gradflow._store import ResultStore, config_hash


def test_store_round_trip_and_resume(tmp_path):
    cfg = {"sizes": [1, 2], "rtol": 1e-8}
    store = ResultStore(tmp_path / "run", cfg)
    assert len(store) == 0 and store.get("a=1") is None
    store.put("a=1", {"loss": 0.5, "bad": math.nan})
    store.put("a=2", {"loss": 0.25})
    # A second process reopening the same folder with the same configuration sees both points.
    again = ResultStore(tmp_path / "run", dict(cfg))
    assert again.keys() == ["a=1", "a=2"]
    assert again.get("a=1") == {"loss": 0.5, "bad": None}
    assert "a=2" in again and "a=3" not in again
    assert dict(again.items())["a=2"]["loss"] == 0.25
    assert not list((tmp_path / "run" / "points").glob("*.tmp"))


def test_store_refuses_another_configuration(tmp_path):
    ResultStore(tmp_path, {"n": 1}).put("k", {"v": 1})
    with pytest.raises(ValueError, match="another configuration.*overwrite"):
        ResultStore(tmp_path, {"n": 2})
    # The refused open lost nothing.
    assert ResultStore(tmp_path, {"n": 1}).get("k") == {"v": 1}
    fresh = ResultStore(tmp_path, {"n": 2}, overwrite=True)
    assert len(fresh) == 0
    assert json.loads((tmp_path / "store.json").read_text())["config"] == {"n": 2}


def test_store_key_validation_and_hash(tmp_path):
    store = ResultStore(tmp_path, {})
    with pytest.raises(ValueError, match="key '../x'"):
        store.put("../x", {})
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
