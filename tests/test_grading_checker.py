"""The checker never crashes: malformed evidence, unknown grade_ids, stripped locked cells (issue 22)."""
from __future__ import annotations

import copy
import time

import pytest

from course_lib.evidence import MIME, to_plain
from course_instructor.grading import scan, verify


# ---- evidence of any size or type -------------------------------------------------------------
def _entry(key, value, rtol=1e-5, atol=1e-8):
    return {"output_type": "display_data", "metadata": {},
            "data": {MIME: {"key": key, "value": value, "rtol": rtol, "atol": atol}}}


def _test_cell(gid, outputs):
    return {"cell_type": "code", "id": gid, "source": "check()", "execution_count": 1, "outputs": list(outputs),
            "metadata": {"nbgrader": {"grade_id": gid, "grade": True, "solution": False, "points": 1}}}


EXPECTED = {"t1": [{"key": "v", "value": 2.5, "rtol": 1e-5, "atol": 1e-8}],
            "t2": [{"key": "v", "value": [1, 2, 3], "rtol": 1e-5, "atol": 1e-8}],
            "t3": [{"key": "v", "value": to_plain(__import__("torch").tensor([[1.0, 2.0]])), "rtol": 1e-5,
                    "atol": 1e-8}]}


def _deep(n):
    v = 1
    for _ in range(n):
        v = [v]
    return v


HOSTILE = {
    "huge int": 10 ** 400,
    "huger int": 10 ** 5000,             # more digits than JSON can carry: forged
    "negative huge int": -(10 ** 400),
    "nested beyond recursion": _deep(100_000),
    "raw nan": float("nan"),
    "raw inf": float("inf"),
    "unknown float tag": {"__float__": "1e999"},
    "float tag of another type": {"__float__": ["nan"]},
    "dict with odd keys": {1: 2, (3,): 4},
    "dict not a tag": {"anything": "goes"},
    "tensor tag lying about its shape": {"__tensor__": "torch.float32", "shape": [10 ** 30], "data": [1.0]},
    "tensor tag with nested shape": {"__tensor__": "torch.float32", "shape": _deep(50_000), "data": []},
    "object": object(),
    "bytes": b"\x00" * 10,
    "set": {1, 2},
    "100 MB string": "x" * (100 << 20),
    "10 million items": [0] * 10_000_000,
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_same_is_total_and_says_no(name):
    value = HOSTILE[name]
    for want in (2.5, 3, "x", None, [1, 2, 3], {"__float__": "nan"}, EXPECTED["t3"][0]["value"],
                 {"__dict__": [["a", 1]]}):
        assert verify.same(want, value, 1e-5, 1e-8) is False, (name, want)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_malformed_evidence_fails_its_cell_flags_it_and_spares_the_others(name):
    nb = {"cells": [_test_cell("t1", [_entry("v", HOSTILE[name])]),
                    _test_cell("t2", [_entry("v", [1, 2, 3])]),
                    _test_cell("t3", [_entry("v", EXPECTED["t3"][0]["value"])])]}
    t0 = time.monotonic()
    verdict = verify.check_test_cells(nb, EXPECTED)
    assert time.monotonic() - t0 < 30
    by_id = {v.grade_id: v for v in verdict.cells}
    assert not by_id["t1"].passed and by_id["t2"].passed and by_id["t3"].passed
    assert nb["cells"][0]["outputs"][0]["ename"] == "GraderCheckFailed"
    if name not in ("huge int", "negative huge int"):       # a huge int is plain data, merely wrong
        assert by_id["t1"].malformed, (name, by_id["t1"].reason)
    assert not by_id["t2"].malformed and not by_id["t3"].malformed


def test_a_huge_int_where_an_int_is_expected_compares_exactly():
    assert verify.same(10 ** 400, 10 ** 400, 0, 0)
    assert not verify.same(10 ** 400, 10 ** 400 + 1, 1, 1)
    assert not verify.same(10 ** 400, 1e300, 1, 1)
    assert verify.same(1e300, 10 ** 300, 1e-5, 0)              # an int close to a float is close


def test_the_tolerances_are_the_solutions_not_the_students():
    nb = {"cells": [_test_cell("t1", [_entry("v", 1000.0, rtol=1e9, atol=1e9)])]}
    assert not verify.check_test_cells(nb, EXPECTED).cells[0].passed
    for rtol in ("0.1", None, [1], float("nan"), float("inf"), -1.0):
        assert verify.same(2.5, 2.6, rtol, 0.2) is False
    assert verify.same(2.5, 2.6, 0, 0.2) is True


def test_what_to_plain_makes_is_well_formed():
    import numpy as np
    import pandas as pd
    import torch

    values = [1, 2.5, float("nan"), float("-inf"), "s", None, True, [1, [2, [3]]], (1, 2),
              {"b": 1, 2: [3.0]}, torch.tensor([[1.5, float("nan")]]), torch.tensor([True, False]),
              torch.tensor(3), torch.zeros(0, 4), np.arange(6).reshape(2, 3), np.float32(1.5),
              pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), pd.Series([1.0, 2.0]), object(),
              _deep(40), {"k": {"k": {"k": [1]}}}]
    for v in values:
        plain = to_plain(v)
        assert verify.malformed(plain) == "", (v, plain)
        assert verify.same(plain, copy.deepcopy(plain), 0, 0) or "__unsupported__" in repr(plain)


def test_broken_outputs_do_not_stop_the_check():
    nb = {"cells": [
        {**_test_cell("t1", []), "outputs": "not a list"},
        {**_test_cell("t2", []), "outputs": [None, 3, {"output_type": "display_data", "data": "x"},
                                             {"output_type": "display_data", "data": {MIME: "x"}},
                                             _entry("v", [1, 2, 3])]},
        {**_test_cell("t3", []), "metadata": {"nbgrader": "broken"}},
        "not a cell"]}
    verdict = verify.check_test_cells(nb, EXPECTED)
    assert [(v.grade_id, v.passed) for v in verdict.cells] == [("t1", False), ("t2", True)]
    assert verdict.missing == ["t3"]
