"""Collected folders are hostile input: folder and file names, symbolic links, timestamps (issue 22, item 5).

What a student controls in ``submitted/``: the name of their folder, every
name and link inside it, the files' modification times and ``timestamp.txt``.
The unit tests check each defence on its own (fast); one end-to-end grading
run (notebook 1 only) grades an honest student among hostile folders.
"""
from __future__ import annotations

import csv
import importlib
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from course_instructor.grading import scan
from course_instructor.grading.course import escape, strip_controls
from grading_fixtures import (ASSIGNMENT, BEGIN_SOLUTION, NB1, NOTEBOOK_NAMES, SOLUTIONS, autograde, new_course,
                              read_grades, student_notebook)

# the package exports functions named like these modules
ag = importlib.import_module("course_instructor.grading.autograde")
report = importlib.import_module("course_instructor.grading.report")

NB1_STEM = Path(NB1).stem
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NASTY_NAMES = ['=HYPERLINK("evil.example","click")', "evil\x1b[2J\x1b[31mred\nname", "a" * 100,
               "-rf", "x\u202etxt.exe", "caf\u00e9", "_feedback", "a\\b"]


def _released() -> dict:
    return {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _nb() -> str:
    return json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


# ---- student ids --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["alice", "a.b-c_d", "s12345", "0", "gradebook.db", "A" * 64])
def test_safe_student_ids_are_accepted(name):
    assert ag.refusal(name) == ""


@pytest.mark.parametrize("name", [".", "..", "", ".hidden", "A" * 65, "a b", "a\nb", "a/b", "-rf", "_x",
                                  "=HYPERLINK(1)", "+1", "@x", "a\x1b[31m", "caf\u00e9", "x\u202ey", "a*", "[ab]"])
def test_unsafe_student_ids_are_refused_with_the_rule(name):
    why = ag.refusal(name)
    assert why.startswith("refused (") and ag.STUDENT_ID_RULE in why


def test_escape_is_visible_and_injective():
    assert escape("a\nb\x1b[2J\u202e\\") == "a\\nb\\x1b[2J\\u202e\\\\"
    assert escape("a\\nb") != escape("a\nb")
    assert escape(os.fsdecode(b"bad\xff")) == "bad\\udcff"          # a file name that is not UTF-8
    for s in NASTY_NAMES:
        assert escape(s).isprintable() and strip_controls(s).isprintable()
    assert strip_controls("already \\x1b escaped") == "already \\x1b escaped"


# ---- the submissions folder ---------------------------------------------------------------------
def _student(root: Path, name: str, notebook: str = NB1) -> Path:
    folder = root / name / ASSIGNMENT
    folder.mkdir(parents=True)
    (folder / notebook).write_text(_nb())
    return folder


def test_find_submissions_refuses_links_and_unsafe_names(tmp_path, capsys):
    sub = tmp_path / "submitted"
    _student(sub, "alice")
    _student(sub, "gradebook.db")                         # a legal id: staged apart from the grader's files
    (sub / "mirror").symlink_to("alice")                 # a classmate's folder
    (sub / "peek").symlink_to(tmp_path / "solutions")     # the solutions
    _student(tmp_path, "solutions")
    (sub / "borrow").mkdir()
    (sub / "borrow" / ASSIGNMENT).symlink_to(sub / "alice" / ASSIGNMENT)
    (sub / "dangling").symlink_to(tmp_path / "nowhere")
    for name in NASTY_NAMES:
        _student(sub, name)
    (sub / "notes.txt").write_text("a file, not a student")
    _student(sub, ".ipynb_checkpoints")
    refused: dict = {}
    found = ag.find_submissions(sub, ASSIGNMENT, refused)
    err = capsys.readouterr().err
    assert found == ["alice", "gradebook.db"]
    assert refused["mirror"] == ("refused (the student folder is a symbolic link; not followed)", ["symlink:.."])
    assert refused["peek"][1] == ["symlink:.."] and refused["dangling"][1] == ["symlink:.."]
    assert refused["borrow"] == (f"refused (its {ASSIGNMENT} folder is a symbolic link; not followed)",
                                 ["symlink:."])
    for name in NASTY_NAMES:
        assert ag.STUDENT_ID_RULE in refused[escape(name)][0]
    assert all(key.isprintable() for key in refused)
    assert "\x1b" not in err and "\u202e" not in err and "evil\\x1b[2J" in err
    assert all(line.startswith("warning: ") for line in err.splitlines())     # no raw newline in a name
    assert "notes.txt: not a folder" in err and ".ipynb_checkpoints" not in err


# ---- staging: links never followed, anywhere --------------------------------------------------
def test_staging_refuses_links_at_any_depth_and_escapes_names(tmp_path):
    secret = tmp_path / "solutions" / NB1
    secret.parent.mkdir()
    secret.write_text(json.dumps(student_notebook(NB1)))
    src = tmp_path / "submitted" / "mallory" / ASSIGNMENT
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / NB1).symlink_to(secret)                                   # the graded name, pointing at the solutions
    (src / "sub" / "deeper" / "loot").symlink_to(tmp_path / "solutions")
    (src / "loop").symlink_to(".")
    (src / "=cmd|' -C calc'!A0\x1b[31m.ipynb").write_text(_nb())
    (src / "timestamp.txt").write_text("2000-01-01 00:00:00.000000 UTC\n")
    os.mkfifo(src / "fifo")                                          # reading it would block forever
    dest = tmp_path / "staged"
    flags = scan.stage_submission(src, dest, {NB1: _released()})
    assert sorted(p.name for p in dest.iterdir()) == []              # nothing graded, nothing followed
    assert flags == [f"symlink:{NB1}", "unexpected-file:=cmd|' -C calc'!A0\\x1b[31m.ipynb", "unexpected-file:fifo",
                     "symlink:loop", "unexpected-file:sub", "student-timestamp", "symlink:sub/deeper/loot",
                     f"missing-notebook:{NB1}"]
    assert all(f.isprintable() for f in flags)


