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
   evidence (:mod:`.verify`).  Each student is staged in
   ``build/grading-run/students/<student>/``, apart from the run's own files,
   and any failure on one student fails that student's row only.
4. **Commit.** Each graded student's rows are merged into the working copy,
   which then replaces the gradebook in one rename; the autograded folders are
   moved into place, the flags recorded, feedback generated and ``grades.csv``
   written atomically.  A crash before this step leaves everything as it was.

Collected folders are hostile input (:func:`find_submissions`): a folder name
that is not a safe student id (:data:`STUDENT_ID`), or a student or assignment
folder that is a symbolic link, is refused with a row of its own; links inside
a submission are never followed (:func:`.scan.stage_submission`); submission
times are the grader's (:func:`submission_time`), never ``timestamp.txt``.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import stat
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import gradebook, scan, similarity, verify
from .course import (ASSIGNMENT, Course, GradingError, default_course_dir, escape, run_nbgrader, tail,
                     write_atomic)
from .release import sync_gradebook
from .report import generate_feedback, load_state, output_path, print_table, write_csv, write_exercises
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
#: What a student id (the name of a folder in ``submitted/``) may be: it becomes a path, an nbgrader
#: student id, a CSV cell and a line on the terminal.
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
STUDENT_ID_RULE = "1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit"


def refusal(name: str) -> str:
    """Why ``name`` cannot be a student id ("" if it can)."""
    if STUDENT_ID.fullmatch(name):
        return ""
    return f"refused (the folder name is not a valid student id: {STUDENT_ID_RULE}; rename the folder)"


def find_submissions(submissions: Path, assignment: str, refused: dict | None = None) -> list[str]:
    """Student ids with a ``<submissions>/<student>/<assignment>/`` folder holding notebooks.

    Folders that cannot be graded safely are left out and, when ``refused``
    is given, recorded there as ``{escaped id: (status, flags)}``: a name that
    breaks :data:`STUDENT_ID`, a student or assignment folder that is a
    symbolic link (never followed; flagged ``symlink:..`` and ``symlink:.``,
    relative to the assignment folder as in :func:`.scan.stage_submission`),
    a folder that cannot be read.  Names starting with ``.`` and plain files
    are skipped with a warning.
    """
    if not submissions.is_dir():
        raise GradingError(f"no submissions folder {submissions}: put each student's files in "
                           f"{submissions}/<student>/{assignment}/")
    refused = {} if refused is None else refused
    students = []
    for d in sorted(submissions.iterdir()):
        name = d.name
        if name.startswith("."):
            continue
        try:
            found = _check_folder(d, assignment, refused)
        except OSError as e:     # unreadable: this folder only
            refused[escape(name)] = (f"refused (cannot be read: {type(e).__name__})", [])
            found = False
        if found:
            students.append(name)
        elif escape(name) in refused:
            key = escape(name)
            print(f"warning: {key}: {refused[key][0]}", file=sys.stderr)
    return students


def _check_folder(d: Path, assignment: str, refused: dict) -> bool:
    """True if ``d`` is a student folder to grade; else refused (recorded) or skipped (a warning)."""
    name = d.name
    if refusal(name):
        refused[escape(name)] = (refusal(name), [])
    elif d.is_symlink():
        refused[name] = ("refused (the student folder is a symbolic link; not followed)", ["symlink:.."])
    elif not d.is_dir():
        print(f"warning: {escape(name)}: not a folder; skipped", file=sys.stderr)
    elif (d / assignment).is_symlink():
        refused[name] = (f"refused (its {assignment} folder is a symbolic link; not followed)", ["symlink:."])
    elif (d / assignment).is_dir() and any(p.suffix == ".ipynb" for p in (d / assignment).iterdir()):
        return True
    else:
        print(f"warning: {name}: no notebooks in {escape(d / assignment)}; skipped", file=sys.stderr)
    return False


def submission_time(folder: Path) -> _dt.datetime:
    """When the submission arrived in ``folder`` (UTC): the newest status-change time of its files.

    A file's ``st_ctime`` is set by the system whenever the file is created,
    written, renamed or has its permissions changed, and cannot be set by
    anyone (unlike the modification time, which a zip archive or ``touch``
    carries): it is when the files were copied into the instructor's folder.
    Links are not followed; with no files, the folder's own time.
    """
    newest = 0.0
    try:
        for rel, st, _, _ in scan.walk_submission(folder):
            if rel is None:
                break
            if not stat.S_ISDIR(st.st_mode):
                newest = max(newest, st.st_ctime)
    except OSError:
        pass
    if not newest:
        newest = os.lstat(folder).st_ctime
    return _dt.datetime.fromtimestamp(newest, _dt.timezone.utc)


