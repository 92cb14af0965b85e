"""The nbgrader side of the course: release, the exercises' structure, and a grading round trip.

* ``notebooks/`` must be exactly what ``python -m course_instructor.grading release``
  generates from ``solutions/`` now (fails when someone edits the student copies
  by hand or forgets ``make release``);
* the student copies leak no solution, hidden test or model answer, and keep
  every graded cell with its grade_id and points;
* the solution notebooks declare enough exercises, each test cell with visible
  asserts and hidden tests, and the points announced in each notebook add up;
* (slow) the round trip: a temporary copy of the course autogrades ``perfect``
  and ``untouched`` in sandboxes (run A of tests/grading_fixtures.py).  Broken
  and hostile submissions are in tests/test_grading_attacks.py.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from course_instructor import grading

from grading_fixtures import (ASSIGNMENT, BEGIN_SOLUTION, END_SOLUTION, NOTEBOOK_NAMES, RELEASED, REPO,  # noqa: E402
                              SOLUTIONS, load, meta, source)

# run A is a session fixture: under pytest-xdist every test that uses it runs in one worker
pytestmark = pytest.mark.xdist_group("graded-courses")

BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


# ---- helpers -------------------------------------------------------------------------
def is_autograded_test(cell: dict) -> bool:
    m = meta(cell)
    return cell["cell_type"] == "code" and m.get("grade") and not m.get("solution")


def is_written_answer(cell: dict) -> bool:
    m = meta(cell)
    return cell["cell_type"] == "markdown" and m.get("grade") and m.get("solution")


def graded_or_solution(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if meta(c).get("grade") or meta(c).get("solution")]


def split_regions(text: str, begin: str, end: str) -> tuple[str, list[str]]:
    """(text outside begin/end regions, the regions' inner texts)."""
    outside, inside, current = [], [], None
    for line in text.splitlines():
        if line.strip() == begin:
            current = []
        elif line.strip() == end and current is not None:
            inside.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
        else:
            outside.append(line)
    assert current is None, f"unclosed {begin!r}"
    return "\n".join(outside), inside


def public_and_secret(nb: dict) -> tuple[set[str], list[str]]:
    """Lines a student may see (stripped) and the secret texts (solutions, hidden tests, model answers)."""
    public, secret = set(), []
    for cell in nb["cells"]:
        text = source(cell)
        if is_written_answer(cell):
            secret.append(text)
            continue
        text, solutions = split_regions(text, BEGIN_SOLUTION, END_SOLUTION)
        text, hidden = split_regions(text, BEGIN_HIDDEN, END_HIDDEN)
        secret += solutions + hidden
        public |= {line.strip() for line in text.splitlines()}
    return public, secret


def points_of(nb: dict, *, autograded_only: bool = False) -> float:
    cells = [c for c in nb["cells"] if meta(c).get("grade")]
    if autograded_only:
        cells = [c for c in cells if is_autograded_test(c)]
    return sum(float(meta(c)["points"]) for c in cells)


# ---- release ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """The student copies ``release`` generates now, in a temporary course folder."""
    course = tmp_path_factory.mktemp("release-course")
    shutil.copytree(REPO / "solutions", course / "solutions")
    shutil.copy2(REPO / "nbgrader_config.py", course)
    changed = grading.release(course, ASSIGNMENT, quiet=True)
    assert sorted(changed) == NOTEBOOK_NAMES
    return course / "notebooks" / ASSIGNMENT


def test_solution_and_release_folders_hold_the_same_notebooks():
    assert NOTEBOOK_NAMES, f"no solution notebooks in {SOLUTIONS}"
    assert sorted(p.name for p in RELEASED.glob("*.ipynb")) == NOTEBOOK_NAMES, "run `make release`"


def test_committed_notebooks_are_what_release_generates(generated):
    for name in NOTEBOOK_NAMES:
        fresh, committed = load(generated / name), load(RELEASED / name)
        hint = f"notebooks/{ASSIGNMENT}/{name} differs from what `make release` generates"
        assert committed["metadata"] == fresh["metadata"], hint
        assert len(committed["cells"]) == len(fresh["cells"]), f"{hint}: number of cells"
        for i, (c, f) in enumerate(zip(committed["cells"], fresh["cells"])):
            where = f"{hint}: cell {i} ({meta(f).get('grade_id')})"
            assert c["cell_type"] == f["cell_type"], where
            assert source(c) == source(f), f"{where}: source"
            assert c.get("metadata") == f.get("metadata"), f"{where}: metadata"
            assert c.get("id") == f.get("id"), f"{where}: id"
        assert (RELEASED / name).read_bytes() == (generated / name).read_bytes(), f"{hint} (bytes)"


def test_release_is_reproducible(generated):
    """A second generation from the same sources gives the same bytes: ``release --check`` finds nothing."""
    course = generated.parent.parent
    assert grading.release(course, ASSIGNMENT, check=True, quiet=True) == []


def test_student_copies_carry_no_outputs():
    for name in NOTEBOOK_NAMES:
        nb = load(RELEASED / name)
        for i, cell in enumerate(nb["cells"]):
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, f"{name} cell {i}"
            assert not set(cell.get("metadata", {})) & set(grading.VOLATILE_CELL_METADATA), f"{name} cell {i}"
        assert not set(nb["metadata"]) & set(grading.VOLATILE_NB_METADATA), name


def test_normalize_removes_outputs_timestamps_and_random_ids():
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"papermill": {"start_time": "2024"}},
          "cells": [{"cell_type": "code", "id": "random-1", "execution_count": 3,
                     "metadata": {"execution": {"iopub.status.busy": "2024-01-01T00:00:00"},
                                  "nbgrader": {"grade_id": "ex1"}},
                     "outputs": [{"output_type": "stream", "name": "stdout", "text": "hi"}], "source": "x = 1"},
                    {"cell_type": "markdown", "id": "random-2", "metadata": {}, "source": "text"}]}
    source_nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": "x = 1"},
                           {"cell_type": "markdown", "id": "intro", "metadata": {}, "source": "text"}]}
    out = grading.normalize_student_copy(json.loads(json.dumps(nb)), source_nb, "nb")
    code, md = out["cells"]
    assert code["outputs"] == [] and code["execution_count"] is None
    assert "execution" not in code["metadata"] and "papermill" not in out["metadata"]
    assert md["id"] == "intro"                       # the source's id
    assert code["id"] == grading._stable_id("nb", 0, code) != "random-1"
    again = grading.normalize_student_copy(json.loads(json.dumps(nb)), source_nb, "nb")
    assert grading.dumps_notebook(again) == grading.dumps_notebook(out)


