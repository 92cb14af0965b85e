"""course_lib.jsonio: JSON save/load with numpy/torch values and atomic writes."""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib import jsonio
from course_lib.jsonio import load_json, save_json


def test_round_trip_nested_numpy_and_torch(tmp_path):
    data = {
        "step": np.int64(3),
        "stats": {
            "objective/kl": np.float32(0.25),
            "ppo/mean_scores": torch.tensor(1.5),
            "tokens/queries_dist": np.array([2, 5, 8]),
            "rewards": torch.tensor([[1.0, -2.0], [0.5, 4.0]]),
            "flag": np.bool_(True),
        },
        "history": [{"loss": np.float64(0.125)}, (1, 2)],
        "path": Path("build") / "stats.json",
        7: "int key",
    }
    path = save_json(data, tmp_path / "stats.json")
    assert path == tmp_path / "stats.json"
    assert load_json(path) == {
        "step": 3,
        "stats": {
            "objective/kl": 0.25,
            "ppo/mean_scores": 1.5,
            "tokens/queries_dist": [2, 5, 8],
            "rewards": [[1.0, -2.0], [0.5, 4.0]],
            "flag": True,
        },
        "history": [{"loss": 0.125}, [1, 2]],
        "path": str(Path("build") / "stats.json"),
        "7": "int key",
    }
    loaded = load_json(path)
    assert type(loaded["step"]) is int and type(loaded["stats"]["objective/kl"]) is float


def test_nan_and_inf_become_null(tmp_path):
    data = {"nan": float("nan"), "np_nan": np.float64("nan"), "inf": float("inf"),
            "torch": torch.tensor([1.0, float("nan"), -float("inf")]), "ok": 2.0}
    path = save_json(data, tmp_path / "x.json")
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    assert load_json(path) == {"nan": None, "np_nan": None, "inf": None, "torch": [1.0, None, None], "ok": 2.0}


def test_indent_and_parent_folders(tmp_path):
    path = save_json({"a": [1, 2]}, tmp_path / "deep" / "er" / "c.json", indent=None)
    assert path.read_text(encoding="utf-8") == '{"a": [1, 2]}'
    save_json({"a": 1}, path)  # default indent=1
    assert path.read_text(encoding="utf-8") == '{\n "a": 1\n}'


def test_unstorable_value_is_a_type_error_and_leaves_the_old_file(tmp_path):
    path = save_json({"old": [1, 2, 3]}, tmp_path / "stats.json")
    before = path.read_bytes()
    with pytest.raises(TypeError, match="cannot store object as JSON"):
        save_json({"new": object()}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.json"]


def test_failure_while_replacing_leaves_old_file_and_no_temp_file(tmp_path, monkeypatch):
    path = save_json({"old": 1}, tmp_path / "stats.json")
    before = path.read_bytes()

    def broken_replace(src, dst):
        assert Path(src).parent == tmp_path and Path(src).name.startswith(".stats.json.")
        assert json.loads(Path(src).read_text(encoding="utf-8")) == {"new": 2}  # the new text was written
        raise OSError("disk full")

    monkeypatch.setattr(jsonio.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_json({"new": 2}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.json"]


def test_overwrite_replaces_the_content(tmp_path):
    path = tmp_path / "s.json"
    save_json({"v": 1}, path)
    save_json({"v": 2}, str(path))  # str paths work too
    assert load_json(str(path)) == {"v": 2}
    assert os.listdir(tmp_path) == ["s.json"]


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "stats.json"
    with pytest.raises(FileNotFoundError) as err:
        load_json(missing)
    assert str(missing) in str(err.value)


def test_nan_inside_numpy_array_scalar(tmp_path):
    path = save_json(np.array([0.5, math.nan]), tmp_path / "a.json")
    assert load_json(path) == [0.5, None]
