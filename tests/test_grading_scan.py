"""course_instructor.grading.scan: which files are graded, and the flags a human reviewer sees."""
from __future__ import annotations

import copy
import json

from course_instructor.grading import scan


def _released():
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "id": "a", "metadata": {"nbgrader": {"grade_id": "ex1-sol", "solution": True,
                                                                   "grade": False, "locked": False}},
         "source": "def f():\n    # YOUR CODE HERE\n    raise NotImplementedError()", "outputs": [],
         "execution_count": None},
        {"cell_type": "code", "id": "b", "metadata": {"nbgrader": {"grade_id": "ex1-tests", "grade": True,
                                                                   "solution": False, "locked": True, "points": 2}},
         "source": "assert f() == 1", "outputs": [], "execution_count": None}]}


def _with_solution(code: str) -> dict:
    nb = _released()
    nb["cells"][0]["source"] = code
    return nb


def test_an_honest_solution_raises_no_flag():
    assert scan.scan_notebook(_with_solution("def f():\n    return sum([1])\n"), _released()) == []


def test_known_tricks_are_flagged():
    cases = {
        "get_ipython().set_custom_exc((Exception,), lambda *a: None)": ["exception-handler-override", "ipython-internals"],
        "import torch\ntorch.equal = lambda a, b: True": ["library-patched"],
        "import builtins\nbuiltins.isinstance = lambda *a: True": ["builtins-patched"],
        "class A:\n    def __eq__(self, o): return True": ["comparison-override"],
        "open('/x/solutions/rlhf_ppo/1.ipynb').read()": ["grader-files"],
        "import os\nos.fork()": ["spawns-processes"],
        "import socket": ["network"],
        "from course_lib.evidence import record": ["evidence-forgery"],
        "from course_instructor.reference import pad_to_length as f": ["instructor-package"],
        "import importlib\ndef f(): return importlib.import_module('course_' + 'instructor')": ["dynamic-access"],
    }
    for code, flags in cases.items():
        found = scan.scan_notebook(_with_solution(code), _released())
        assert all(f in found for f in flags), (code, found)


def test_edited_deleted_and_duplicated_locked_cells_are_flagged():
    nb = _released()
    nb["cells"][1]["source"] = "pass"
    assert scan.scan_notebook(nb, _released()) == ["locked-cell-edited:ex1-tests"]
    nb = _released()
    nb["cells"][1]["metadata"]["nbgrader"]["points"] = 100
    assert scan.scan_notebook(nb, _released()) == ["cell-metadata-edited:ex1-tests"]
    nb = _released()
    del nb["cells"][1]
    assert scan.scan_notebook(nb, _released()) == ["graded-cell-deleted:ex1-tests"]
    nb = _released()
    nb["cells"].append(copy.deepcopy(nb["cells"][1]))
    assert scan.scan_notebook(nb, _released()) == ["duplicate-cell:ex1-tests"]


def test_staging_keeps_only_readable_notebooks_with_the_assignment_names(tmp_path):
    src, dest = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "1_a.ipynb").write_text(json.dumps(_with_solution("def f(): return 1")))
    (src / "2_b.ipynb").write_text('{"cells": [')
    (src / "1_a-Copy1.ipynb").write_text(json.dumps(_released()))
    (src / "notes.txt").write_text("hi")
    (src / "timestamp.txt").write_text("2026-11-29 10:00:00.000000 UTC\n")
    flags = scan.stage_submission(src, dest, {"1_a.ipynb": _released(), "2_b.ipynb": _released(),
                                              "3_c.ipynb": _released()})
    assert sorted(p.name for p in dest.iterdir()) == ["1_a.ipynb"]     # the student's timestamp stays out
    assert flags == ["unexpected-file:1_a-Copy1.ipynb", "unreadable-notebook:2_b.ipynb (not valid JSON (JSONDecodeError))",
                     "unexpected-file:notes.txt", "student-timestamp", "missing-notebook:2_b.ipynb",
                     "missing-notebook:3_c.ipynb"]


def test_restore_structure_puts_back_metadata_types_and_deleted_graded_cells():
    released = _released()
    nb = _released()
    nb["cells"][1]["metadata"]["nbgrader"].update(grade=False, points=100)
    nb["cells"][1]["cell_type"] = "markdown"
    restored = scan.restore_structure(nb, released)
    assert restored["cells"][1]["metadata"]["nbgrader"] == released["cells"][1]["metadata"]["nbgrader"]
    assert restored["cells"][1]["cell_type"] == "code" and restored["cells"][1]["outputs"] == []
    gone = _released()
    del gone["cells"][1]
    gone["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "my notes"})
    restored = scan.restore_structure(gone, released)
    assert [c.get("id") for c in restored["cells"]] == ["a", "b", None]     # back after the cell before it
    assert restored["cells"][2]["source"] == "my notes"