def test_student_copies_leak_no_solution_hidden_test_or_model_answer():
    for name in NOTEBOOK_NAMES:
        solution, student = load(SOLUTIONS / name), load(RELEASED / name)
        text = "\n".join(source(c) for c in student["cells"])
        for marker in MARKERS:
            assert marker not in text, f"{name}: {marker!r} in the student copy"
        student_lines = {line.strip() for line in text.splitlines()}
        public, secrets = public_and_secret(solution)
        assert secrets, f"{name}: no solutions found in the solution notebook"
        for secret in secrets:
            if secret.strip():
                assert secret.strip() not in text, f"{name}: a secret block is in the student copy:\n{secret}"
            for line in secret.splitlines():
                line = line.strip()
                # lines that also appear in the public part (e.g. `import torch`) may stay
                if line and line not in public and not line.startswith("#"):
                    assert line not in student_lines, f"{name}: secret line in the student copy: {line!r}"
        for cell in student["cells"]:
            if is_written_answer(cell):
                assert source(cell).strip() == "YOUR ANSWER HERE", f"{name}: {meta(cell)['grade_id']}"


def test_student_copies_keep_every_graded_cell():
    keys = ("grade_id", "grade", "solution", "locked", "points", "task")
    for name in NOTEBOOK_NAMES:
        solution, student = load(SOLUTIONS / name), load(RELEASED / name)
        want = [(c["cell_type"], *[meta(c).get(k) for k in keys]) for c in graded_or_solution(solution)]
        have = [(c["cell_type"], *[meta(c).get(k) for k in keys]) for c in graded_or_solution(student)]
        assert have == want, name
        for cell in student["cells"]:
            if is_autograded_test(cell):
                assert "assert" in source(cell), f"{name}: {meta(cell)['grade_id']} lost its visible tests"


