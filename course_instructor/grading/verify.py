"""Decide each test cell from evidence, in the grader's own process.

The executed notebook that comes back from a sandbox is untrusted: the
student's code ran in the same kernel and could have hidden its errors,
forged execute replies or printed anything.  This module takes from it only
what it needs, checked:

* :func:`merge_outputs` copies the *outputs* of each cell onto the trusted
  notebook (whose sources nbgrader restored from the gradebook), after
  rebuilding every output from known fields (:func:`clean_output`);
* :func:`check_test_cells` compares the evidence each hidden test recorded
  (:mod:`course_lib.evidence`) with what the instructor's solution recorded,
  and puts an error output first in every test cell whose evidence is missing
  or wrong, so nbgrader scores it 0 whatever else the cell shows.  A cell that
  fails here while the kernel showed no error is reported as
  ``check-failed-silently``: the signature of a silenced test.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from course_lib.evidence import MIME

#: MIME types that could run code in a browser showing the notebook (formgrader, feedback): dropped.
ACTIVE_MIME = ("application/javascript", "text/javascript", "application/x-javascript",
               "application/vnd.jupyter.widget-state+json")
MAX_EXPECTED_KEYS = 10_000


class EvidenceError(ValueError):
    """The instructor's solution did not record usable evidence (a course bug, not a student's)."""


# ---- cleaning untrusted outputs --------------------------------------------------------
def _text(value) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    return None


def clean_output(out) -> dict | None:
    """A fresh output dict built from ``out``'s known fields, or None if ``out`` is not a valid output."""
    if not isinstance(out, dict):
        return None
    kind = out.get("output_type")
    if kind == "stream":
        text = _text(out.get("text"))
        if out.get("name") not in ("stdout", "stderr") or text is None:
            return None
        return {"output_type": "stream", "name": out["name"], "text": text}
    if kind == "error":
        tb = out.get("traceback", [])
        if not isinstance(tb, list):
            tb = []
        return {"output_type": "error", "ename": str(out.get("ename", ""))[:1000],
                "evalue": str(out.get("evalue", ""))[:10000], "traceback": [str(t)[:10000] for t in tb[:200]]}
    if kind in ("display_data", "execute_result"):
        data = out.get("data")
        if not isinstance(data, dict):
            return None
        clean = {}
        for mime, value in data.items():
            if not isinstance(mime, str) or mime in ACTIVE_MIME:
                continue
            if mime.endswith("json"):
                clean[mime] = value            # JSON data stays JSON (evidence, widget views)
            elif (text := _text(value)) is not None:
                clean[mime] = text
        if not clean:
            return None
        meta = out.get("metadata") if isinstance(out.get("metadata"), dict) else {}
        if kind == "execute_result":
            if "text/plain" not in clean:
                kind = "display_data"
            else:
                count = out.get("execution_count")
                return {"output_type": kind, "data": clean, "metadata": meta,
                        "execution_count": count if isinstance(count, int) else None}
        return {"output_type": "display_data", "data": clean, "metadata": meta}
    return None


def merge_outputs(trusted: dict, executed: dict) -> list[str]:
    """Copy the cleaned outputs of ``executed``'s code cells onto ``trusted`` (in place).

    The two must have the same cells (type and id, in order); otherwise nothing
    is copied and the reason is returned: the trusted notebook then scores as
    unexecuted.  Returns the problems found (empty when all is well).
    """
    cells, got = trusted.get("cells", []), executed.get("cells") if isinstance(executed, dict) else None
    if not isinstance(got, list) or len(got) != len(cells):
        return ["the executed notebook does not have the cells that were sent"]
    for i, (mine, theirs) in enumerate(zip(cells, got)):
        if not isinstance(theirs, dict) or theirs.get("cell_type") != mine.get("cell_type") \
                or theirs.get("id") != mine.get("id"):
            return [f"cell {i} of the executed notebook is not the cell that was sent"]
    for mine, theirs in zip(cells, got):
        if mine.get("cell_type") != "code":
            continue
        outs = theirs.get("outputs") if isinstance(theirs.get("outputs"), list) else []
        mine["outputs"] = [o for o in (clean_output(x) for x in outs[:10000]) if o is not None]
        count = theirs.get("execution_count")
        mine["execution_count"] = count if isinstance(count, int) else None
    return []


# ---- evidence ------------------------------------------------------------------------------
def evidence_of(cell: dict) -> list[dict]:
    """The evidence entries displayed in a cell's outputs, in order (untrusted shape checked)."""
    found = []
    for out in cell.get("outputs", []):
        if out.get("output_type") in ("display_data", "execute_result"):
            entry = out.get("data", {}).get(MIME)
            if isinstance(entry, dict) and isinstance(entry.get("key"), str) and "value" in entry:
                found.append(entry)
    return found


def strip_evidence(cell: dict) -> None:
    cell["outputs"] = [o for o in cell.get("outputs", [])
                       if not (isinstance(o.get("data"), dict) and MIME in o["data"])]


