"""Grading beyond one machine: two shards in separate processes, then ``merge``, equal one run, byte for byte.

A course with notebook 1 only (to keep it fast) and three honest students:
``alice`` (every exercise), ``bob`` (two of four) and ``carol`` (the released
copy).  By the SHA-256 of their ids, bob and carol fall in shard 1 of 2 and
alice in shard 2.  Course A is graded in one run; course B, a copy with the
same submissions, as two shards running at the same time in two processes,
then merged.  ``grades.csv`` must be the same bytes, the gradebooks the same
grade rows and submission times, and both must have the same autograded
notebooks.
"""
from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grading_fixtures import ASSIGNMENT, NB1, REPO, student_notebook, write_nb
from course_instructor.grading.shard import parse_shard, shard_of
from course_instructor.grading import GradingError

STUDENTS = {"alice": "all", "bob": {"ex2-tokenize-solution", "ex4-score-solution"}, "carol": set()}
STAMP = {"alice": "2026-01-10 09:00:00.000000 UTC", "bob": "2026-01-10 10:30:00.000000 UTC",
         "carol": "2026-01-11 23:59:00.000000 UTC"}


def test_shard_split_is_a_partition_and_stable():
    ids = [f"student{i:04d}" for i in range(1000)]
    for n in (1, 2, 8, 64):
        shards = [shard_of(s, n) for s in ids]
        assert set(shards) <= set(range(1, n + 1))
        assert shards == [shard_of(s, n) for s in ids]            # the same on every call and machine
    counts = [sum(1 for s in ids if shard_of(s, 8) == i) for i in range(1, 9)]
    assert min(counts) > 90 and max(counts) < 160                 # about an eighth each
    assert [shard_of(s, 2) for s in STUDENTS] == [2, 1, 1]       # the split this test relies on
    assert parse_shard("3/8") == (3, 8)
    for bad in ("0/2", "3/2", "x", "1/0", "1-2"):
        with pytest.raises(GradingError):
            parse_shard(bad)


def _course(root: Path) -> Path:
    """A course whose assignment is notebook 1 only."""
    for folder in ("solutions", "notebooks"):
        (root / folder / ASSIGNMENT).mkdir(parents=True)
        shutil.copy2(REPO / folder / ASSIGNMENT / NB1, root / folder / ASSIGNMENT / NB1)
    shutil.copy2(REPO / "nbgrader_config.py", root)
    return root


def _submissions(root: Path) -> Path:
    """The three submissions, collected once: both courses grade this same folder (its files' times are
    the submission times, so a copy would be a later collection)."""
    for sid, solved in STUDENTS.items():
        folder = root / sid / ASSIGNMENT
        write_nb(folder / NB1, student_notebook(NB1, solved))
        (folder / "timestamp.txt").write_text(STAMP[sid] + "\n", encoding="utf-8")
    return root


def _grading(course: Path, *args: str, wait: bool = True):
    cmd = [sys.executable, "-m", "course_instructor.grading", "--course-dir", str(course), *args]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _grade_rows(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(
            "SELECT student.id, notebook.name, base_cell.name, grade.auto_score, grade.manual_score, "
            "grade.extra_credit, grade.needs_manual_grade, submitted_assignment.timestamp "
            "FROM grade "
            "JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id "
            "JOIN submitted_assignment ON submitted_notebook.assignment_id = submitted_assignment.id "
            "JOIN student ON submitted_assignment.student_id = student.id "
            "JOIN notebook ON submitted_notebook.notebook_id = notebook.id "
            "JOIN base_cell ON grade.cell_id = base_cell.id "
            "ORDER BY 1, 2, 3").fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_two_shards_merged_equal_one_run(tmp_path):
    submitted = str(_submissions(tmp_path / "submitted"))
    one = _course(tmp_path / "one")
    t0 = time.time()
    _grading(one, "autograde", "--submissions", submitted, "--jobs", "2", "--timeout", "60")
    one_seconds = time.time() - t0

    two = _course(tmp_path / "two")
    # the solutions' evidence computed by run one (a cache keyed by the sources, not by the folder)
    shutil.copytree(one / "build" / "grading-cache", two / "build" / "grading-cache")
    t0 = time.time()
    procs = [_grading(two, "autograde", "--submissions", submitted, "--shard", f"{i}/2", "--jobs", "1",
                      "--timeout", "60", wait=False) for i in (1, 2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)
    assert "shard 1/2: 2 of 3 students" in outs[0] and "shard 2/2: 1 of 3 students" in outs[1]
    # a shard writes only its own partial result
    assert not (two / "grades.csv").exists() and not (two / "autograded").exists()
    assert sorted(p.name for p in (two / "build" / "shards").iterdir()) == ["1-of-2", "2-of-2"]
    assert sorted(p.name for p in (two / "build" / "shards" / "1-of-2" / "autograded").iterdir()) == ["bob", "carol"]
    _grading(two, "merge")
    sharded_seconds = time.time() - t0
    print(f"\none run: {one_seconds:.0f} s; two shards (in parallel) + merge: {sharded_seconds:.0f} s")

    assert (two / "grades.csv").read_bytes() == (one / "grades.csv").read_bytes()
    rows = _grade_rows(one / "build" / "gradebook.db")
    assert rows and rows == _grade_rows(two / "build" / "gradebook.db")
    scores = {sid: sum(r[3] or 0 for r in rows if r[0] == sid) for sid in STUDENTS}
    assert scores["alice"] > scores["bob"] > scores["carol"] == 0
    for sid in STUDENTS:
        for course in (one, two):
            assert (course / "autograded" / sid / ASSIGNMENT / NB1).is_file()
            assert (course / "feedback" / sid / ASSIGNMENT / NB1.replace(".ipynb", ".html")).is_file()
    # merging needs every shard: one missing is refused, naming what it has
    shutil.rmtree(two / "build" / "shards" / "2-of-2")
    proc = subprocess.run([sys.executable, "-m", "course_instructor.grading", "--course-dir", str(two), "merge"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "need each of the 2 shards" in proc.stderr