# ---- the command line's small parts ------------------------------------------------------------
def test_course_paths_come_from_the_nbgrader_config():
    course = grading.Course.load(REPO)
    assert course.source == REPO / "solutions" and course.release == REPO / "notebooks"
    assert course.submitted == REPO / "submitted" and course.feedback == REPO / "feedback"
    assert course.db_path == REPO / "build" / "gradebook.db"


def test_bad_input_gets_a_clear_error(tmp_path, capsys):
    shutil.copy2(REPO / "nbgrader_config.py", tmp_path)
    shutil.copytree(REPO / "solutions", tmp_path / "solutions")
    assert grading.main(["--course-dir", str(tmp_path), "--assignment", "nope", "release"]) == 2
    assert f"valid assignments: {ASSIGNMENT}" in capsys.readouterr().err
    assert grading.main(["autograde", "--course-dir", str(tmp_path), "--submissions", "missing"]) == 2
    assert "no submissions folder" in capsys.readouterr().err
    (tmp_path / "submitted" / "alice" / ASSIGNMENT).mkdir(parents=True)  # no notebooks in it
    assert grading.main(["autograde", "--course-dir", str(tmp_path), "--submissions", "submitted"]) == 2
    assert "no submissions in" in capsys.readouterr().err
    assert grading.main(["--course-dir", str(tmp_path / "nowhere"), "release"]) == 2
    assert "no nbgrader_config.py" in capsys.readouterr().err
    assert grading.main(["report", "--course-dir", str(tmp_path), "--no-feedback"]) == 2
    assert "no gradebook" in capsys.readouterr().err


def test_submission_timestamp_is_the_graders_not_the_students(tmp_path):
    from nbgrader.utils import parse_utc

    (tmp_path / "1_reward_and_data.ipynb").write_text("{}")
    os.utime(tmp_path / "1_reward_and_data.ipynb", (0, 0))          # a modification time is the student's to set
    (tmp_path / "timestamp.txt").write_text("2000-01-01 00:00:00.000000 UTC\n")
    grading.ensure_timestamp(tmp_path)
    stamp = (tmp_path / "timestamp.txt").read_text()
    assert abs(parse_utc(stamp).timestamp() - (tmp_path / "1_reward_and_data.ipynb").stat().st_ctime) < 1


def test_grading_kernels_run_the_token_training_quietly():
    env = grading.grading_env()
    assert env["COURSE_GRADING"] == "1"
    assert env["PYTHONWARNINGS"] == "ignore" and env["TRANSFORMERS_VERBOSITY"] == "error"


