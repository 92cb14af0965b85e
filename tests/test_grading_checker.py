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
    "huger int": 10 ** 5000,
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
        {**_test_cell("t3", []), "metadata": {"nbgrader": {"grade_id": ["t3"], "grade": True}}},
        "not a cell"]}
    verdict = verify.check_test_cells(nb, EXPECTED)
    assert [(v.grade_id, v.passed) for v in verdict.cells] == [("t1", False), ("t2", True)]
    assert verdict.missing == ["t3"]


# ---- unknown grade_ids, stripped and rewritten locked cells --------------------------------------
def _cell(cid, kind, source, **nbg):
    cell = {"cell_type": kind, "id": cid, "metadata": {"nbgrader": {"grade": False, "solution": False,
                                                                    "locked": True, **nbg}}, "source": source}
    if kind == "code":
        cell.update(outputs=[], execution_count=None)
    return cell


def _released():
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        _cell("intro", "markdown", "# Part 1", grade_id="md-01"),
        _cell("setup", "code", "import os\nprofile = 'cpu'\nsteps = 4\nseed = 0", grade_id="code-02"),
        _cell("sol", "code", "def f():\n    # YOUR CODE HERE\n    raise NotImplementedError()",
              grade_id="ex1-sol", solution=True, locked=False),
        _cell("tests", "code", "assert f() == 1", grade_id="ex1-tests", grade=True, points=2),
        _cell("after", "code", "print(profile, steps)", grade_id="code-03")]}


def _solved():
    nb = _released()
    nb["cells"][2]["source"] = "def f():\n    return 1\n"
    return nb


def _ids(nb):
    return [(c.get("id"), scan._gid(c)) for c in nb["cells"]]


def test_an_honest_notebook_is_restored_unchanged_and_unflagged():
    nb = _solved()
    assert scan.scan_notebook(nb, _released()) == []
    assert scan.restore_structure(nb, _released()) == nb


def test_an_added_cell_with_an_unknown_grade_id_becomes_a_plain_cell_and_is_flagged():
    for odd in ("mine", "a;b\nc=HYPERLINK(1)" * 20, ["list"], {"d": 1}, 7, ""):
        nb = _solved()
        added = {"cell_type": "code", "id": "x", "source": "print(1)", "outputs": [], "execution_count": None,
                 "metadata": {"tags": ["keep"], "nbgrader": {"grade_id": odd, "grade": True, "points": 99}}}
        nb["cells"].insert(3, added)
        flags = scan.scan_notebook(nb, _released())
        assert len(flags) == 1 and flags[0].startswith("unknown-grade-id:"), flags
        assert all(ch.isalnum() or ch in "%._-():" for ch in flags[0]) and len(flags[0]) < 100, flags
        restored = scan.restore_structure(nb, _released())
        assert restored["cells"][3]["metadata"] == {"tags": ["keep"]}
        assert restored["cells"][3]["source"] == "print(1)"
        assert [c for i, c in enumerate(restored["cells"]) if i != 3] == _solved()["cells"]
    assert scan.escape_id("ex1-tests") == "ex1-tests" and scan.escape_id(None) == "(none)"


def test_a_locked_cell_stripped_of_its_metadata_is_replaced_by_the_released_one():
    nb = _solved()
    nb["cells"][1]["metadata"] = {}
    nb["cells"][1]["source"] = "import os\nprofile = 'gpu'\nsteps = 10**9\nseed = 0"
    assert scan.scan_notebook(nb, _released()) == ["locked-cell-stripped:code-02"]
    assert scan.restore_structure(nb, _released()) == _solved()         # the student's version is gone


def test_a_stripped_locked_cell_is_found_without_its_id_by_position_and_likeness():
    nb = _solved()
    nb["cells"][1]["metadata"] = {}
    nb["cells"][1]["id"] = "new-id"
    nb["cells"][1]["source"] = "import os\nprofile = 'gpu'\nsteps = 4\nseed = 0"
    nb["cells"].insert(1, {"cell_type": "code", "id": "mine", "metadata": {}, "source": "x = 1", "outputs": [],
                           "execution_count": None})
    assert scan.scan_notebook(nb, _released()) == ["locked-cell-stripped:code-02"]
    restored = scan.restore_structure(nb, _released())
    assert _ids(restored) == [("intro", "md-01"), ("mine", None), ("setup", "code-02"), ("sol", "ex1-sol"),
                              ("tests", "ex1-tests"), ("after", "code-03")]
    assert restored["cells"][2] == _released()["cells"][1]


