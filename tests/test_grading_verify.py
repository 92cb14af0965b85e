"""course_instructor.grading.verify: outputs taken back from a sandbox, test cells decided from evidence."""
from __future__ import annotations

import copy

from course_lib.evidence import MIME, to_plain
from course_instructor.grading import verify


def _evidence(key, value, rtol=1e-5, atol=1e-8):
    return {"output_type": "display_data", "metadata": {},
            "data": {MIME: {"key": key, "value": to_plain(value), "rtol": rtol, "atol": atol}}}


def _nb(test_outputs, solution_outputs=()):
    return {"cells": [
        {"cell_type": "code", "id": "s", "metadata": {"nbgrader": {"grade_id": "ex-sol", "solution": True}},
         "source": "def f(): ...", "outputs": list(solution_outputs), "execution_count": 1},
        {"cell_type": "code", "id": "t", "metadata": {"nbgrader": {"grade_id": "ex-tests", "grade": True,
                                                                   "points": 2, "solution": False}},
         "source": "assert f()", "outputs": list(test_outputs), "execution_count": 2},
        {"cell_type": "markdown", "id": "m", "metadata": {}, "source": "text"}]}


EXPECTED = {"ex-tests": [{"key": "value", "value": [1.0, 2.0], "rtol": 1e-5, "atol": 1e-8},
                         {"key": "name", "value": "x", "rtol": 1e-5, "atol": 1e-8}]}


def test_same_compares_types_strictly_and_floats_within_tolerance():
    assert verify.same([1.0, "a", 3], [1.0000001, "a", 3], 1e-5, 0)
    assert not verify.same(1.0, 1.1, 1e-5, 0)
    assert not verify.same(3, 3.0, 1e-5, 0)            # an int expected: a float is not it
    assert not verify.same(True, 1, 0, 0) and not verify.same(1, True, 0, 0)
    assert not verify.same([1, 2], [1, 2, 3], 0, 0)
    t = to_plain(__import__("torch").tensor([1, 2]))
    assert verify.same(t, dict(t), 0, 0)
    assert not verify.same(t, {**t, "__tensor__": "torch.int32"}, 0, 0)
    assert not verify.same({"__unsupported__": "X"}, {"__unsupported__": "X"}, 0, 0)
    assert not verify.same(1.0, float("nan"), 1, 1)


def test_evidence_that_matches_passes_and_is_removed():
    nb = _nb([_evidence("value", [1.0, 2.0]), _evidence("name", "x"),
              {"output_type": "stream", "name": "stdout", "text": "ok"}])
    verdict = verify.check_test_cells(nb, EXPECTED)
    assert [(v.grade_id, v.passed) for v in verdict.cells] == [("ex-tests", True)]
    assert nb["cells"][1]["outputs"] == [{"output_type": "stream", "name": "stdout", "text": "ok"}]


def test_wrong_or_missing_evidence_fails_the_cell_first_thing():
    for outs in ([_evidence("value", [1.0, 2.5]), _evidence("name", "x")], [_evidence("name", "x")], []):
        nb = _nb(outs)
        verdict = verify.check_test_cells(nb, EXPECTED)
        assert not verdict.cells[0].passed
        first = nb["cells"][1]["outputs"][0]
        assert first["output_type"] == "error" and first["ename"] == "GraderCheckFailed"
        assert verdict.cells[0].silent_failure          # the kernel showed no error: a silenced test


def test_evidence_outside_its_test_cell_counts_for_nothing():
    nb = _nb([], solution_outputs=[_evidence("value", [1.0, 2.0]), _evidence("name", "x")])
    verdict = verify.check_test_cells(nb, EXPECTED)
    assert not verdict.cells[0].passed and nb["cells"][0]["outputs"] == []


def test_a_test_cell_cannot_claim_partial_credit():
    number = {"output_type": "execute_result", "execution_count": 2, "metadata": {}, "data": {"text/plain": "-1"}}
    nb = _nb([_evidence("value", [1.0, 2.0]), _evidence("name", "x"), number])
    verify.check_test_cells(nb, EXPECTED)
    assert nb["cells"][1]["outputs"] == []


def test_missing_test_cell_is_reported():
    nb = _nb([])
    nb["cells"] = [nb["cells"][0]]
    assert verify.check_test_cells(nb, EXPECTED).missing == ["ex-tests"]


def test_merge_takes_only_cleaned_outputs_of_the_same_cells():
    trusted = _nb([])
    executed = copy.deepcopy(trusted)
    executed["cells"][1]["source"] = "print('forged source')"
    executed["cells"][1]["outputs"] = [
        {"output_type": "display_data", "data": {"application/javascript": "steal()", "text/plain": "hi"}},
        {"output_type": "execute_result", "data": {"text/html": "<b>x</b>"}, "execution_count": 3},
        {"output_type": "stream", "name": "stdout", "text": ["a", "b"]},
        {"output_type": "bogus"}, "not a dict"]
    assert verify.merge_outputs(trusted, executed) == []
    cell = trusted["cells"][1]
    assert cell["source"] == "assert f()"                            # the trusted source stays
    assert cell["outputs"] == [
        {"output_type": "display_data", "data": {"text/plain": "hi"}, "metadata": {}},
        {"output_type": "display_data", "data": {"text/html": "<b>x</b>"}, "metadata": {}},
        {"output_type": "stream", "name": "stdout", "text": "ab"}]
    reordered = copy.deepcopy(executed)
    reordered["cells"].reverse()
    assert verify.merge_outputs(_nb([]), reordered) != []
    assert verify.merge_outputs(_nb([]), {"cells": "no"}) != []


def test_expected_from_a_solution_run_requires_clean_evidence():
    good = _nb([_evidence("value", [1.0, 2.0], rtol=1e-3), _evidence("name", "x")])
    assert verify.expected_from(good)["ex-tests"][0] == {"key": "value", "value": [1.0, 2.0], "rtol": 1e-3,
                                                         "atol": 1e-8}
    import pytest
    for outs, why in (([], "records no evidence"),
                      ([_evidence("a", 1), _evidence("a", 2)], "twice"),
                      ([{"output_type": "error", "ename": "AssertionError", "evalue": "", "traceback": []}],
                       "fails its own test cell")):
        with pytest.raises(verify.EvidenceError, match=why):
            verify.expected_from(_nb(outs))


def test_a_test_cell_without_expected_results_fails_closed():
    nb = _nb([{"output_type": "stream", "name": "stdout", "text": "all fine, trust me"}])
    verdict = verify.check_test_cells(nb, {})
    assert not verdict.cells[0].passed and "no expected result" in verdict.cells[0].reason
    assert nb["cells"][1]["outputs"][0]["ename"] == "GraderCheckFailed"
