"""What the instructor reads after a run: similar-to flags (copied code) and the per-exercise table (issue 22)."""
from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

from grading_fixtures import NOTEBOOK_NAMES, RELEASED, load, student_notebook

from course_instructor.grading import similarity as sim
from course_instructor.grading.report import formula_safe, write_exercises

NB1, NB3, NB4 = NOTEBOOK_NAMES[0], NOTEBOOK_NAMES[2], NOTEBOOK_NAMES[3]
RELEASED_NBS = {name: load(RELEASED / name) for name in NOTEBOOK_NAMES}


def _code(nb: dict, released: dict | None = None) -> list[str]:
    return sim.notebook_code(nb, released or RELEASED_NBS[NB1])


def _flags(per_student: dict[str, dict]) -> dict[str, list[str]]:
    code = {sid: {Path(name).stem: sim.notebook_code(nb, RELEASED_NBS[name]) for name, nb in nbs.items()}
            for sid, nbs in per_student.items()}
    return sim.similarity_flags(code)


# ---- canonical code --------------------------------------------------------------------------------
def test_comments_docstrings_layout_and_local_names_do_not_matter():
    a = '''def f(xs, k):
    """Sum of the k largest."""
    best = sorted(xs)[-k:]   # the top
    return sum(best)
'''
    b = '''def f(values,n):
    # take the largest n values
    top_values = sorted( values )[ -n : ]
    return sum(top_values)'''
    assert sim.canonical_tokens(a) == sim.canonical_tokens(b)
    assert sim.canonical_tokens(a) != sim.canonical_tokens(a.replace("sorted(xs)", "sorted(xs, reverse=True)"))
    # library names and attributes are not renamed: torch.cat is not torch.stack
    assert sim.canonical_tokens("y = torch.cat(x)") != sim.canonical_tokens("y = torch.stack(x)")


def test_code_that_does_not_parse_is_still_compared():
    broken = "def f(x:\n    total = x + 1  # oops\n    return total"
    renamed = "def f(x:\n    s = x + 1\n    return s"
    assert sim.canonical_tokens(broken) == sim.canonical_tokens(renamed)
    for junk in ('"""', "\x00\x01", "(" * 10_000, "if True:\n" + "    " * 200 + "x", ""):
        assert isinstance(sim.canonical_tokens(junk), list)


# ---- copied and honest pairs -----------------------------------------------------------------------
COPIED_EX1 = '''import torch

def pad_to_length(seq, length, pad_token_id):
    # pad on the right (I wrote this myself!)
    if len(seq)>length:
        raise ValueError(f"sequence of {len(seq)} tokens is longer than {length}")
    padding = torch.full( (length-len(seq),), pad_token_id,
                          dtype = seq.dtype )
    return torch.cat([seq,padding])
'''
COPIED_EX4 = '''def score_for_label(output, label):
    """Find the label."""
    for item in output:
        if item["label"] == label:
            return float(item["score"])   # found it
    names = ", ".join(item["label"] for item in output)
    raise ValueError(f"label {label!r} not in output; valid labels: {names}")
'''
OTHER_EX1 = '''import torch
import torch.nn.functional as F

def pad_to_length(seq, length, pad_token_id):
    """Right-pad `seq`."""
    missing = length - seq.shape[0]
    if missing < 0:
        raise ValueError("too long: %d > %d" % (seq.shape[0], length))
    return F.pad(seq, (0, missing), value=pad_token_id)
'''
OTHER_EX4 = '''def score_for_label(output, label):
    scores = {d["label"]: d["score"] for d in output}
    if label not in scores:
        raise ValueError(f"unknown label {label}; choose from {sorted(scores)}")
    return float(scores[label])
'''
OTHER_EX2 = '''def tokenize(sample):
    ids = tokenizer.encode(sample["review"])
    sample["input_ids"] = ids[:input_size()]
    sample["query"] = tokenizer.decode(sample["input_ids"])
    return sample
'''


