"""course_lib.evidence: what hidden tests send to the grader, as plain JSON data."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib import evidence


class AlwaysEqual:
    def __eq__(self, other):
        return True


class SneakyFloat(float):
    def __float__(self):
        return 42.0


def test_values_become_plain_json_with_types_kept():
    plain = evidence.to_plain({"b": [1, 2.5, True, None, "x"], "a": (torch.tensor([[1, 2]]), np.float32(0.5))})
    assert plain == {"__dict__": [["a", [{"__tensor__": "torch.int64", "shape": [1, 2], "data": [1, 2]}, 0.5]],
                                  ["b", [1, 2.5, True, None, "x"]]]}
    assert json.loads(json.dumps(plain)) == plain
    frame = evidence.to_plain(pd.DataFrame({"q": ["a"], "r": [1.5]}))
    assert frame == {"__frame__": [["q", ["a"]], ["r", [1.5]]]}
    assert evidence.to_plain(float("nan")) == {"__float__": "nan"}


def test_objects_that_could_fake_equality_are_recorded_by_type_only():
    assert evidence.to_plain(AlwaysEqual()) == {"__unsupported__": f"{__name__}.AlwaysEqual"}
    assert evidence.to_plain(SneakyFloat(1.5)) == 1.5          # the stored value, not what __float__ claims


def test_record_does_nothing_outside_grading(monkeypatch, capsys):
    monkeypatch.delenv("COURSE_GRADING", raising=False)
    evidence.record("k", 1)
    assert capsys.readouterr().out == ""


def test_record_displays_the_value_under_its_mime_type_while_grading(monkeypatch):
    shown = []
    monkeypatch.setenv("COURSE_GRADING", "1")
    import IPython.display

    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append((obj, raw)))
    evidence.record("pad", torch.tensor([1, 0]), rtol=0.5)
    (obj, raw), = shown
    assert raw is True
    assert obj[evidence.MIME] == {"key": "pad", "rtol": 0.5, "atol": 1e-8,
                                  "value": {"__tensor__": "torch.int64", "shape": [2], "data": [1, 0]}}


@pytest.mark.parametrize("depth", [25])
def test_deep_nesting_is_cut(depth):
    value = []
    for _ in range(depth):
        value = [value]
    assert "__unsupported__" in json.dumps(evidence.to_plain(value))