def exchange_times(course: Course) -> dict[str, str]:
    """``{student: submission time}`` recorded by the exchange's collection (``build/exchange-times.json``).

    :func:`course_instructor.hub.exchange.collect` writes it, as the instructor,
    from the times the kernel recorded in the exchange (a student cannot set
    them); a missing or unreadable record gives ``{}``, and only well-formed
    times are taken.
    """
    try:
        record = json.loads((course.build / "exchange-times.json").read_text(encoding="utf-8"))
        collected = record.get("collected", {})
    except (OSError, ValueError, AttributeError):
        return {}
    times = {}
    for sid, entry in collected.items() if isinstance(collected, dict) else ():
        when = entry.get("exchange") if isinstance(entry, dict) else None
        try:
            _dt.datetime.strptime(str(when), "%Y-%m-%d %H:%M:%S.%f UTC")
        except ValueError:
            continue
        times[str(sid)] = str(when)
    return times


def ensure_timestamp(folder: Path, source: Path | None = None, recorded: str | None = None) -> _dt.datetime:
    """Write nbgrader's ``timestamp.txt`` in the staged copy ``folder``: the time of ``source`` (by default ``folder``).

    The time is :func:`submission_time`, never what a student wrote; an
    existing ``timestamp.txt`` (in ``folder`` only a grader-written one can
    exist: staging leaves the student's out) is replaced.  Returns the time written.
    """
    if recorded:      # the exchange's record of this student's submission (exchange_times)
        when = _dt.datetime.strptime(recorded, "%Y-%m-%d %H:%M:%S.%f UTC").replace(tzinfo=_dt.timezone.utc)
    else:
        when = submission_time(source or folder)
    stamp = folder / "timestamp.txt"
    stamp.unlink(missing_ok=True)
    stamp.write_text(when.strftime("%Y-%m-%d %H:%M:%S.%f UTC") + "\n", encoding="utf-8")
    return when


def fingerprint(folder: Path) -> str:
    """A hash of every file of a submission (names and bytes, link targets): unchanged submissions are not regraded."""
    h = hashlib.sha256()
    for rel, st, dirfd, name in scan.walk_submission(folder):
        if rel is None:
            h.update(b"\0truncated")
            break
        h.update(os.fsencode(rel) + b"\0" + oct(stat.S_IFMT(st.st_mode)).encode() + b"\0")
        if stat.S_ISLNK(st.st_mode):
            h.update(os.fsencode(os.readlink(name, dir_fd=dirfd)))
        elif stat.S_ISREG(st.st_mode):
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dirfd)
            with os.fdopen(fd, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def released_notebooks(course: Course, assignment: str) -> dict[str, dict]:
    folder = course.release / assignment
    found = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.ipynb"))}
    if not found:
        raise GradingError(f"no released notebooks in {folder}: run `make release` first")
    return found


def check_library(course: Course, assignment: str, library_root: Path | None = None) -> None:
    """Refuse to grade when the library the sandbox mounts (``course_lib``) answers an exercise.

    The sandboxes see ``course_lib`` and nothing else of the course: it must be
    the student edition, the same checks as ``make student-bundle``.
    """
    from course_instructor.bundle import ROOT, check_student_library

    errors = check_student_library(course.source, root=library_root or ROOT)
    if errors:
        raise GradingError("course_lib, which every grading sandbox mounts, holds what students must not have "
                           f"(the checks of `make student-bundle`):\n  " + "\n  ".join(errors[:20]))


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
def stage_dir(run_dir: Path, student: str) -> Path:
    """Where one student is staged and autograded: a folder of its own, apart from the run's own files."""
    return run_dir / "students" / student


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
    """Stage, scan and autograde one student into :func:`stage_dir`; never raises for a bad submission."""
    res = StudentResult(student, log=course.logs / f"{student}.log")
    stage = stage_dir(run_dir, student)
    staged = stage / "submitted" / student / assignment
    res.flags = scan.stage_submission(submissions / student / assignment, staged, released)
    # the grader's time (the exchange's record, else the collection time), never the student's
    ensure_timestamp(staged, submissions / student / assignment, exchange_times(course).get(student))
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
    import warnings

    from nbgrader.api import Gradebook, MissingEntry
    from sqlalchemy.exc import SAWarning

    with Gradebook(gradebook.sqlite_url(work_db), course.course_id) as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)     # nbgrader's add_submission autoflushes (harmless)
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
    refused: dict[str, tuple[str, list[str]]] = {}
    everyone = find_submissions(sub_dir, assignment, refused)
    found = everyone
    if students:
        missing = sorted(set(students) - set(everyone))
        if missing:
            raise GradingError(f"no submission for {', '.join(map(escape, missing))} in {sub_dir}; "
                               f"students with submissions: {', '.join(everyone) or '(none)'}"
                               + (f"; refused: {', '.join(refused)}" if refused else ""))
        found = [s for s in everyone if s in students]
    if not found:
        raise GradingError(f"no submissions in {sub_dir} (expected {sub_dir}/<student>/{assignment}/*.ipynb)"
                           + (f"; refused: {', '.join(refused)}" if refused else ""))
    course.source_notebooks(assignment)  # clear error if the assignment does not exist
    check_library(course, assignment)
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
            return _run(course, assignment, sub_dir, everyone, found, force, output, feedback, opts, run_dir, t0,
                        refused)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)