def test_staging_follows_no_link_above_the_folder_either(tmp_path):
    real = _student(tmp_path / "real", "bob")
    (tmp_path / "submitted").mkdir()
    (tmp_path / "submitted" / "bob").symlink_to(real.parent)       # swapped for a link after it was checked
    flags = scan.stage_submission(tmp_path / "submitted" / "bob" / ASSIGNMENT, tmp_path / "staged",
                                  {NB1: _released()})
    assert flags == ["symlink:..", f"missing-notebook:{NB1}"]
    assert not list((tmp_path / "staged").iterdir())
    with pytest.raises(OSError):
        ag.fingerprint(tmp_path / "submitted" / "bob" / ASSIGNMENT)


def test_staging_refuses_an_oversized_notebook(tmp_path, monkeypatch):
    src = _student(tmp_path, "big")
    monkeypatch.setattr(scan, "MAX_NOTEBOOK_BYTES", 10)
    flags = scan.stage_submission(src, tmp_path / "staged", {NB1: _released()})
    assert flags[0].startswith(f"unreadable-notebook:{NB1} (larger than")


def test_staging_stops_walking_a_huge_tree(tmp_path, monkeypatch):
    src = _student(tmp_path, "many")
    for i in range(30):
        (src / f"f{i:02d}").write_text("x")
    monkeypatch.setattr(scan, "MAX_ENTRIES", 10)
    flags = scan.stage_submission(src, tmp_path / "staged", {NB1: _released()})
    assert "too-many-files:over 10" in flags


def test_fingerprint_follows_no_link_and_sees_a_changed_target(tmp_path):
    src = _student(tmp_path, "carol")
    (tmp_path / "a.txt").write_text("A" * 10)
    (src / "ln").symlink_to(tmp_path / "a.txt")
    os.mkfifo(src / "fifo")
    first = ag.fingerprint(src)
    (tmp_path / "a.txt").write_text("B" * 10)                       # the target is not the submission
    assert ag.fingerprint(src) == first
    (src / "ln").unlink()
    (src / "ln").symlink_to(tmp_path / "b.txt")
    assert ag.fingerprint(src) != first


