"""Autograde a class of untrusted submissions: sandboxed, checked by evidence, in parallel, atomically.

One run (``make grade``):

1. **Lock and copy.** Only one run at a time (``build/grading.lock``).  The
   gradebook is copied to a working copy; the assignment's cells and hidden
   tests are recorded there from the sources.
2. **Expected evidence.** The instructor's solution notebooks run once in the
   sandbox, like a student's; what their hidden tests record
   (:mod:`course_lib.evidence`) is what every student's run must match.  It is
   cached under ``build/grading-cache/`` by a hash of the sources and of
   ``course_lib``.
3. **Students, N at a time.** For each student: the gradable notebooks are
   staged and scanned (:mod:`.scan`), then ``nbgrader autograde`` runs in its
   own process against its own copy of the gradebook, executing each notebook
   in a fresh sandbox (:mod:`.sandbox`) and deciding each test cell from the
   evidence (:mod:`.verify`).
4. **Commit.** Each graded student's rows are merged into the working copy,
   which then replaces the gradebook in one rename; the autograded folders are
   moved into place, the flags recorded, feedback generated and ``grades.csv``
   written atomically.  A crash before this step leaves everything as it was.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import os
import queue
import shutil
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import gradebook, scan, verify
from .course import ASSIGNMENT, Course, GradingError, default_course_dir, run_nbgrader, tail, write_atomic
from .release import sync_gradebook
from .report import generate_feedback, load_state, output_path, print_table, write_csv
from .sandbox import DEFAULT_UID_BASE, Limits, check_sandbox, execute_notebook, grading_env, memory_mechanism

DEFAULT_CELL_TIMEOUT = 120        # seconds per cell (as in nbgrader_config.py)
DEFAULT_STUDENT_TIMEOUT = 3600    # seconds for one student's whole autograde (last resort)

@dataclass
class Options:
    """How students are run (the command line's choices)."""

    cell_timeout: int = DEFAULT_CELL_TIMEOUT
    student_timeout: float | None = DEFAULT_STUDENT_TIMEOUT
    jobs: int = 1
    sandbox: bool = True
    uid_base: int = DEFAULT_UID_BASE

    def limits(self) -> Limits:
        wall = self.student_timeout or DEFAULT_STUDENT_TIMEOUT
        return Limits(cell_timeout=self.cell_timeout, wall_seconds=float(wall))


@dataclass
class StudentResult:
    student: str
    status: str = "graded"        # graded | failed (why; see the log)
    seconds: float = 0.0
    log: Path | None = None
    notes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    fingerprint: str = ""
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return not self.status.startswith("failed")


# ---- submissions ----------------------------------------------------------------------------
def find_submissions(submissions: Path, assignment: str) -> list[str]:
    """Student ids with a ``<submissions>/<student>/<assignment>/`` folder holding notebooks."""
    if not submissions.is_dir():
        raise GradingError(f"no submissions folder {submissions}: put each student's files in "
                           f"{submissions}/<student>/{assignment}/")
    students = []
    for d in sorted(submissions.iterdir()):
        if not d.is_dir() or d.name.startswith("."):
            continue
        folder = d / assignment
        if folder.is_dir() and any(folder.glob("*.ipynb")):
            students.append(d.name)
        else:
            print(f"warning: {d.name}: no notebooks in {folder}; skipped", file=sys.stderr)
    return students


def ensure_timestamp(folder: Path) -> bool:
    """Write ``timestamp.txt`` (nbgrader's submission time) if missing; True if written.

    The time written is that of the newest file of the submission, in UTC.
    """
    stamp = folder / "timestamp.txt"
    if stamp.exists():
        return False
    newest = max((p.stat().st_mtime for p in folder.rglob("*") if p.is_file()), default=time.time())
    when = _dt.datetime.fromtimestamp(newest, _dt.timezone.utc)
    stamp.write_text(when.strftime("%Y-%m-%d %H:%M:%S.%f UTC") + "\n", encoding="utf-8")
    return True


def fingerprint(folder: Path) -> str:
    """A hash of every file of a submission (names and bytes): unchanged submissions are not regraded."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            h.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def released_notebooks(course: Course, assignment: str) -> dict[str, dict]:
    folder = course.release / assignment
    found = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.ipynb"))}
    if not found:
        raise GradingError(f"no released notebooks in {folder}: run `make release` first")
    return found


# ---- expected evidence ---------------------------------------------------------------------
def _course_lib_hash() -> str:
    """Hash of course_lib's code and of its assets' manifests (the assets' bytes are behind those)."""
    import course_lib

    root = Path(course_lib.__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and (p.suffix == ".py" or p.name == "SHA256SUMS") and "__pycache__" not in p.parts:
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def expected_evidence(course: Course, assignment: str, opts: Options) -> Path:
    """The evidence of the instructor's solutions (computed once, then cached); returns its JSON file."""
    sources = course.source_notebooks(assignment)
    h = hashlib.sha256()
    for p in sources:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    h.update(_course_lib_hash().encode())
    h.update(json.dumps([opts.sandbox, sys.version, grading_env()]).encode())
    path = course.build / "grading-cache" / f"expected-{h.hexdigest()[:20]}.json"
    if path.is_file():
        return path
    print(f"running the solutions once for the expected results ({len(sources)} notebooks) ...", flush=True)
    limits = opts.limits()
    slots = queue.Queue()
    for s in range(max(1, opts.jobs)):
        slots.put(s)

    def one(p: Path) -> tuple[str, dict]:
        nb = json.loads(p.read_text(encoding="utf-8"))
        slot = slots.get()
        try:
            run = execute_notebook(nb, limits=limits, slot=slot, sandbox=opts.sandbox, env=grading_env(),
                                   assignment=assignment, uid_base=opts.uid_base)
        finally:
            slots.put(slot)
        if not run.ok or run.notebook is None or verify.merge_outputs(nb, run.notebook):
            raise GradingError(f"the solution {p.name} did not run to the end in the grading sandbox "
                               f"({run.status}):\n{tail(run.log_tail, 30)}")
        try:
            return p.stem, verify.expected_from(nb)
        except verify.EvidenceError as e:
            raise GradingError(f"{p.name}: {e}") from None

    with ThreadPoolExecutor(max(1, opts.jobs)) as pool:
        expected = dict(pool.map(one, sources))
    write_atomic(path, json.dumps(expected, sort_keys=True).encode("utf-8"))
    return path


# ---- one student ------------------------------------------------------------------------------
def _findings(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def grade_student(course: Course, assignment: str, student: str, submissions: Path, run_dir: Path,
                  work_db: Path, expected: Path, released: dict[str, dict], opts: Options,
                  slot: int) -> StudentResult:
    """Stage, scan and autograde one student into ``run_dir/<student>``; never raises for a bad submission."""
    res = StudentResult(student, log=course.logs / f"{student}.log")
    stage = run_dir / student
    staged = stage / "submitted" / student / assignment
    res.flags = scan.stage_submission(submissions / student / assignment, staged, released)
    if ensure_timestamp(staged):
        res.notes.append("timestamp.txt created")
    if not any(staged.glob("*.ipynb")):
        res.notes.append("no gradable notebook")
        res.status = "graded"
        return res
    db = stage / "gradebook.db"
    shutil.copyfile(work_db, db)
    report = stage / "findings.jsonl"
    args = [assignment, f"--student={student}", "--create", "--force",
            f"--CourseDirectory.submitted_directory={stage / 'submitted'}",
            f"--CourseDirectory.autograded_directory={stage / 'autograded'}",
            f"--CourseDirectory.db_url={gradebook.sqlite_url(db)}",
            f"--SandboxedExecute.sandbox={opts.sandbox}", f"--SandboxedExecute.slot={slot}",
            f"--SandboxedExecute.uid_base={opts.uid_base}", f"--SandboxedExecute.cell_timeout={opts.cell_timeout}",
            f"--SandboxedExecute.wall_seconds={int(opts.limits().wall_seconds)}",
            f"--SandboxedExecute.expected={expected}", f"--SandboxedExecute.report={report}",
            f"--SandboxedExecute.assignment={assignment}"]
    t0 = time.time()
    code, out = run_nbgrader(course, args, module="course_instructor.grading.job", log=res.log,
                             timeout=(opts.student_timeout + 120) if opts.student_timeout else None)
    res.seconds = time.time() - t0
    for f in _findings(report):
        stem = Path(str(f.get("notebook", "?"))).stem
        res.flags += [f"{stem}:{flag}" for flag in f.get("flags", [])]
    graded = stage / "autograded" / student / assignment
    if code != 0 or not any(graded.glob("*.ipynb")):
        if code == -signal.SIGKILL:
            why = "stopped: took longer than --student-timeout"
        elif "kernel died" in out:
            why = "the kernel died"
        elif "timeout (the notebook ran longer" in out:
            why = "a notebook ran longer than --student-timeout"
        elif "output too large" in out:
            why = "its output was too large"
        else:
            why = f"nbgrader exit {code}"
        res.status = f"failed ({why}; see {course.short(res.log)})"
    return res


def record_without_notebooks(work_db: Path, course: Course, assignment: str, student: str) -> None:
    """A student none of whose files can be graded: every cell scores 0 (flags say why)."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(gradebook.sqlite_url(work_db), course.course_id) as gb:
        gb.update_or_create_student(student)
        try:
            sub = gb.find_submission(assignment, student)
        except MissingEntry:
            sub = gb.add_submission(assignment, student)
        for nb in sub.notebooks:
            for g in nb.grades:
                g.auto_score, g.needs_manual_grade = 0.0, g.manual_score is not None
        gb.db.commit()


# ---- the run ----------------------------------------------------------------------------------
class _RunLock:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "w")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            raise GradingError(f"another grading run holds {self.path}; wait for it to finish") from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def _swap_folder(staged: Path, final: Path) -> None:
    """Replace ``final`` by ``staged`` (two renames; the old copy is removed after)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staged, final)
    shutil.rmtree(old, ignore_errors=True)


def autograde(course_dir: str | os.PathLike | None = None, submissions: str | os.PathLike | None = None,
              assignment: str = ASSIGNMENT, cell_timeout: int = DEFAULT_CELL_TIMEOUT,
              student_timeout: float | None = DEFAULT_STUDENT_TIMEOUT, students: list[str] | None = None,
              force: bool = False, output: str | os.PathLike = "grades.csv", feedback: bool = True,
              jobs: int = 1, sandbox: bool = True,
              uid_base: int = DEFAULT_UID_BASE) -> tuple[Path, dict[str, StudentResult]]:
    """Autograde every submission, write feedback and the grade table; returns (csv path, results)."""
    course = Course.load(course_dir or default_course_dir())
    opts = Options(cell_timeout=cell_timeout, student_timeout=student_timeout, jobs=max(1, int(jobs)),
                   sandbox=sandbox, uid_base=uid_base)
    sub_dir = Path(submissions).expanduser() if submissions else course.submitted
    sub_dir = (sub_dir if sub_dir.is_absolute() else course.root / sub_dir).resolve()
    everyone = find_submissions(sub_dir, assignment)
    found = everyone
    if students:
        missing = sorted(set(students) - set(everyone))
        if missing:
            raise GradingError(f"no submission for {', '.join(missing)} in {sub_dir}; "
                               f"students with submissions: {', '.join(everyone) or '(none)'}")
        found = [s for s in everyone if s in students]
    if not found:
        raise GradingError(f"no submissions in {sub_dir} (expected {sub_dir}/<student>/{assignment}/*.ipynb)")
    course.source_notebooks(assignment)  # clear error if the assignment does not exist
    if sandbox:
        check_sandbox()
        print(f"memory limit: {memory_mechanism()}", flush=True)
    else:
        print("WARNING: --no-sandbox: student code runs with your rights, unisolated "
              "(only for trusted submissions)", file=sys.stderr, flush=True)
    course.ensure_build()
    t0 = time.time()
    with _RunLock(course.build / "grading.lock"):
        run_dir = course.build / "grading-run"
        shutil.rmtree(run_dir, ignore_errors=True)     # what a crashed run left
        run_dir.mkdir(parents=True)
        try:
            return _run(course, assignment, sub_dir, everyone, found, force, output, feedback, opts, run_dir, t0)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)


def _run(course, assignment, sub_dir, everyone, found, force, output, feedback, opts, run_dir, t0):
    work_db = gradebook.working_copy(course, run_dir / "gradebook.db")
    print(f"recording {assignment} in a working copy of the gradebook ...", flush=True)
    sync_gradebook(course, assignment, db_url=gradebook.sqlite_url(work_db))
    expected = expected_evidence(course, assignment, opts)
    released = released_notebooks(course, assignment)
    state = load_state(course)

    todo, results = [], {}
    for sid in found:
        fp = fingerprint(sub_dir / sid / assignment)
        prev = state.get(sid, {})
        if (not force and prev.get("fingerprint") == fp and prev.get("status") == "graded"
                and any((course.autograded / sid / assignment).glob("*.ipynb"))):
            res = StudentResult(sid, skipped=True, fingerprint=fp, flags=list(prev.get("flags", [])))
            res.notes.append("unchanged since it was graded: kept (--force regrades)")
            print(f"      {sid}: {res.notes[-1]}", flush=True)
            results[sid] = res
            continue
        todo.append((sid, fp))

    slots = queue.Queue()
    for s in range(opts.jobs):
        slots.put(s)
    counter = iter(range(1, len(todo) + 1))

    def one(item):
        sid, fp = item
        slot = slots.get()
        try:
            print(f"[{next(counter)}/{len(todo)}] autograding {sid} (slot {slot}) ...", flush=True)
            res = grade_student(course, assignment, sid, sub_dir, run_dir, work_db, expected, released, opts, slot)
        finally:
            slots.put(slot)
        res.fingerprint = fp
        extra = f" ({'; '.join(res.notes)})" if res.notes else ""
        print(f"      {sid}: {res.status}, {res.seconds:.0f} s{extra}", flush=True)
        return res

    with ThreadPoolExecutor(opts.jobs) as pool:
        for res in pool.map(one, todo):
            results[res.student] = res

    # ---- commit: gradebook (one rename), autograded folders, flags, feedback, table ----
    for sid, _ in sorted(todo):
        res = results[sid]
        graded = run_dir / sid / "autograded" / sid / assignment
        if res.ok and any(graded.glob("*.ipynb")):
            gradebook.merge_submission(run_dir / sid / "gradebook.db", work_db, assignment, sid, course.course_id)
        elif res.ok:
            record_without_notebooks(work_db, course, assignment, sid)
    gradebook.commit(course, work_db)
    for sid, _ in sorted(todo):
        res = results[sid]
        graded = run_dir / sid / "autograded" / sid / assignment
        final = course.autograded / sid / assignment
        if res.ok and any(graded.glob("*.ipynb")):
            _swap_folder(graded, final)
        else:
            shutil.rmtree(final, ignore_errors=True)   # no stale copy that would look graded
        state[sid] = {"fingerprint": res.fingerprint, "flags": res.flags,
                      "status": "graded" if res.ok else "failed"}
    write_atomic(course.flags_file, json.dumps(state, indent=1, sort_keys=True).encode("utf-8"))
    if feedback:
        print("generating feedback ...", flush=True)
        code, out = generate_feedback(course, assignment)
        if code != 0:
            print(f"warning: nbgrader generate_feedback exit {code}:\n{tail(out)}", file=sys.stderr)
    header, rows = gradebook.grade_table(course, assignment, everyone, results, state)
    out_path = output_path(course, output)
    write_csv(out_path, header, rows)
    print_table(header, rows)
    print(f"grades: {course.short(out_path)}; feedback: {course.short(course.feedback)}/"
          f"<student>/{assignment}/*.html; total {time.time() - t0:.0f} s")
    return out_path, results
