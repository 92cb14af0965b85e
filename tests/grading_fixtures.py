"""Courses graded for the tests: honest students, and students who attack the grader.

Two grading runs share one temporary copy of the course (and so the cached
evidence of the solutions):

* run A (``graded_course``): ``perfect`` (every exercise solved, all four
  notebooks) and ``untouched`` (the released copies), with the course's
  default cell limit of 120 s;
* run B (``attack_run``): notebook 1 only, for an honest ``victim`` and for
  students who try to cheat, to harm others or to break the grader, graded
  two at a time with a 30 s cell limit (notebook 1's longest legitimate cell
  takes about 3 s on a quiet machine; the margin is for a loaded one).  The course folder, ``course_lib`` and every submission
  are hashed before and after.
"""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from course_instructor import grading

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENT = grading.ASSIGNMENT
SOLUTIONS = REPO / "solutions" / ASSIGNMENT
RELEASED = REPO / "notebooks" / ASSIGNMENT
NOTEBOOK_NAMES = sorted(p.name for p in SOLUTIONS.glob("*.ipynb"))
NB1 = NOTEBOOK_NAMES[0]
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
ATTACK_TIMEOUT = 30


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def meta(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def solved_source(solution_cell: dict) -> str:
    """A solution cell's code without the nbgrader markers: what a perfect student writes."""
    return "\n".join(line for line in source(solution_cell).splitlines()
                     if line.strip() not in (BEGIN_SOLUTION, END_SOLUTION))


def student_notebook(name: str, solved: set[str] | str = "all", replace: dict[str, str] | None = None) -> dict:
    """The released ``name`` with the solution cells in ``solved`` (all: written answers too) filled in and
    ``replace``'s sources swapped in.

    Keys are grade_ids of solution cells; a solution cell in neither stays as released.
    """
    solution = {meta(c).get("grade_id"): c for c in load(SOLUTIONS / name)["cells"]}
    nb = load(RELEASED / name)
    replace = replace or {}
    for cell in nb["cells"]:
        gid = meta(cell).get("grade_id")
        if gid in replace:
            cell["source"] = replace[gid]
        elif meta(cell).get("solution") and (solved == "all" or gid in solved):
            # code: the solution without its markers; markdown (a written answer): the model answer
            cell["source"] = solved_source(solution[gid]) if cell["cell_type"] == "code" else source(solution[gid])
    return nb


def write_nb(path: Path, nb: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")


def autograde(course: Path, *args: str, timeout: float = 40 * 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "course_instructor.grading", "--course-dir", str(course),
                           "autograde", "--submissions", "submitted", *args],
                          capture_output=True, text=True, timeout=timeout)


def read_grades(path: Path) -> dict[str, dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return {row["student_id"]: row for row in csv.DictReader(fh)}


def tree_hash(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (paths starting with ``skip`` left out)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if any(rel == s or rel.startswith(s + "/") for s in skip) or "__pycache__" in p.parts:
            continue
        if p.is_file() or p.is_symlink():
            out[rel] = hashlib.sha256(p.read_bytes() if p.is_file() else b"link").hexdigest()
    return out


def new_course(tmp: Path) -> Path:
    for folder in ("solutions", "notebooks"):
        shutil.copytree(REPO / folder, tmp / folder)
    shutil.copy2(REPO / "nbgrader_config.py", tmp)
    return tmp


#: Produced by the grader, so excluded from "nothing outside the sandbox changed".
GRADER_OUTPUTS = ("build", "autograded", "feedback", "grades.csv", "exercises.csv")


@pytest.fixture(scope="session")
def graded_course(tmp_path_factory):
    """Run A: ``perfect`` and ``untouched`` on all four notebooks; returns what it produced."""
    course = new_course(tmp_path_factory.mktemp("grading-course"))
    sub = course / "submitted"
    for name in NOTEBOOK_NAMES:
        write_nb(sub / "perfect" / ASSIGNMENT / name, student_notebook(name))
    shutil.copytree(RELEASED, sub / "untouched" / ASSIGNMENT)
    t0 = time.time()
    proc = autograde(course, "--jobs", "2", "--timeout", str(grading.DEFAULT_CELL_TIMEOUT))
    seconds = time.time() - t0
    print(f"\n[run A: {seconds:.0f} s]\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return {"course": course, "proc": proc, "rows": read_grades(course / "grades.csv"), "seconds": seconds,
            "csv": (course / "grades.csv").read_text()}


# ---- the attacks ---------------------------------------------------------------------------
def attacks(course: Path, canary: Path) -> dict[str, dict]:
    """Student -> {"nb": notebook 1 as submitted (dict, or raw text), "earned": its honest points, ...}.

    Each attack goes into a solution cell, the one place a student may write.
    ``earned`` is what the exercises it really solves are worth: the most it may score.
    """
    gradebook = course / "build" / "gradebook.db"
    victim_nb = course / "submitted" / "victim" / ASSIGNMENT / NB1
    ex = {"ex1": "ex1-pad-solution", "ex2": "ex2-tokenize-solution", "ex3": "ex3-collator-solution",
          "ex4": "ex4-score-solution"}
    solution = {meta(c).get("grade_id"): solved_source(c) for c in load(SOLUTIONS / NB1)["cells"]}
    pad_ok = solution[ex["ex1"]]

    def nb1(solved=(), **replace):
        return student_notebook(NB1, {ex[k] for k in solved}, {ex[k]: v for k, v in replace.items()})

    silencer = pad_ok + "\n\nget_ipython().set_custom_exc((BaseException,), lambda *args, **kwargs: None)\n"
    # the whole file system but the system's and the Python installation's files (fast enough for a 30 s cell)
    walk_setup = 'SYSTEM = {"proc", "sys", "dev", "usr", "site-packages", "dist-packages"}\n'
    gradebook_writer = walk_setup + f'''import sqlite3, os
def pad_to_length(seq, length, pad_token_id):
    return seq
for path in [{str(gradebook)!r}, "../../build/gradebook.db", "/build/gradebook.db"]:
    try:
        con = sqlite3.connect(path)
        con.execute("UPDATE grade SET auto_score = 100, manual_score = 100")
        con.commit()
        print("updated the gradebook at", path)
    except Exception as e:
        print("no gradebook at", path, type(e).__name__)
found = []
for d, dirs, fs in os.walk("/"):
    dirs[:] = [x for x in dirs if x not in SYSTEM]
    found += [os.path.join(d, f) for f in fs if f.endswith(".db")]
print("databases visible:", found)
'''
    solution_reader = walk_setup + f'''import glob, os
def tokenize(sample):
    return sample
for pattern in [{str(course / "solutions" / ASSIGNMENT / "*.ipynb")!r}, {str(REPO / "solutions" / ASSIGNMENT / "*.ipynb")!r}]:
    for path in glob.glob(pattern):
        print(open(path).read())
found = []
for d, dirs, fs in os.walk("/"):
    dirs[:] = [x for x in dirs if x not in SYSTEM]
    for f in fs:
        if f.endswith(".ipynb"):
            found.append(os.path.join(d, f))
            if "solutions" in d:
                print(open(os.path.join(d, f)).read())
print("notebooks visible:", found)
'''
    saboteur = f'''import json, os
def collator(data):
    return data
blank = {{"cells": [], "metadata": {{}}, "nbformat": 4, "nbformat_minor": 5}}
for path, text in [({str(victim_nb)!r}, json.dumps(blank)),
                   ({str(REPO / "course_lib" / "padding.py")!r}, "def pad_to_length(*a): return 'pwned'"),
                   ({str(REPO / "course_lib" / "pwned.py")!r}, "x = 1"),
                   ({str(course / "nbgrader_config.py")!r}, "c = get_config()"),
                   ({str(canary)!r}, "escaped")]:
    try:
        with open(path, "w") as fh:
            fh.write(text)
        print("wrote", path)
    except Exception as e:
        print("cannot write", path, type(e).__name__)
'''
    patcher = '''import torch, builtins, numpy
import course_lib.padding, course_lib.reward
def pad_to_length(seq, length, pad_token_id):
    return seq
course_lib.padding.pad_to_length = pad_to_length
torch.equal = lambda *args, **kwargs: True
torch.allclose = lambda *args, **kwargs: True
numpy.allclose = lambda *args, **kwargs: True
builtins.abs = lambda x: 0          # every `abs(a - b) < tol` in a test now holds
import course_lib.evidence
course_lib.evidence.record = lambda *args, **kwargs: None
'''
    always_equal = '''class Anything:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __bool__(self): return True
    def __getattr__(self, name): return Anything()
    def __call__(self, *args, **kwargs): return Anything()
    def __getitem__(self, key): return Anything()
    def __iter__(self): return iter([])
    def __len__(self): return 5
    def __le__(self, other): return True
    def __ge__(self, other): return True
    def __lt__(self, other): return True
    def __gt__(self, other): return True
    def __float__(self): return 0.0
    def tolist(self): return Anything()
def pad_to_length(seq, length, pad_token_id):
    return Anything()
'''
    reply_forger = '''ip = get_ipython()
_run_cell = ip.run_cell
def run_cell(*args, **kwargs):
    result = _run_cell(*args, **kwargs)
    result.error_in_exec = None
    result.error_before_exec = None
    return result
ip.run_cell = run_cell
ip.showtraceback = lambda *args, **kwargs: None
_send = ip.kernel.session.send
def send(stream, msg_or_type, content=None, *args, **kwargs):
    if isinstance(content, dict) and content.get("status") == "error":
        content = {"status": "ok", "execution_count": content.get("execution_count", 0), "user_expressions": {}, "payload": []}
    if msg_or_type == "error":
        return None
    return _send(stream, msg_or_type, content, *args, **kwargs)
ip.kernel.session.send = send
def pad_to_length(seq, length, pad_token_id):
    return seq
'''
    memory_bomb = '''import torch
def tokenize(sample):
    return sample
huge = torch.empty(50 * 10**9, dtype=torch.uint8)   # 50 GB
more = bytearray(50 * 10**9)
'''
    fork_bomb = '''import os
def collator(data):
    return data
while True:
    try:
        os.fork()
    except OSError:
        pass
'''
    print_bomb = pad_ok + '\nprint("\\n".join(map(str, range(10_000_000))))\n'

    # answers taken from anything importable, reached the ways a flag on the literal import misses
    library_thief = '''import importlib, pkgutil, sys
def _find(name):
    for mod_name in ["course_lib", "course_instructor", "course_instructor.reference", "course_instructor.ppo"]:
        try:
            importlib.import_module(mod_name)
        except ImportError:
            pass
    for pkg in ("course_lib", "course_instructor"):
        mod = sys.modules.get(pkg)
        for info in pkgutil.walk_packages(getattr(mod, "__path__", []), pkg + "."):
            try:
                importlib.import_module(info.name)
            except Exception:
                pass
    for mod in list(sys.modules.values()):
        f = getattr(mod, name, None)
        if callable(f) and getattr(f, "__module__", "").startswith(("course_lib", "course_instructor")):
            print("found", name, "in", mod.__name__)
            return f
    print("no copy of", name)
    return None
for _name in ("pad_to_length", "tokenize", "collator", "score_for_label"):
    globals()["_" + _name] = _find(_name)
def pad_to_length(seq, length, pad_token_id):
    return _pad_to_length(seq, length, pad_token_id)
'''
    thief_rest = {"ex2": "def tokenize(sample):\n    return _tokenize(sample)\n",
                  "ex3": "def collator(data):\n    return _collator(data)\n",
                  "ex4": "def score_for_label(output, label):\n    return _score_for_label(output, label)\n"}
    # answers taken from the hidden test while it runs: its reference functions and precomputed values
    frame_reader = '''import sys, torch
def _caller_names():
    frame, names = sys._getframe(2), {}
    while frame is not None:
        names.update({k: v for k, v in frame.f_globals.items() if not k.startswith("__")})
        names.update(frame.f_locals)
        frame = frame.f_back
    return names
def pad_to_length(seq, length, pad_token_id):
    names = _caller_names()
    for key in ("reference_pad", "_reference", "expected"):
        if callable(names.get(key)):
            return names[key](seq, length, pad_token_id)
    return seq
def tokenize(sample):
    names = _caller_names()
    if "full" in names and "expected_len" in names:
        ids = names["full"][: names["expected_len"]]
        return {**sample, "input_ids": ids, "query": tokenizer.decode(ids)}
    return {**sample, "input_ids": [], "query": ""}
'''

    # a student who edits and deletes locked cells (nothing solved)
    cell_editor = nb1()
    cells = []
    for cell in cell_editor["cells"]:
        gid = meta(cell).get("grade_id")
        if gid == "ex1-pad-tests":
            continue                                   # deleted
        if gid == "ex2-tokenize-tests":
            cell["source"] = "print('all good')\n"     # emptied
        if gid == "ex3-collator-tests":
            cell["metadata"]["nbgrader"].update(points=100, grade=False, locked=False)
        cells.append(cell)
    forged = json.loads(json.dumps(next(c for c in cells if meta(c).get("grade_id") == "ex4-score-tests")))
    forged["source"] = "print('forged copy of the test cell')\n"
    forged["id"] = "forged-cell"
    cell_editor["cells"] = [forged, *cells]

    # forged evidence the checker cannot even compare (an int beyond any float, where a float is expected)
    big_forger = solution[ex["ex4"]] + '''
_real = score_for_label
def score_for_label(output, label):
    from IPython.display import display
    display({"application/vnd.course-lib.evidence+json": {"key": "reversed order", "value": 10**400}}, raw=True)
    return _real(output, label)
'''
    # an added cell with a grade_id the release does not have, and the setup cell's metadata stripped and
    # its code rewritten (run as written, the notebook would have no `cfg`: exercise 4's test would fail)
    restructured = nb1(solved=("ex1", "ex4"))
    for cell in restructured["cells"]:
        if meta(cell).get("grade_id") == "nb1-code-04":
            cell["metadata"], cell["source"] = {}, "print('my own setup')\n"
    restructured["cells"].insert(3, {"cell_type": "code", "id": "extra", "execution_count": None, "outputs": [],
                                     "source": "x = 1\n", "metadata": {"nbgrader": {
                                         "grade_id": "my-extra", "grade": False, "solution": True, "locked": False}}})

    return {
        # honest: all four exercises, and two of them
        "victim": {"nb": nb1(solved=ex), "earned": 10},
        "half": {"nb": nb1(solved=("ex2", "ex4")), "earned": 6},
        "silencer": {"nb": nb1(ex1=silencer), "earned": 2},
        # one attack per exercise cell: write the gradebook, read the solutions, overwrite others' files
        "intruder": {"nb": nb1(ex1=gradebook_writer, ex2=solution_reader, ex3=saboteur), "earned": 0},
        "patcher": {"nb": nb1(ex1=patcher), "earned": 0},
        "always_equal": {"nb": nb1(ex1=always_equal, ex2="def tokenize(sample):\n    return Anything()\n",
                                   ex3="def collator(data):\n    return Anything()\n",
                                   ex4="def score_for_label(output, label):\n    return Anything()\n"), "earned": 0},
        "reply_forger": {"nb": nb1(ex1=reply_forger), "earned": 0},
        "cell_editor": {"nb": cell_editor, "earned": 0},
        # 10 million lines of output after a correct exercise 1, then 100 GB of memory
        "bomber": {"nb": nb1(ex1=print_bomb, ex2=memory_bomb), "earned": 2},
        "fork_bomb": {"nb": nb1(solved=("ex1", "ex2"), ex3=fork_bomb), "earned": 5},
        "invalid_json": {"nb": json.dumps(nb1(solved=ex))[: -200], "earned": 0},
        "renamed": {"nb": nb1(solved=ex), "name": "1_reward_and_data-Copy1.ipynb", "earned": 0},
        # careless, not malicious: a syntax error in exercise 2, an endless loop in exercise 3
        "careless": {"nb": nb1(solved=("ex1", "ex4"), ex2="def tokenize(sample):\n    return {sample['review'][:8]\n",
                               ex3="def collator(data):\n    while True:\n        pass\n"), "earned": 5},
        "crash": {"nb": nb1(solved=ex, ex1="import os\nos._exit(1)\n"), "earned": 8},
        # answers from the library, the instructor's package or the hidden tests themselves
        "library_thief": {"nb": nb1(ex1=library_thief, **thief_rest), "earned": 0},
        "frame_reader": {"nb": nb1(ex1=frame_reader, ex2=frame_reader.replace("def pad_to_length", "def _unused")),
                         "earned": 0},
        # the checker itself attacked: malformed evidence; cells the release does not know; a stripped setup cell
        "big_forger": {"nb": nb1(solved=("ex1",), ex4=big_forger), "earned": 2},
        "restructured": {"nb": restructured, "earned": 5},
    }


@pytest.fixture(scope="session")
def attack_run(graded_course, tmp_path_factory):
    """Run B: the attackers, an honest victim and careless students (notebook 1 only), two at a time."""
    course = graded_course["course"]
    canary = Path("/tmp") / f"course-grading-canary-{uuid.uuid4().hex}"
    students = attacks(course, canary)
    sub = course / "submitted"
    for sid, spec in students.items():
        path = sub / sid / ASSIGNMENT / spec.get("name", NB1)
        path.parent.mkdir(parents=True, exist_ok=True)
        nb = spec["nb"]
        path.write_text(nb if isinstance(nb, str) else json.dumps(nb, indent=1), encoding="utf-8")
    before_course = tree_hash(course, GRADER_OUTPUTS)
    before_lib = tree_hash(REPO / "course_lib")
    before_rows = read_grades(course / "grades.csv")
    args = [a for sid in students for a in ("--student", sid)]
    t0 = time.time()
    proc = autograde(course, *args, "--jobs", "2", "--timeout", str(ATTACK_TIMEOUT), "--student-timeout", "900")
    seconds = time.time() - t0
    print(f"\n[run B: {seconds:.0f} s]\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
    return {"course": course, "proc": proc, "students": students, "seconds": seconds,
            "rows": read_grades(course / "grades.csv"), "before_rows": before_rows,
            "before_course": before_course, "after_course": tree_hash(course, GRADER_OUTPUTS),
            "before_lib": before_lib, "after_lib": tree_hash(REPO / "course_lib"), "canary": canary}