# ---- submission time: the grader's, not the student's ------------------------------------------
def test_submission_time_is_the_collection_time_not_the_students(tmp_path):
    from nbgrader.utils import parse_utc

    src = _student(tmp_path / "submitted", "dave")
    (src / "timestamp.txt").write_text("2000-01-01 00:00:00.000000 UTC\n")
    os.utime(src / NB1, (0, 0))                                     # an mtime from a zip archive, or `touch`
    collected = time.time()
    staged = tmp_path / "staged"
    flags = scan.stage_submission(src, staged, {NB1: _released()})
    assert "student-timestamp" in flags and not (staged / "timestamp.txt").exists()
    when = ag.ensure_timestamp(staged, src)
    stamp = parse_utc((staged / "timestamp.txt").read_text())
    assert abs(stamp.timestamp() - collected) < 5 and abs(when.timestamp() - collected) < 5
    assert (src / "timestamp.txt").read_text().startswith("2000")     # the student's folder is not written


# ---- tables: formula-safe, no control characters -----------------------------------------------
def test_csv_cells_cannot_be_formulas_and_numbers_stay_numbers(tmp_path):
    header = ["student_id", "1_x", "total_score", "flags", "status"]
    rows = [['=HYPERLINK("http://evil","x")', "10", "-1.5", "unexpected-file:a;=1+1\x1b[2J", "graded"],
            ["+1", 2, 2.5, "@SUM(A1)", "\tx"], ["s\r", "", "", "-cmd", "\rno"]]
    out = tmp_path / "grades.csv"
    report.write_csv(out, header, rows)
    text = out.read_text(encoding="utf-8")
    assert text.isprintable() or set(text) - {"\n"} <= set(c for c in text if c.isprintable())
    assert "\x1b" not in text and "\r" not in text
    parsed = list(csv.reader(io.StringIO(text)))
    for row in parsed:
        for cell in row:
            assert not cell.startswith(FORMULA_START) or report._NUMBER.fullmatch(cell), cell
    assert parsed[1][:3] == ["'=HYPERLINK(\"http://evil\",\"x\")", "10", "-1.5"]
    assert parsed[2][:3] == ["'+1", "2", "2.5"]
    # a spreadsheet splitting at ";" still sees one quoted cell, not "=1+1"; numbers unquoted, as written
    assert '"unexpected-file:a;=1+1\\x1b[2J"' in text
    assert text.splitlines()[1].startswith('"\'=HYPERLINK(""http://evil"",""x"")",10,-1.5,')
    report.write_csv(out, ["student_id", "total"], [["00123", "2.50"], ["12", "0"]])
    assert out.read_text().splitlines()[1:] == ['"00123",2.50', '12,0']


def test_the_terminal_table_has_no_control_characters(capsys):
    report.print_table(["student_id", "flags", "status"], [["a\x1b[2J", "x\u202e" * 30, "ok\r"]])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "\r" not in out


# ---- end to end: an honest student among hostile folders ---------------------------------------
HOSTILE_NAMES = ['=HYPERLINK("evil.example","click")', "evil\x1b[2J\x1b[31mred\nname", "n" * 100, "-rf"]


@pytest.fixture(scope="module")
def collect_run(tmp_path_factory):
    """Notebook 1 only: ``victim`` (honest, and with a forged timestamp.txt), ``gradebook.db`` (honest, one
    exercise), ``linker`` (its notebook a link to the solutions), links to folders, and unsafe names."""
    course = new_course(tmp_path_factory.mktemp("collect-course"))
    for name in NOTEBOOK_NAMES[1:]:
        (course / "solutions" / ASSIGNMENT / name).unlink()
        (course / "notebooks" / ASSIGNMENT / name).unlink()
    sub = course / "submitted"

    def put(sid: str, nb: dict | str, name: str = NB1) -> Path:
        path = sub / sid / ASSIGNMENT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(nb if isinstance(nb, str) else json.dumps(nb, indent=1), encoding="utf-8")
        return path.parent

    full = student_notebook(NB1)
    victim = put("victim", full)
    (victim / "timestamp.txt").write_text("2000-01-01 00:00:00.000000 UTC\n")
    put("gradebook.db", student_notebook(NB1, {"ex1-pad-solution"}))
    linker = sub / "linker" / ASSIGNMENT
    linker.mkdir(parents=True)
    (linker / NB1).symlink_to(course / "solutions" / ASSIGNMENT / NB1)
    (linker / "nested").mkdir()
    (linker / "nested" / "all").symlink_to(course / "solutions")
    put("linker", _nb(), "=cmd|' -C calc'!A0\x1b[2J.ipynb")
    (sub / "mirror").symlink_to("victim")
    (sub / "peek").symlink_to(course / "solutions")
    (sub / "borrow").mkdir()
    (sub / "borrow" / ASSIGNMENT).symlink_to(victim)
    for name in HOSTILE_NAMES:
        put(name, full)
    t0 = time.time()
    proc = autograde(course, "--jobs", "2", "--timeout", "60", timeout=20 * 60)
    seconds = time.time() - t0
    print(f"\n[collect run: {seconds:.0f} s]\n{proc.stdout[-4000:]}\n{proc.stderr[-3000:]}")
    return {"course": course, "proc": proc, "seconds": seconds, "collected": t0,
            "csv": (course / "grades.csv").read_text(encoding="utf-8") if (course / "grades.csv").exists() else "",
            "rows": read_grades(course / "grades.csv") if (course / "grades.csv").exists() else {}}