def _grader_error(course: Course, sid: str, step: str, exc: BaseException) -> str:
    """A failure of the grader itself on one student: logged, and the status of that student only."""
    import traceback

    log = course.logs / f"{sid}.log"
    try:
        with log.open("a", encoding="utf-8") as fh:
            fh.write(f"\n[course_instructor.grading] {step} failed:\n{traceback.format_exc()}")
    except OSError:
        pass
    print(f"warning: {sid}: {step} failed: {type(exc).__name__}: {escape(str(exc))[:300]}", file=sys.stderr)
    return f"failed ({step}: {type(exc).__name__}; see {course.short(log)})"


def _run(course, assignment, sub_dir, everyone, found, force, output, feedback, opts, run_dir, t0, refused=None):
    work_db = gradebook.working_copy(course, run_dir / "gradebook.db")
    print(f"recording {assignment} in a working copy of the gradebook ...", flush=True)
    sync_gradebook(course, assignment, db_url=gradebook.sqlite_url(work_db))
    expected = expected_evidence(course, assignment, opts)
    released = released_notebooks(course, assignment)
    state = load_state(course)

    todo, results = [], {}
    for sid in found:
        try:
            fp = fingerprint(sub_dir / sid / assignment)
        except Exception as e:     # e.g. a folder swapped for a link since it was found: this student only
            results[sid] = StudentResult(sid, status=_grader_error(course, sid, "reading the submission", e))
            continue
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
            try:
                res = grade_student(course, assignment, sid, sub_dir, run_dir, work_db, expected, released, opts,
                                    slot)
            except Exception as e:   # the grader's own failure on this student: the others go on
                res = StudentResult(sid, log=course.logs / f"{sid}.log",
                                    status=_grader_error(course, sid, "grading", e))
        finally:
            slots.put(slot)
        res.fingerprint = fp
        extra = f" ({'; '.join(res.notes)})" if res.notes else ""
        print(f"      {sid}: {res.status}, {res.seconds:.0f} s{extra}", flush=True)
        return res

    with ThreadPoolExecutor(opts.jobs) as pool:
        for res in pool.map(one, todo):
            results[res.student] = res

    items = [(sid, stage_dir(run_dir, sid) / "gradebook.db", stage_dir(run_dir, sid) / "autograded" / sid / assignment)
             for sid, _ in sorted(todo)]
    out_path = commit(course, assignment, work_db, items, results, state, sub_dir=sub_dir, found=found,
                      everyone=everyone, released=released, refused=refused, output=output, feedback=feedback)
    print(f"grades: {course.short(out_path)}; feedback: {course.short(course.feedback)}/"
          f"<student>/{assignment}/*.html; total {time.time() - t0:.0f} s")
    return out_path, results


def commit(course: Course, assignment: str, work_db: Path, items: list[tuple[str, Path, Path]],
           results: dict[str, StudentResult], state: dict, *, sub_dir: Path, found: list[str], everyone: list[str],
           released: dict[str, dict], refused: dict | None, output, feedback: bool) -> Path:
    """The end of a grading run (one machine's, or the merge of several shards'); returns the table's path.

    ``items``: ``(student, the gradebook holding their rows, their autograded
    folder)`` for each student graded now.  Their rows go into ``work_db``,
    which then replaces the gradebook in one rename; the autograded folders are
    moved into place, the flags (similarity included) recorded, feedback
    generated, and ``grades.csv`` and ``exercises.csv`` written atomically.
    A failure on one student becomes that student's row only.
    """
    for sid, student_db, graded in items:
        res = results[sid]
        try:
            if res.ok and any(graded.glob("*.ipynb")):
                gradebook.merge_submission(student_db, work_db, assignment, sid, course.course_id)
            elif res.ok:
                record_without_notebooks(work_db, course, assignment, sid)
        except Exception as e:
            res.status = _grader_error(course, sid, "recording the grades", e)
    gradebook.commit(course, work_db)
    for sid, _, graded in items:
        res = results[sid]
        final = course.autograded / sid / assignment
        try:
            if res.ok and any(graded.glob("*.ipynb")):
                _swap_folder(graded, final)
            else:
                shutil.rmtree(final, ignore_errors=True)   # no stale copy that would look graded
        except Exception as e:
            res.status = _grader_error(course, sid, "storing the autograded notebooks", e)
        state[sid] = {"fingerprint": res.fingerprint, "flags": res.flags,
                      "status": "graded" if res.ok else "failed"}
    # refused folders: recorded for the table (and `report`), replaced on every run
    state = {sid: e for sid, e in state.items()
             if not (isinstance(e, dict) and str(e.get("status", "")).startswith("refused"))}
    # students whose code is too alike: over this run and every student graded before
    similarity.refresh(state, set(found) | set(state), released, assignment, sub_dir, course.autograded, results)
    for key, (why, flags) in (refused or {}).items():
        state[key] = {"fingerprint": "", "flags": list(flags), "status": why}
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
    write_exercises(course, assignment, header, rows, out_path)
    return out_path