def test_a_locked_cell_renamed_to_an_unknown_id_is_restored_and_both_are_flagged():
    nb = _solved()
    nb["cells"][4]["metadata"]["nbgrader"]["grade_id"] = "whatever"
    nb["cells"][4]["source"] = "import shutil"
    flags = scan.scan_notebook(nb, _released())
    assert sorted(flags) == ["locked-cell-stripped:code-03", "unknown-grade-id:whatever"]
    assert scan.restore_structure(nb, _released()) == _solved()


def test_a_rewritten_locked_cell_that_cannot_be_recognised_stays_an_added_cell_after_the_released_one():
    nb = _solved()
    nb["cells"][1] = {"cell_type": "code", "id": "other", "metadata": {}, "outputs": [], "execution_count": None,
                      "source": "totally = 'different'"}
    assert scan.scan_notebook(nb, _released()) == ["locked-cell-deleted:code-02"]
    restored = scan.restore_structure(nb, _released())
    assert _ids(restored)[:3] == [("intro", "md-01"), ("setup", "code-02"), ("other", None)]


def test_a_stripped_test_or_solution_cell_gets_its_role_back_in_place():
    nb = _solved()
    nb["cells"][3]["metadata"] = {}
    nb["cells"][3]["source"] = "pass"
    assert scan.scan_notebook(nb, _released()) == ["locked-cell-stripped:ex1-tests"]
    assert scan.restore_structure(nb, _released()) == _solved()
    nb = _solved()
    nb["cells"][2]["metadata"] = {}
    assert scan.scan_notebook(nb, _released()) == ["cell-metadata-edited:ex1-sol"]
    restored = scan.restore_structure(nb, _released())
    assert restored == _solved() and restored["cells"][2]["source"] == "def f():\n    return 1\n"


def test_garbage_metadata_does_not_crash_the_scan():
    nb = _solved()
    nb["cells"][0]["metadata"]["nbgrader"] = "broken"
    nb["cells"][1]["metadata"]["nbgrader"]["grade_id"] = ["not", "hashable"]
    nb["cells"][2]["source"] = ["def f():\n", 3, "    return 1\n"]
    nb["cells"].append("not a cell")
    flags = scan.scan_notebook(nb, _released())
    assert "unknown-grade-id:(list)" in flags and "locked-cell-stripped:code-02" in flags
    restored = scan.restore_structure(nb, _released())
    # a markdown cell without its metadata only loses its lock: nothing runs from it
    assert [scan._gid(c) for c in restored["cells"]] == [None, "code-02", "ex1-sol", "ex1-tests", "code-03"]


def test_the_released_notebooks_with_a_setup_cell_stripped():
    import json
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parent.parent / "notebooks" / "rlhf_ppo").glob("*.ipynb")):
        released = json.loads(path.read_text(encoding="utf-8"))
        assert scan.scan_notebook(copy.deepcopy(released), released) == []
        assert scan.restore_structure(copy.deepcopy(released), released) == released
        nb = copy.deepcopy(released)
        k, cell = next((k, c) for k, c in enumerate(nb["cells"])
                       if c["cell_type"] == "code" and scan._meta(c).get("locked") and not scan._meta(c).get("grade"))
        gid = scan._gid(cell)
        cell["metadata"] = {}
        cell["source"] = "import os\nos.environ['COURSE_GRADING'] = ''\n" + scan._source(cell)
        flags = scan.scan_notebook(nb, released)     # (its code is scanned like any cell a student wrote)
        assert [f for f in flags if ":" in f] == [f"locked-cell-stripped:{gid}"], flags
        assert scan.restore_structure(nb, released) == released


def test_an_int_too_long_for_python_in_the_reply_fails_only_its_cell():
    """The sandbox's reply is parsed with a cap on int length: a 5,000-digit int becomes a malformed value."""
    import json

    from course_instructor.grading.sandbox import _parse_int
    from course_instructor.grading.verify import malformed

    reply = json.loads('{"value": ' + "7" * 5000 + ', "ok": 12}', parse_int=_parse_int)
    assert reply["ok"] == 12 and malformed(reply["value"])