def _flags(row: dict) -> list[str]:
    return [f.strip() for f in row["flags"].split(";") if f.strip()]


@pytest.mark.slow
def test_the_run_completes_and_the_honest_students_score_what_they_did(collect_run):
    proc, rows = collect_run["proc"], collect_run["rows"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert rows["victim"]["status"] == "graded" and float(rows["victim"]["total_score"]) == 10, rows["victim"]
    assert rows["gradebook.db"]["status"] == "graded" and float(rows["gradebook.db"]["total_score"]) == 2
    assert "student-timestamp" in _flags(rows["victim"])


@pytest.mark.slow
def test_linked_folders_are_refused_and_flagged(collect_run):
    rows, course = collect_run["rows"], collect_run["course"]
    for sid, flag in [("mirror", "symlink:.."), ("peek", "symlink:.."), ("borrow", "symlink:.")]:
        assert rows[sid]["status"].startswith("refused ("), rows[sid]
        assert rows[sid]["total_score"] == "" and rows[sid][NB1_STEM] == ""
        assert _flags(rows[sid]) == [flag]
        assert not (course / "autograded" / sid).exists() and not (course / "feedback" / sid).exists()
    linker = rows["linker"]
    assert linker["status"] == "graded" and float(linker["total_score"]) == 0
    assert {f"symlink:{NB1}", "symlink:nested/all", f"missing-notebook:{NB1}",
            "unexpected-file:=cmd|' -C calc'!A0\\x1b[2J.ipynb"} <= set(_flags(linker)), linker


@pytest.mark.slow
def test_unsafe_names_are_refused_escaped_and_never_formulas(collect_run):
    rows, text, proc = collect_run["rows"], collect_run["csv"], collect_run["proc"]
    for name in HOSTILE_NAMES:
        key = escape(name)
        shown = "'" + key if key.startswith(FORMULA_START) else key
        assert rows[shown]["status"].startswith("refused (the folder name is not a valid student id"), rows[shown]
    assert "\x1b" not in text and "\r" not in text and "\x1b" not in proc.stdout + proc.stderr
    for row in csv.reader(io.StringIO(text)):
        for cell in row:
            assert not cell.startswith(FORMULA_START) or report._NUMBER.fullmatch(cell), cell
    # nothing of theirs reached a path
    course = collect_run["course"]
    for folder in ("autograded", "feedback", "build/grading-logs"):
        names = {p.name for p in (course / folder).iterdir()} if (course / folder).exists() else set()
        assert not names & set(HOSTILE_NAMES), (folder, names)


@pytest.mark.slow
def test_no_solution_text_in_any_feedback_or_autograded_file(collect_run):
    course = collect_run["course"]
    marker = BEGIN_SOLUTION
    assert marker in (SOLUTIONS / NB1).read_text()
    checked = 0
    for folder in ("autograded", "feedback"):
        for p in (course / folder).rglob("*"):
            if p.is_file():
                checked += 1
                assert marker not in p.read_text(encoding="utf-8", errors="replace"), p
    assert checked >= 3


@pytest.mark.slow
def test_lateness_comes_from_the_collection_time(collect_run):
    from nbgrader.api import Gradebook

    course = collect_run["course"]
    with Gradebook(f"sqlite:///{course / 'build' / 'gradebook.db'}", "rlhf-ppo") as gb:
        stamp = gb.find_submission(ASSIGNMENT, "victim").timestamp
    # files copied into submitted/ just before the run: not the year 2000 the student wrote
    assert abs(stamp.timestamp() - collect_run["collected"]) < 120, stamp


@pytest.mark.slow
def test_one_students_grader_failure_touches_no_other_row(collect_run, monkeypatch, capsys):
    """A second run (cached expected evidence, nothing executed): the grader itself fails on one student."""
    from course_instructor import grading

    course = collect_run["course"]
    before = read_grades(course / "grades.csv")
    boom = course / "submitted" / "boom" / ASSIGNMENT
    boom.mkdir(parents=True)
    (boom / "notes.txt").write_text("no notebook: nbgrader never runs")
    (boom / "x.ipynb").write_text(_nb())
    real = scan.stage_submission

    def failing(folder, dest, released):
        if "boom" in folder.parts:
            raise RuntimeError("injected failure \x1b[2J")
        return real(folder, dest, released)

    monkeypatch.setattr(scan, "stage_submission", failing)
    code = grading.main(["--course-dir", str(course), "autograde", "--submissions", "submitted",
                         "--jobs", "2", "--no-feedback"])
    out = capsys.readouterr()
    assert code == 1, out.out[-2000:] + out.err[-2000:]
    rows = read_grades(course / "grades.csv")
    assert rows["boom"]["status"].startswith("failed (grading: RuntimeError"), rows["boom"]
    assert "\x1b" not in out.out + out.err
    for sid, row in before.items():
        assert rows[sid] == row, (sid, row, rows[sid])


@pytest.mark.slow
def test_report_keeps_the_refused_rows(collect_run, capsys):
    from course_instructor import grading

    course = collect_run["course"]
    before = read_grades(course / "grades.csv")
    assert grading.main(["--course-dir", str(course), "report", "--no-feedback"]) == 0
    rows = read_grades(course / "grades.csv")
    refused = {sid for sid, row in before.items() if row["status"].startswith("refused")}
    assert len(refused) == 7 and all(rows[sid] == before[sid] for sid in refused | {"victim", "linker"})
    assert "\x1b" not in capsys.readouterr().out


def test_a_student_option_naming_no_safe_folder_is_an_escaped_error(tmp_path, capsys):
    from course_instructor import grading

    shutil.copy2(Path(__file__).resolve().parent.parent / "nbgrader_config.py", tmp_path)
    _student(tmp_path / "submitted", "alice")
    _student(tmp_path / "submitted", "evil\x1b[2J")
    code = grading.main(["--course-dir", str(tmp_path), "autograde", "--submissions", "submitted",
                         "--student", "..", "--student", "\x1b[31m\n"])
    err = capsys.readouterr().err
    assert code == 2 and "no submission for" in err and "\\x1b[31m\\n" in err and "refused: evil\\x1b[2J" in err
    assert "\x1b" not in err


def test_the_exchanges_record_is_the_submission_time_when_there_is_one(tmp_path):
    """Collected from nbgrader's exchange: the time the hub recorded (build/exchange-times.json) is taken;
    a malformed entry is ignored (the collection time then)."""
    import json as _json

    from course_instructor.grading.autograde import ensure_timestamp, exchange_times
    from course_instructor.grading.course import Course

    root = tmp_path / "course"
    (root / "build").mkdir(parents=True)
    (root / "nbgrader_config.py").write_text("c = get_config()\n", encoding="utf-8")
    (root / "build" / "exchange-times.json").write_text(_json.dumps({"collected": {
        "ann": {"exchange": "2026-03-01 12:00:00.000000 UTC", "claimed": "2000-01-01 00:00:00.000000 UTC"},
        "bob": {"exchange": "=HYPERLINK(1)"}, "cy": "junk"}}), encoding="utf-8")
    times = exchange_times(Course.load(root))
    assert times == {"ann": "2026-03-01 12:00:00.000000 UTC"}
    staged = tmp_path / "staged"
    staged.mkdir()
    when = ensure_timestamp(staged, staged, times.get("ann"))
    assert (staged / "timestamp.txt").read_text().strip() == "2026-03-01 12:00:00.000000 UTC" and when.year == 2026
    when = ensure_timestamp(staged, staged, times.get("bob"))
    assert when.year >= 2026 and not (staged / "timestamp.txt").read_text().startswith("=")
