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
        if isinstance(out, dict) and out.get("output_type") in ("display_data", "execute_result") \
                and isinstance(out.get("data"), dict):
            entry = out["data"].get(MIME)
            if isinstance(entry, dict) and isinstance(entry.get("key"), str) and "value" in entry:
                found.append(entry)
    return found


def strip_evidence(cell: dict) -> None:
    outs = cell.get("outputs") if isinstance(cell.get("outputs"), list) else []
    cell["outputs"] = [o for o in outs if isinstance(o, dict)
                       and not (isinstance(o.get("data"), dict) and MIME in o["data"])]


def _nbgrader(cell: dict) -> dict:
    m = cell.get("metadata")
    m = m.get("nbgrader") if isinstance(m, dict) else None
    return m if isinstance(m, dict) else {}


def _grade_id(cell: dict) -> str | None:
    return _nbgrader(cell).get("grade_id")


def is_autograded_test(cell: dict) -> bool:
    m = _nbgrader(cell)
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


#: Evidence a student's run returns is untrusted data: beyond these bounds it is malformed (and wrong).
MAX_EVIDENCE_DEPTH = 100            # to_plain nests at most 21 levels (3 JSON levels each)
MAX_EVIDENCE_ITEMS = 5_000_000      # values in one entry, all levels together
MAX_EVIDENCE_CHARS = 50_000_000     # characters of the strings of one entry, together
MAX_INT_BITS = 1024                 # beyond any float (10**400 is forged or broken, not an answer)
_FLOAT_TAGS = ("nan", "inf", "-inf")


def _float_of(x) -> float | None:
    """``x`` (an int or a float, type already checked) as a finite float, or None."""
    if type(x) is int and x.bit_length() > 1000:      # beyond any float: 2**1024 overflows
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def _same(expected, got, rtol: float, atol: float, depth: int) -> bool:
    if depth > MAX_EVIDENCE_DEPTH:
        return False
    if type(expected) is float:
        if not _is_number(got):
            return False
        g = _float_of(got)
        return g is not None and abs(g - expected) <= atol + rtol * abs(expected)
    if type(expected) in (bool, int, str) or expected is None:
        return type(got) is type(expected) and got == expected
    if type(expected) is list:
        return type(got) is list and len(got) == len(expected) and \
            all(_same(e, g, rtol, atol, depth + 1) for e, g in zip(expected, got))
    if type(expected) is dict:
        if type(got) is not dict or len(got) != len(expected) or \
                any(type(k) is not str for k in got) or set(got) != set(expected):
            return False
        if "__unsupported__" in expected:
            return False
        if "__tensor__" in expected:
            return _same(expected["__tensor__"], got["__tensor__"], 0.0, 0.0, depth + 1) \
                and _same(expected.get("shape"), got.get("shape"), 0.0, 0.0, depth + 1) \
                and _same(expected["data"], got.get("data"), rtol, atol, depth + 1)
        return all(_same(expected[k], got[k], rtol, atol, depth + 1) for k in expected)
    return False


def same(expected, got, rtol: float, atol: float) -> bool:
    """``got`` equals ``expected`` (JSON data from :func:`course_lib.evidence.to_plain`); floats within tolerance.

    Total: whatever ``got`` is (a huge int, nesting deeper than Python's
    recursion limit, objects of any type, non-finite floats), the answer is
    True or False, never an exception.  ``rtol``/``atol`` are the solution's;
    tolerances that are not finite non-negative numbers make everything differ.
    """
    try:
        if not (_is_number(rtol) and _is_number(atol)):
            return False
        rtol, atol = float(rtol), float(atol)
        if not (math.isfinite(rtol) and math.isfinite(atol) and rtol >= 0 and atol >= 0):
            return False
        return bool(_same(expected, got, rtol, atol, 0))
    except (RecursionError, OverflowError, TypeError, ValueError, MemoryError, ArithmeticError):
        return False


def malformed(value) -> str:
    """Why ``value`` is not evidence :func:`course_lib.evidence.to_plain` can produce ("" if it is).

    Walks the value without recursion, within :data:`MAX_EVIDENCE_DEPTH`,
    :data:`MAX_EVIDENCE_ITEMS` and :data:`MAX_EVIDENCE_CHARS`.  A malformed
    value was forged or broken in the student's kernel (or is absurdly big):
    it scores 0 and the cell is flagged ``malformed-evidence``.
    """
    try:
        return _malformed(value)
    except (RecursionError, OverflowError, TypeError, ValueError, MemoryError, ArithmeticError) as e:
        return f"unreadable ({type(e).__name__})"