def _grade_id(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def is_autograded_test(cell: dict) -> bool:
    m = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type") == "code" and bool(m.get("grade")) and not m.get("solution")


def expected_from(executed_solution: dict) -> dict[str, list[dict]]:
    """``{grade_id: [{key, value, rtol, atol}, ...]}`` of every test cell of the instructor's run.

    Raises :class:`EvidenceError` when a test cell recorded nothing, recorded a
    key twice, recorded a value of an unsupported type, or failed in the
    solution itself: the hidden tests must be fixed before anyone is graded.
    """
    expected = {}
    for cell in executed_solution.get("cells", []):
        if not is_autograded_test(cell):
            continue
        gid = _grade_id(cell)
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"
                  or (o.get("output_type") == "stream" and o.get("name") == "stderr")]
        if errors:
            first = errors[0]
            raise EvidenceError(f"the solution fails its own test cell {gid}: "
                                f"{first.get('ename', 'stderr')}: {str(first.get('evalue', first.get('text')))[:300]}")
        entries = evidence_of(cell)
        if not entries:
            raise EvidenceError(f"test cell {gid} records no evidence: its hidden tests must call "
                                f"course_lib.evidence.record(key, value)")
        keys = [e["key"] for e in entries]
        if len(set(keys)) != len(keys):
            raise EvidenceError(f"test cell {gid} records a key twice: {sorted(k for k in keys if keys.count(k) > 1)}")
        if "__unsupported__" in json.dumps([e["value"] for e in entries]):
            raise EvidenceError(f"test cell {gid} records a value that is not plain data")
        expected[gid] = [{"key": e["key"], "value": e["value"], "rtol": float(e.get("rtol", 1e-5)),
                          "atol": float(e.get("atol", 1e-8))} for e in entries]
    if not expected:
        raise EvidenceError("the solution notebook has no autograded test cells with evidence")
    return expected


def _is_number(x) -> bool:
    return type(x) in (int, float)


def same(expected, got, rtol: float, atol: float) -> bool:
    """``got`` equals ``expected`` (JSON data from :func:`course_lib.evidence.to_plain`); floats within tolerance."""
    if type(expected) is float:
        return _is_number(got) and math.isfinite(got) and abs(got - expected) <= atol + rtol * abs(expected)
    if type(expected) in (bool, int, str) or expected is None:
        return type(got) is type(expected) and got == expected
    if type(expected) is list:
        return type(got) is list and len(got) == len(expected) and \
            all(same(e, g, rtol, atol) for e, g in zip(expected, got))
    if type(expected) is dict:
        if type(got) is not dict or set(got) != set(expected):
            return False
        if "__unsupported__" in expected:
            return False
        if "__tensor__" in expected:
            return got["__tensor__"] == expected["__tensor__"] and got.get("shape") == expected.get("shape") \
                and same(expected["data"], got.get("data"), rtol, atol)
        return all(same(expected[k], got[k], rtol, atol) for k in expected)
    return False


@dataclass
class CellVerdict:
    grade_id: str
    passed: bool
    reason: str = ""
    kernel_error: bool = False     # the kernel itself showed an error or stderr in this cell

    @property
    def silent_failure(self) -> bool:
        return not self.passed and not self.kernel_error


@dataclass
class NotebookVerdict:
    cells: list[CellVerdict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)    # test cells not in the notebook


def check_test_cells(nb: dict, expected: dict[str, list[dict]]) -> NotebookVerdict:
    """Check every autograded test cell of ``nb`` (in place: evidence removed, failures marked)."""
    verdict = NotebookVerdict()
    seen = set()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        gid = _grade_id(cell)
        if not is_autograded_test(cell) or gid in seen:
            strip_evidence(cell)            # evidence anywhere else counts for nothing
            continue
        seen.add(gid)
        kernel_error = any(o.get("output_type") == "error" or
                           (o.get("output_type") == "stream" and o.get("name") == "stderr")
                           for o in cell.get("outputs", []))
        got: dict[str, dict] = {}
        for entry in evidence_of(cell):
            got.setdefault(entry["key"], entry)     # the first value recorded under a key counts
        reason = "" if gid in expected else "the grader has no expected result for this test cell"
        for want in expected.get(gid, []):
            entry = got.get(want["key"])
            if entry is None:
                reason = f"no result recorded for {want['key']!r}"
                break
            if not same(want["value"], entry["value"], want["rtol"], want["atol"]):
                reason = f"{want['key']!r} differs from the expected result"
                break
        strip_evidence(cell)
        # numbers returned by a test cell would be read by nbgrader as partial credit: never here
        cell["outputs"] = [o for o in cell["outputs"] if not _numeric_result(o)]
        if reason:
            cell["outputs"].insert(0, {"output_type": "error", "ename": "GraderCheckFailed",
                                       "evalue": f"the grader's check of this exercise failed: {reason}",
                                       "traceback": [f"GraderCheckFailed: {reason}"]})
        verdict.cells.append(CellVerdict(gid, not reason, reason, kernel_error))
    verdict.missing = sorted(set(expected) - seen)
    return verdict


def _numeric_result(out: dict) -> bool:
    if out.get("output_type") != "execute_result":
        return False
    text = _text(out.get("data", {}).get("text/plain"))
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False
