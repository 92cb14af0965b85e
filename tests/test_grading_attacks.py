"""Hostile and broken submissions, graded for real (run B of tests/grading_fixtures.py).

Every attacker writes its attack into a solution cell of notebook 1, the one
place a student may write, and is graded in the same run as an honest
``victim``, two students at a time.  For each, the test asserts the outcome:
no points it did not earn, nobody else's grade changed, no file outside its
sandbox changed (the course folder, ``course_lib`` and every submission are
hashed before and after), a flag for a human where the trick is visible, and
a batch that completes.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grading_fixtures import (ASSIGNMENT, ATTACK_TIMEOUT, NB1, NOTEBOOK_NAMES, SOLUTIONS, autograde, load, meta,
                              new_course, read_grades, solved_source)

# run B's courses are session fixtures: under pytest-xdist every test that uses them runs in one worker
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("graded-courses")]

NB1_STEM = Path(NB1).stem
#: Flags a human reviewer must see for each attacker (a subset of what the row lists).
EXPECTED_FLAGS = {
    "silencer": [f"{NB1_STEM}:exception-handler-override", f"{NB1_STEM}:check-failed-silently:ex2-tokenize-tests"],
    "intruder": [f"{NB1_STEM}:grader-files"],
    "patcher": [f"{NB1_STEM}:library-patched", f"{NB1_STEM}:builtins-patched", f"{NB1_STEM}:evidence-forgery"],
    "always_equal": [f"{NB1_STEM}:comparison-override"],
    "reply_forger": [f"{NB1_STEM}:ipython-internals", f"{NB1_STEM}:kernel-messaging"],
    "cell_editor": [f"{NB1_STEM}:graded-cell-deleted:ex1-pad-tests", f"{NB1_STEM}:locked-cell-edited:ex2-tokenize-tests",
                    f"{NB1_STEM}:cell-metadata-edited:ex3-collator-tests"],
    "fork_bomb": [f"{NB1_STEM}:spawns-processes"],
    "big_forger": [f"{NB1_STEM}:malformed-evidence:ex4-score-tests", f"{NB1_STEM}:evidence-forgery"],
    "restructured": [f"{NB1_STEM}:unknown-grade-id:my-extra", f"{NB1_STEM}:locked-cell-stripped:nb1-code-04"],
    "bomber": [f"{NB1_STEM}:output-bomb"],
    "invalid_json": [f"unreadable-notebook:{NB1}"],
    "renamed": ["unexpected-file:1_reward_and_data-Copy1.ipynb", f"missing-notebook:{NB1}"],
    "frame_reader": [f"{NB1_STEM}:introspection"],
}


def _text(x) -> str:
    return "".join(x) if isinstance(x, list) else str(x)


def _flags(row: dict) -> list[str]:
    return [f.strip() for f in row["flags"].split(";") if f.strip()]


def test_no_copy_of_a_graded_function_was_reachable(attack_run):
    """The thief searched every importable module of the course: the sandbox held no answer to take."""
    graded = load(attack_run["course"] / "autograded" / "library_thief" / ASSIGNMENT / NB1)
    outputs = "".join(_text(o.get("text", "")) for c in graded["cells"] for o in c.get("outputs", []))
    assert "found " not in outputs, outputs[:2000]
    assert outputs.count("no copy of") == 4, outputs[:2000]


def _not_similarity(row: dict) -> dict:
    """The row without its similar-to flags (the fixtures' honest students all submit the reference solution)."""
    return {**row, "flags": "; ".join(f for f in _flags(row) if ":similar-to:" not in f)}


def test_the_batch_completes_with_a_row_for_everyone(attack_run):
    proc, rows = attack_run["proc"], attack_run["rows"]
    assert proc.returncode == 1, "the crashed kernel must be reported\n" + proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "crash" in proc.stderr
    assert set(attack_run["students"]) | {"perfect", "untouched"} == set(rows), sorted(rows)


@pytest.mark.parametrize("student", ["victim", "half", "silencer", "intruder", "patcher", "always_equal",
                                     "reply_forger", "cell_editor", "bomber", "invalid_json", "renamed", "careless",
                                     "library_thief", "frame_reader",
                                     "big_forger", "restructured"])
def test_each_submission_scores_exactly_what_it_earned(attack_run, student):
    row = attack_run["rows"][student]
    earned = attack_run["students"][student]["earned"]
    assert row["status"] == "graded", row
    assert float(row[NB1_STEM]) == earned, (student, row)
    assert float(row["total_score"]) == earned, (student, row)
    assert all(float(row[Path(n).stem]) == 0 for n in NOTEBOOK_NAMES[1:])   # not submitted


def test_fork_bomb_earns_nothing_more_and_harms_no_one(attack_run):
    row = attack_run["rows"]["fork_bomb"]
    earned = attack_run["students"]["fork_bomb"]["earned"]
    # the bomb may take its own kernel down with it (then the row is a failure for a human to look at)
    if row["status"] == "graded":
        assert float(row["total_score"]) <= earned, row
    else:
        assert row["status"].startswith("failed") and row["total_score"] == "", row


def test_crashing_kernel_fails_that_student_only(attack_run):
    row = attack_run["rows"]["crash"]
    assert row["status"].startswith("failed") and row["total_score"] == "", row


@pytest.mark.parametrize("student", sorted(EXPECTED_FLAGS))
def test_attempts_are_flagged_for_a_human(attack_run, student):
    flags = _flags(attack_run["rows"][student])
    missing = [f for f in EXPECTED_FLAGS[student] if not any(g == f or g.startswith(f + " (") for g in flags)]
    assert not missing, (student, missing, flags)


def test_honest_students_raise_no_flag_and_keep_their_marks(attack_run):
    rows = attack_run["rows"]
    for sid, points in (("victim", 10), ("half", 6)):
        flags = [f for f in _flags(_not_similarity(rows[sid])) if not f.startswith("missing-notebook:")]
        assert flags == [] and float(rows[sid]["total_score"]) == points, rows[sid]
    for sid in ("perfect", "untouched"):     # graded in run A, unchanged by everything in run B
        assert _not_similarity(rows[sid]) == _not_similarity(attack_run["before_rows"][sid]), sid
    # victim, perfect and careless all submitted the reference solution of notebook 1 (half's is too short)
    assert f"{NB1_STEM}:similar-to:perfect" in _flags(rows["victim"]), rows["victim"]
    assert f"{NB1_STEM}:similar-to:victim" in _flags(rows["careless"]), rows["careless"]
    assert not any(":similar-to:" in f for f in _flags(rows["half"]) + _flags(rows["untouched"]))


def test_nothing_outside_the_sandboxes_changed(attack_run):
    before, after = attack_run["before_course"], attack_run["after_course"]
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert changed == [], changed             # solutions, submissions (the victim's too), config
    lib_before, lib_after = attack_run["before_lib"], attack_run["after_lib"]
    assert lib_before == lib_after, sorted(set(lib_before) ^ set(lib_after))
    assert not attack_run["canary"].exists(), "a sandbox wrote to the host's /tmp"


def test_what_the_attackers_saw(attack_run):
    """The intruder's cells show each attempt failing: no gradebook, no solutions, read-only course_lib."""
    graded = load(attack_run["course"] / "autograded" / "intruder" / ASSIGNMENT / NB1)

    def printed(grade_id: str) -> str:
        cell = next(c for c in graded["cells"] if meta(c).get("grade_id") == grade_id)
        return "".join(_text(o.get("text", "")) + str(o.get("evalue", "")) for o in cell.get("outputs", []))

    course = str(attack_run["course"])
    out = printed("ex1-pad-solution")                                   # the gradebook writer
    seen = out[out.index("databases visible:"):].splitlines()[0]
    assert "updated the gradebook" not in out and "no gradebook at" in out, out[-2000:]
    assert course not in seen and "grading-course" not in seen, seen     # only libraries' own .db files
    out = printed("ex3-collator-solution")                              # the saboteur
    written = [ln for ln in out.splitlines() if ln.startswith("wrote ")]
    # only its own /tmp (in memory, gone with the sandbox) took a write
    assert "cannot write" in out and all("/course-grading-canary-" in ln for ln in written), out[-2000:]
    out = printed("ex2-tokenize-solution")                              # the solution reader
    assert "notebooks visible:" in out, out[-2000:]                     # it looked everywhere
    assert course not in out and str(SOLUTIONS) not in out, out[-2000:]  # and found nothing


def test_solutions_do_not_leak_into_an_attackers_notebook_or_feedback(attack_run):
    course = attack_run["course"]
    secrets = []
    for name in NOTEBOOK_NAMES:
        for cell in load(SOLUTIONS / name)["cells"]:
            if meta(cell).get("solution") and cell["cell_type"] == "code":
                body = [ln.strip() for ln in solved_source(cell).splitlines()]
                secrets += [ln for ln in body if ln.startswith("return ") and len(ln) > 25]
    assert len(secrets) >= 4, secrets
    texts = [(course / "autograded" / "intruder" / ASSIGNMENT / NB1).read_text(encoding="utf-8")]
    texts += [p.read_text(encoding="utf-8") for p in (course / "feedback" / "intruder").rglob("*.html")]
    assert len(texts) == 2
    for text in texts:
        leaked = [s for s in secrets if s in text or json.dumps(s)[1:-1] in text]
        assert not leaked, leaked


def test_output_and_memory_bombs_are_contained(attack_run):
    path = attack_run["course"] / "autograded" / "bomber" / ASSIGNMENT / NB1
    assert path.stat().st_size < 2_000_000, path.stat().st_size       # 10 million lines cut to 2 MB
    graded = load(path)
    cell = next(c for c in graded["cells"] if meta(c).get("grade_id") == "ex2-tokenize-solution")
    errors = [(o.get("ename"), str(o.get("evalue"))) for o in cell["outputs"] if o["output_type"] == "error"]
    # 50 GB asked for, refused by the sandbox's 8 GB address-space limit; the kernel lived on
    assert errors and (errors[0][0] == "MemoryError" or "alloc" in errors[0][1]), errors
    assert attack_run["rows"]["bomber"]["status"] == "graded"


def test_endless_loop_was_interrupted(attack_run):
    graded = load(attack_run["course"] / "autograded" / "careless" / ASSIGNMENT / NB1)
    cell = next(c for c in graded["cells"] if meta(c).get("grade_id") == "ex3-collator-tests")
    errors = [o.get("ename") for o in cell["outputs"] if o["output_type"] == "error"]
    assert "GraderCheckFailed" in errors, errors
    timeouts = [o.get("ename") for c in graded["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert any(e in ("KeyboardInterrupt", "CellTimeoutError") for e in timeouts), timeouts


# ---- parallel equals serial; a crash of the grader changes nothing ------------------------------------
SERIAL = ("victim", "half", "silencer", "invalid_json")


@pytest.fixture(scope="module")
def serial_course(attack_run, tmp_path_factory):
    """A second course: four of run B's students graded one at a time (run B graded two at a time)."""

    course = new_course(tmp_path_factory.mktemp("serial-course"))
    (course / "build").mkdir()
    shutil.copytree(attack_run["course"] / "build" / "grading-cache", course / "build" / "grading-cache")
    for sid in SERIAL:
        shutil.copytree(attack_run["course"] / "submitted" / sid, course / "submitted" / sid)
    t0 = time.time()
    proc = autograde(course, "--jobs", "1", "--timeout", str(ATTACK_TIMEOUT), "--output", "serial.csv")
    print(f"[{len(SERIAL)} students one at a time: {time.time() - t0:.0f} s]")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return course


def _lines(table: Path, students) -> list[str]:
    return [ln for ln in table.read_text(encoding="utf-8").splitlines() if ln.split(",", 1)[0].strip('"') in students]


def test_parallel_grading_equals_serial_grading(attack_run, serial_course):
    """Run B's rows (two at a time, beside attackers) equal, byte for byte, the rows of a serial run."""
    serial = _lines(serial_course / "serial.csv", SERIAL)
    parallel = _lines(attack_run["course"] / "grades.csv", SERIAL)
    assert len(serial) == len(SERIAL)
    # byte for byte but the similar-to flags, which depend on who else is in the course
    similar = [sid for sid in SERIAL if any(":similar-to:" in read_grades(path)[sid]["flags"]
                                            for path in (attack_run["course"] / "grades.csv", serial_course / "serial.csv"))]
    assert [ln for ln in serial if ln.split(",", 1)[0].strip('"') not in similar] == \
        [ln for ln in parallel if ln.split(",", 1)[0].strip('"') not in similar], (serial, parallel)
    s_rows, p_rows = read_grades(serial_course / "serial.csv"), read_grades(attack_run["course"] / "grades.csv")
    assert all(_not_similarity(s_rows[sid]) == _not_similarity(p_rows[sid]) for sid in SERIAL), (serial, parallel)
    head = (serial_course / "serial.csv").read_text(encoding="utf-8").splitlines()[0]
    assert head == (attack_run["course"] / "grades.csv").read_text(encoding="utf-8").splitlines()[0]
    rows = read_grades(serial_course / "serial.csv")
    assert float(rows["victim"]["total_score"]) == 10 and float(rows["half"]["total_score"]) == 6


def test_a_grader_killed_mid_run_leaves_gradebook_and_table_as_they_were(serial_course):
    course = serial_course
    gradebook, table = course / "build" / "gradebook.db", course / "serial.csv"
    before = (gradebook.read_bytes(), table.read_bytes())
    proc = subprocess.Popen([sys.executable, "-m", "course_instructor.grading", "--course-dir", str(course), "autograde",
                             "--submissions", "submitted", "--jobs", "2", "--force", "--no-feedback",
                             "--output", "serial.csv"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = ""
    deadline = time.time() + 300
    while time.time() < deadline:
        line = proc.stdout.readline()
        seen += line
        if "autograding" in line:          # students are being graded: kill the grader now
            time.sleep(3)
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert "autograding" in seen, seen
    assert (gradebook.read_bytes(), table.read_bytes()) == before
    # the next run cleans up after the killed one and completes (one student regraded; the table is whole)
    again = autograde(course, "--jobs", "2", "--timeout", str(ATTACK_TIMEOUT), "--no-feedback", "--force",
                      "--output", "again.csv", "--student", "half")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert read_grades(course / "again.csv") == read_grades(table)