def _malformed(value) -> str:
    stack = [(value, 0)]
    items = chars = 0
    while stack:
        v, depth = stack.pop()
        items += 1
        if items > MAX_EVIDENCE_ITEMS:
            return f"more than {MAX_EVIDENCE_ITEMS} values"
        if depth > MAX_EVIDENCE_DEPTH:
            return f"nested deeper than {MAX_EVIDENCE_DEPTH}"
        t = type(v)
        if v is None or t is bool:
            continue
        if t is int:
            if v.bit_length() > MAX_INT_BITS:
                return "an integer too large"
            continue
        if t is float:
            if not math.isfinite(v):
                return "an untagged non-finite float"
            continue
        if t is str:
            chars += len(v)
            if chars > MAX_EVIDENCE_CHARS:
                return f"more than {MAX_EVIDENCE_CHARS} characters"
            continue
        if t is list:
            if len(v) > MAX_EVIDENCE_ITEMS:
                return f"more than {MAX_EVIDENCE_ITEMS} values"
            stack.extend((x, depth + 1) for x in v)
            continue
        if t is not dict:
            return f"a value of type {t.__name__}"
        if any(type(k) is not str for k in v):
            return "a dict with keys that are not strings"
        keys = set(v)
        if keys == {"__float__"}:
            if v["__float__"] not in _FLOAT_TAGS:
                return "an unknown float tag"
        elif keys == {"__unsupported__"}:
            if type(v["__unsupported__"]) is not str:
                return "an unsupported-type tag that is not a string"
            stack.append((v["__unsupported__"], depth + 1))
        elif keys in ({"__dict__"}, {"__frame__"}):
            pairs = v["__dict__"] if "__dict__" in v else v["__frame__"]
            if type(pairs) is not list or len(pairs) > MAX_EVIDENCE_ITEMS:
                return "a dict or frame tag without a list of pairs"
            for pair in pairs:
                if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str:
                    return "a dict or frame tag with a malformed pair"
                stack.append((pair[1], depth + 2))
                stack.append((pair[0], depth + 2))
        elif keys == {"__tensor__", "shape", "data"}:
            shape, data = v["shape"], v["data"]
            if type(v["__tensor__"]) is not str or type(shape) is not list or len(shape) > 64 \
                    or any(type(n) is not int or not 0 <= n <= 2 ** 62 for n in shape):
                return "a tensor tag with a malformed dtype or shape"
            if type(data) is not list or math.prod(shape) != len(data):
                return "a tensor tag whose data does not fit its shape"
            stack.append((v["__tensor__"], depth + 1))
            stack.extend((x, depth + 2) for x in data)
        else:
            return "a dict that is not one of the evidence tags"
    return ""


@dataclass
class CellVerdict:
    grade_id: str
    passed: bool
    reason: str = ""
    kernel_error: bool = False     # the kernel itself showed an error or stderr in this cell
    malformed: bool = False        # its evidence was not plain data to_plain makes (forged, broken, absurdly big)

    @property
    def silent_failure(self) -> bool:
        return not self.passed and not self.kernel_error


@dataclass
class NotebookVerdict:
    cells: list[CellVerdict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)    # test cells not in the notebook


def _judge(cell: dict, want_all: list[dict]) -> tuple[str, bool]:
    """(why the cell's evidence fails, "" if it passes; whether the evidence was malformed)."""
    got: dict[str, dict] = {}
    for entry in evidence_of(cell):
        got.setdefault(entry["key"], entry)     # the first value recorded under a key counts
    for want in want_all:
        entry = got.get(want["key"])
        if entry is None:
            return f"no result recorded for {want['key']!r}", False
        # the tolerances are the solution's (want); whatever the student's entry says is ignored
        if not same(want["value"], entry["value"], want["rtol"], want["atol"]):
            why = malformed(entry["value"])
            if why:
                return f"{want['key']!r} is not a plain value: {why}", True
            return f"{want['key']!r} differs from the expected result", False
    return "", False


def check_test_cells(nb: dict, expected: dict[str, list[dict]]) -> NotebookVerdict:
    """Check every autograded test cell of ``nb`` (in place: evidence removed, failures marked).

    Never raises for anything the student's run put in the outputs: a cell
    whose evidence cannot be read or compared is wrong, and ``malformed``.
    """
    verdict = NotebookVerdict()
    seen = set()
    for cell in nb.get("cells", []):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        if not isinstance(cell.get("outputs"), list):
            cell["outputs"] = []
        cell["outputs"] = [o for o in cell["outputs"] if isinstance(o, dict)]
        gid = _grade_id(cell)
        if not is_autograded_test(cell) or not isinstance(gid, str) or gid in seen:
            strip_evidence(cell)            # evidence anywhere else counts for nothing
            continue
        seen.add(gid)
        kernel_error = any(o.get("output_type") == "error" or
                           (o.get("output_type") == "stream" and o.get("name") == "stderr")
                           for o in cell["outputs"])
        bad = False
        if gid not in expected:
            reason = "the grader has no expected result for this test cell"
        else:
            try:
                reason, bad = _judge(cell, expected[gid])
            except Exception as e:          # untrusted data: never let it stop the other cells
                reason, bad = f"its evidence could not be read ({type(e).__name__})", True
        strip_evidence(cell)
        # numbers returned by a test cell would be read by nbgrader as partial credit: never here
        cell["outputs"] = [o for o in cell["outputs"] if not _numeric_result(o)]
        if reason:
            cell["outputs"].insert(0, {"output_type": "error", "ename": "GraderCheckFailed",
                                       "evalue": f"the grader's check of this exercise failed: {reason}",
                                       "traceback": [f"GraderCheckFailed: {reason}"]})
        verdict.cells.append(CellVerdict(gid, not reason, reason, kernel_error, bad))
    verdict.missing = sorted(set(expected) - seen)
    return verdict


def _numeric_result(out: dict) -> bool:
    if out.get("output_type") != "execute_result" or not isinstance(out.get("data"), dict):
        return False
    text = _text(out["data"].get("text/plain"))
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False