def test_a_copy_with_new_names_comments_and_layout_is_flagged_both_ways():
    original = student_notebook(NB1, solved="all")
    copy = student_notebook(NB1, solved={"ex2-tokenize-solution", "ex3-collator-solution"},
                            replace={"ex1-pad-solution": COPIED_EX1, "ex4-score-solution": COPIED_EX4})
    flags = _flags({"alice": {NB1: original}, "bob": {NB1: copy}, "carol": {NB1: student_notebook(NB1, "all", {
        "ex1-pad-solution": OTHER_EX1, "ex4-score-solution": OTHER_EX4, "ex2-tokenize-solution": OTHER_EX2})}})
    stem = Path(NB1).stem
    assert flags == {"alice": [f"{stem}:similar-to:bob"], "bob": [f"{stem}:similar-to:alice"]}


def test_a_copied_notebook_4_is_flagged():
    honest = student_notebook(NB4, solved="all")
    copy = json.loads(json.dumps(honest))
    for cell in copy["cells"]:
        if cell["cell_type"] == "code" and cell["metadata"]["nbgrader"].get("solution"):
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            src = src.replace("advantages", "adv").replace("clipfrac", "frac").replace("    ", "  ")
            cell["source"] = "# my work\n" + src.replace("\n", "  # step\n")
    stem = Path(NB4).stem
    assert _flags({"a": {NB4: honest}, "b": {NB4: copy}}) == {"a": [f"{stem}:similar-to:b"],
                                                               "b": [f"{stem}:similar-to:a"]}


def test_two_different_correct_solutions_are_not_flagged():
    reference = student_notebook(NB1, solved="all")
    other = student_notebook(NB1, solved="all", replace={
        "ex1-pad-solution": OTHER_EX1, "ex4-score-solution": OTHER_EX4, "ex2-tokenize-solution": OTHER_EX2})
    assert _flags({"a": {NB1: reference}, "b": {NB1: other}}) == {}
    gae_forward = '''def gae(values, rewards, gamma, lam):
    n = len(values)
    deltas = [rewards[t] + gamma * (values[t + 1] if t + 1 < n else 0.0) - values[t] for t in range(n)]
    adv = torch.zeros_like(values)
    for t in range(n):
        acc = 0.0
        for k in range(t, n):
            acc += (gamma * lam) ** (k - t) * deltas[k]
        adv[t] = acc
    return adv, adv + values
'''
    reference4 = student_notebook(NB4, solved="all")
    other4 = student_notebook(NB4, solved="all", replace={"ex12-gae-solution": gae_forward})
    # the notebook is compared as a whole: one exercise of five written differently is enough to stay
    # below the threshold (a copy of four exercises out of five is not flagged: see the README)
    assert _flags({"a": {NB4: reference4}, "b": {NB4: other4}}) == {}
    only_gae = {sid: student_notebook(NB4, solved={"ex12-gae-solution"}, replace=r)
                for sid, r in (("a", {}), ("b", {"ex12-gae-solution": gae_forward}))}
    assert _flags({sid: {NB4: nb} for sid, nb in only_gae.items()}) == {}


def test_students_who_solved_only_the_short_exercises_the_same_way_are_not_flagged():
    one_liners = {NB1: {"ex2-tokenize-solution", "ex3-collator-solution"},
                  NB3: {"ex10-compare-solution"}, NB4: {"ex15-rloo-solution"}}
    students = {sid: {name: student_notebook(name, solved=ids) for name, ids in one_liners.items()}
                for sid in ("ann", "ben", "cy")}
    assert _flags(students) == {}
    # and untouched notebooks (nothing written) are never alike
    assert _flags({sid: {NB1: load(RELEASED / NB1)} for sid in ("x", "y")}) == {}