# ---- the exercises' structure ----------------------------------------------------------------
def test_solutions_declare_autograded_and_written_exercises():
    tests, written, ids = [], [], []
    for name in NOTEBOOK_NAMES:
        nb = load(SOLUTIONS / name)
        ids += [meta(c)["grade_id"] for c in nb["cells"] if meta(c)]
        for cell in nb["cells"]:
            m = meta(cell)
            if is_autograded_test(cell):
                tests.append(m["grade_id"])
                assert float(m.get("points", 0)) > 0, f"{name}: {m['grade_id']} has no points"
                visible, hidden = split_regions(source(cell), BEGIN_HIDDEN, END_HIDDEN)
                assert re.search(r"^\s*assert\b", visible, re.M), f"{name}: {m['grade_id']}: no visible assert"
                assert len(hidden) == 1 and "record(" in hidden[0], \
                    f"{name}: {m['grade_id']}: needs one hidden-tests block that records evidence"
                # nothing of the hidden test stays in the student's namespace, and it holds no answer key
                block = hidden[0]
                assert re.search(r"^def _hidden_test\(\):", block, re.M) and \
                    re.search(r"^finally:\n    del _hidden_test\s*$", block, re.M), \
                    f"{name}: {m['grade_id']}: the hidden test must run inside _hidden_test() and delete it"
                top_level = [line for line in block.splitlines() if line and not line[0].isspace()]
                assert set(top_level) <= {"def _hidden_test():", "try:", "finally:"}, \
                    f"{name}: {m['grade_id']}: hidden-test code outside _hidden_test(): {top_level}"
                assert not re.search(r"course_instructor|\bimport\b.*\breference|\breference_\w+\(", block), \
                    f"{name}: {m['grade_id']}: a hidden test must not compute reference answers in the kernel"
                assert m.get("locked"), f"{name}: {m['grade_id']} must be read-only"
            elif is_written_answer(cell):
                written.append(m["grade_id"])
                assert float(m.get("points", 0)) > 0, f"{name}: {m['grade_id']} has no points"
                assert source(cell).strip(), f"{name}: {m['grade_id']}: no model answer"
    assert len(tests) >= 8, tests
    assert len(written) >= 2, written
    assert len(ids) == len(set(ids)), "grade_ids must be unique across the assignment"


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_points_announced_in_the_first_cell_add_up(name):
    nb = load(SOLUTIONS / name)
    first = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
    m = re.search(r"\*\*Points:\s*(\d+(?:\.\d+)?)\*\*", source(first))
    assert m, f"{name}: the first markdown cell must state **Points: N**"
    assert float(m.group(1)) == points_of(nb), f"{name}: announced {m.group(1)}, cells sum to {points_of(nb)}"


# ---- grading round trip -----------------------------------------------------------------------
# Run A of tests/grading_fixtures.py: ``perfect`` (every exercise solved) and ``untouched`` (the released
# copies), all four notebooks, graded in sandboxes two at a time.
def _expected_points() -> dict[str, dict[str, float]]:
    """Per notebook: autograded points of each test cell (from the solutions' metadata)."""
    return {Path(n).stem: {meta(c)["grade_id"]: float(meta(c)["points"])
                           for c in load(SOLUTIONS / n)["cells"] if is_autograded_test(c)}
            for n in NOTEBOOK_NAMES}


@pytest.mark.slow
def test_round_trip_writes_one_row_per_student(graded_course):
    rows = graded_course["rows"]
    assert sorted(rows) == ["perfect", "untouched"], graded_course["csv"]
    header = next(csv.reader(graded_course["csv"].splitlines()))
    stems = [Path(n).stem for n in NOTEBOOK_NAMES]
    assert header == ["student_id", *stems, "total_score", "max_score", "needs_manual_grade", "flags", "status"]
    total_max = sum(points_of(load(SOLUTIONS / n)) for n in NOTEBOOK_NAMES)
    assert all(float(r["max_score"]) == total_max for r in rows.values())
    # honest students raise no flag
    assert rows["perfect"]["flags"] == "" and rows["untouched"]["flags"] == ""


@pytest.mark.slow
def test_round_trip_perfect_scores_every_autograded_point(graded_course):
    row = graded_course["rows"]["perfect"]
    expected = _expected_points()
    for stem, cells in expected.items():
        graded = load(graded_course["course"] / "autograded" / "perfect" / ASSIGNMENT / f"{stem}.ipynb")
        failing = {meta(c)["grade_id"]: [f"{o.get('ename', o.get('name'))}: {str(o.get('evalue', o.get('text')))[:200]}"
                                         for o in c["outputs"] if o["output_type"] == "error" or o.get("name") == "stderr"]
                   for c in graded["cells"] if is_autograded_test(c)}
        failing = {k: v for k, v in failing.items() if v}
        assert float(row[stem]) == sum(cells.values()), f"{stem}: the solution fails {failing}"
    assert float(row["total_score"]) == sum(sum(c.values()) for c in expected.values()) == 54
    written = sum(1 for n in NOTEBOOK_NAMES for c in load(SOLUTIONS / n)["cells"] if is_written_answer(c))
    assert int(row["needs_manual_grade"]) == written and row["status"] == "graded"