def test_reading_the_class_from_folders_never_fails(tmp_path):
    submitted, autograded = tmp_path / "submitted", tmp_path / "autograded"
    for sid, nb in (("alice", student_notebook(NB1, "all")), ("bob", student_notebook(NB1, "all"))):
        (submitted / sid / "rlhf_ppo").mkdir(parents=True)
        (submitted / sid / "rlhf_ppo" / NB1).write_text(json.dumps(nb))
    (autograded / "carol" / "rlhf_ppo").mkdir(parents=True)         # graded before; submission gone
    (autograded / "carol" / "rlhf_ppo" / NB1).write_text(json.dumps(student_notebook(NB1, "all")))
    (submitted / "dave" / "rlhf_ppo").mkdir(parents=True)
    (submitted / "dave" / "rlhf_ppo" / NB1).write_text("{not json")
    (submitted / "eve" / "rlhf_ppo").mkdir(parents=True)
    os.symlink(submitted / "alice" / "rlhf_ppo" / NB1, submitted / "eve" / "rlhf_ppo" / NB1)
    state = {"alice": {"flags": ["x:similar-to:old", "1_reward_and_data:network"]}, "carol": {"flags": []},
             "dave": {}, "eve": "corrupt"}
    results = {"bob": SimpleNamespace(flags=["x:similar-to:zed"])}
    similar = sim.refresh(state, ["alice", "bob", "carol", "dave", "eve", "../etc"], RELEASED_NBS, "rlhf_ppo",
                          submitted, autograded, results)
    stem = Path(NB1).stem
    assert similar == {"alice": [f"{stem}:similar-to:bob", f"{stem}:similar-to:carol"],
                       "bob": [f"{stem}:similar-to:alice", f"{stem}:similar-to:carol"],
                       "carol": [f"{stem}:similar-to:alice", f"{stem}:similar-to:bob"]}
    assert state["alice"]["flags"] == ["1_reward_and_data:network", *similar["alice"]]   # the stale flag is gone
    assert results["bob"].flags == similar["bob"] and state["dave"]["flags"] == []


# ---- the per-exercise table ---------------------------------------------------------------------------
def _gradebook(tmp_path, monkeypatch):
    from nbgrader.api import Gradebook

    # nbgrader runs `alembic` from PATH when it creates a gradebook
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))

    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with Gradebook(url, "c") as gb:
        gb.add_assignment("a")
        gb.add_notebook("n1", "a")
        gb.add_grade_cell("t1", "n1", "a", max_score=2, cell_type="code")
        gb.add_grade_cell("t2", "n1", "a", max_score=3, cell_type="code")
        gb.add_grade_cell("w1", "n1", "a", max_score=3, cell_type="markdown")
        gb.add_notebook("n2", "a")
        gb.add_grade_cell("=cmd()", "n2", "a", max_score=1, cell_type="code")
        scores = {"s1": {"t1": 2, "t2": 3, "w1": 3, "=cmd()": 1}, "s2": {"t1": 2, "t2": 1, "w1": 0, "=cmd()": 0},
                  "s3": {"t1": 0, "t2": 3, "w1": 1, "=cmd()": 1}, "failed": {"t1": 2, "t2": 3, "w1": 3, "=cmd()": 1}}
        for sid, per in scores.items():
            gb.add_student(sid)
            gb.add_submission("a", sid)
            for cell, s in per.items():
                g = gb.find_grade(cell, "n1" if cell != "=cmd()" else "n2", "a", sid)
                if cell == "w1":
                    g.manual_score = s
                else:
                    g.auto_score = s
        gb.db.commit()
    return url


def test_exercise_table_counts_full_scores_and_medians(tmp_path, capsys, monkeypatch):
    url = _gradebook(tmp_path, monkeypatch)
    course = SimpleNamespace(db_url=url, course_id="c")
    header = ["student_id", "n1", "n2", "total_score", "max_score", "needs_manual_grade", "flags", "status"]
    rows = [["s1", "", "", "", "", "", "", "graded"], ["s2", "", "", "", "", "", "", "graded"],
            ["s3", "", "", "", "", "", "", "graded"], ["failed", "", "", "", "", "", "", "failed (x)"]]
    path = write_exercises(course, "a", header, rows, tmp_path / "grades.csv")
    assert path == tmp_path / "exercises.csv"
    table = list(csv.reader(path.open(encoding="utf-8")))
    assert table == [["notebook", "cell", "points", "students_passed", "students_graded", "median_score"],
                     ["n1", "t1", "2", "2", "3", ""],
                     ["n1", "t2", "3", "2", "3", ""],
                     ["n1", "(notebook)", "8", "1", "3", "4"],
                     ["n2", "'=cmd()", "1", "2", "3", ""],
                     ["n2", "(notebook)", "1", "2", "3", "1"]]
    assert "(notebook)" in capsys.readouterr().out


def test_formula_safe_cells():
    for text in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert formula_safe(text) == "'" + text
    assert formula_safe("ex1-tests") == "ex1-tests" and formula_safe(3) == "3"