@pytest.mark.slow
def test_round_trip_untouched_scores_zero(graded_course):
    row = graded_course["rows"]["untouched"]
    assert row["status"] == "graded"
    assert float(row["total_score"]) == 0 and all(float(row[Path(n).stem]) == 0 for n in NOTEBOOK_NAMES)
    assert int(row["needs_manual_grade"]) == 0  # unchanged written answers are zeroed automatically


@pytest.mark.slow
def test_round_trip_restores_hidden_tests_and_runs_token_training(graded_course):
    graded = graded_course["course"] / "autograded"
    for name in NOTEBOOK_NAMES:
        nb = load(graded / "untouched" / ASSIGNMENT / name)
        tests = [c for c in nb["cells"] if is_autograded_test(c)]
        assert tests and all(BEGIN_HIDDEN in source(c) for c in tests), name
        # the untouched copy fails every test by the grader's check, not by the kernel's word alone
        for c in tests:
            assert c["outputs"][0]["ename"] == "GraderCheckFailed", (name, meta(c)["grade_id"])
    # COURSE_GRADING=1 reached the kernels: notebook 2's live run stopped after 2 steps
    nb2 = load(graded / "perfect" / ASSIGNMENT / NOTEBOOK_NAMES[1])
    printed = "".join("".join(o.get("text", "")) for c in nb2["cells"] for o in c.get("outputs", []))
    assert "-> step 2 " in printed, printed[-2000:]
    # the evidence the hidden tests recorded is not left in the graded notebook
    assert "vnd.course-lib.evidence" not in json.dumps(nb2)


@pytest.mark.slow
def test_round_trip_feedback_for_every_graded_notebook(graded_course):
    course = graded_course["course"]
    for student, row in graded_course["rows"].items():
        graded = sorted(p.stem for p in (course / "autograded" / student / ASSIGNMENT).glob("*.ipynb"))
        html = sorted(p.stem for p in (course / "feedback" / student / ASSIGNMENT).glob("*.html"))
        assert graded and html == graded, (student, html, graded)
        for stem in html:  # the feedback states the notebook's score, as in grades.csv
            nb_max = points_of(load(SOLUTIONS / f"{stem}.ipynb"))
            text = (course / "feedback" / student / ASSIGNMENT / f"{stem}.html").read_text(encoding="utf-8")
            assert f"Score: {float(row[stem]):.1f} / {nb_max:.1f}" in text, (student, stem)


@pytest.mark.slow
def test_round_trip_report_rewrites_the_table(graded_course):
    """``report`` (after manual grading) rebuilds grades.csv from the gradebook, without executing."""
    course = graded_course["course"]
    out = grading.report(course, ASSIGNMENT, output="again.csv", feedback=False)
    with out.open(newline="", encoding="utf-8") as fh:
        again = {r["student_id"]: r for r in csv.DictReader(fh)}
    for student in ("perfect", "untouched"):
        assert again[student]["total_score"] == graded_course["rows"][student]["total_score"], student


@pytest.mark.slow
def test_round_trip_second_run_keeps_unchanged_submissions(graded_course):
    """Without --force an unchanged submission is not graded again (and the expected results are cached)."""
    course = graded_course["course"]
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "course_instructor.grading", "--course-dir", str(course), "autograde",
                           "--submissions", "submitted", "--student", "perfect", "--no-feedback", "--output",
                           "again2.csv"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "unchanged since it was graded" in proc.stdout and "running the solutions" not in proc.stdout
    rows = {r["student_id"]: r for r in csv.DictReader((course / "again2.csv").read_text().splitlines())}
    assert rows["perfect"]["total_score"] == graded_course["rows"]["perfect"]["total_score"]
    print(f"[second run: {time.time() - t0:.0f} s]")
