"""Release the student notebooks and autograde submissions, with nbgrader.

Command line (run from anywhere; ``--course-dir`` defaults to the repository)::

    python -m course_lib.grading release                 # solutions/ -> notebooks/ (make release)
    python -m course_lib.grading release --check         # exit 1 if notebooks/ is stale
    python -m course_lib.grading autograde --submissions submitted   # (make grade)
    python -m course_lib.grading report                  # feedback + grades.csv again (after manual grading)

``release`` runs ``nbgrader generate_assignment`` into a temporary folder,
normalises the copies (no outputs, no execution metadata, stable cell ids) so
the same sources always give the same bytes, and then replaces the files in
``notebooks/<assignment>/`` one by one with ``os.replace`` (a reader never sees
half a file).  It also records the assignment, its cells and hidden tests in
the gradebook (``build/gradebook.db``).

``autograde`` grades every ``<submissions>/<student>/<assignment>/`` folder in
its own ``nbgrader autograde`` process, so a submission that crashes its kernel
or nbgrader itself cannot stop the others.  The kernels run with
``COURSE_GRADING=1`` (the notebooks then shrink their live PPO runs to a token
run), library warnings kept off stderr (nbgrader fails a test cell that
writes to stderr), and a per-cell time limit (``--timeout``; an endless loop
fails its own cell only).  A second run grades only new or changed
submissions (``--force``: all; ``--student ID``: one).  Then ``nbgrader generate_feedback`` writes
``feedback/<student>/<assignment>/*.html`` and the gradebook is exported to
``grades.csv``: one row per student with the score of each notebook, the total,
the maximum, how many cells still wait for a human grader, and a status.
Each student's nbgrader log is kept in ``build/grading-logs/<student>.log``.
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ASSIGNMENT = "rlhf_ppo"
DEFAULT_CELL_TIMEOUT = 120        # seconds per cell (as in nbgrader_config.py)
DEFAULT_STUDENT_TIMEOUT = 3600    # seconds for one student's whole autograde (last resort)
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Cell metadata written by front ends and runners, with timestamps or UI state: never released.
VOLATILE_CELL_METADATA = ("execution", "ExecuteTime", "papermill", "collapsed", "scrolled")
#: Notebook metadata of the same kind (widget state is an output).
VOLATILE_NB_METADATA = ("papermill", "widgets")

#: Set for the grading kernels (see :func:`grading_env`).
QUIET_ENV = {
    "PYTHONWARNINGS": "ignore",              # FutureWarning/DeprecationWarning of libraries
    "TRANSFORMERS_VERBOSITY": "error",       # transformers' logger.warning(...) lines
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",  # datasets' map/filter bars
}


class GradingError(RuntimeError):
    """A step of release/autograde failed; the message says which and why."""


# ---- paths and configuration --------------------------------------------------------
def default_course_dir() -> Path:
    """The repository root (where ``nbgrader_config.py`` lives)."""
    return REPO_ROOT


@dataclass
class Course:
    """Where a course's folders are, read from its ``nbgrader_config.py``."""

    root: Path
    source: Path
    release: Path
    submitted: Path
    autograded: Path
    feedback: Path
    db_url: str
    course_id: str

    @classmethod
    def load(cls, root: str | os.PathLike) -> "Course":
        from traitlets.config.loader import PyFileConfigLoader

        root = Path(root).resolve()
        cfg_file = root / "nbgrader_config.py"
        if not cfg_file.is_file():
            raise GradingError(f"no nbgrader_config.py in {root}: pass --course-dir <the course repository>")
        cfg = PyFileConfigLoader(cfg_file.name, path=str(root)).load_config()
        cd = cfg.get("CourseDirectory", {})

        def folder(key: str, default: str) -> Path:
            return (root / str(cd.get(key, default))).resolve()

        db_url = str(cd.get("db_url", "sqlite:///gradebook.db"))
        prefix = "sqlite:///"
        if db_url.startswith(prefix) and not db_url.startswith(prefix + "/"):
            db_url = prefix + str((root / db_url[len(prefix):]).resolve())
        return cls(root=root, source=folder("source_directory", "source"),
                   release=folder("release_directory", "release"),
                   submitted=folder("submitted_directory", "submitted"),
                   autograded=folder("autograded_directory", "autograded"),
                   feedback=folder("feedback_directory", "feedback"),
                   db_url=db_url, course_id=str(cd.get("course_id", "")))

    @property
    def db_path(self) -> Path | None:
        prefix = "sqlite:///"
        return Path(self.db_url[len(prefix):]) if self.db_url.startswith(prefix) else None

    @property
    def build(self) -> Path:
        return self.root / "build"

    def source_notebooks(self, assignment: str) -> list[Path]:
        folder = self.source / assignment
        if not folder.is_dir():
            have = sorted(p.name for p in self.source.iterdir() if p.is_dir()) if self.source.is_dir() else []
            raise GradingError(f"no assignment {assignment!r} in {self.source}; "
                               f"valid assignments: {', '.join(have) or '(none)'}")
        notebooks = sorted(p for p in folder.glob("*.ipynb"))
        if not notebooks:
            raise GradingError(f"no notebooks in {folder}")
        return notebooks

    def ensure_build(self) -> None:
        self.build.mkdir(parents=True, exist_ok=True)
        if self.db_path is not None:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)


# ---- running nbgrader ------------------------------------------------------------------
def _env(extra: dict | None = None) -> dict:
    """The environment of an nbgrader process: this interpreter's bin/ first on PATH.

    nbgrader calls the ``alembic`` script of its own environment when it creates a
    gradebook; with the venv not activated (``make``) it would not be found.
    """
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def _run_nbgrader(course: Course, args: list[str], *, log: Path | None = None, env: dict | None = None,
                  timeout: float | None = None) -> tuple[int, str]:
    """Run ``python -m nbgrader <args>`` in the course folder; returns (exit code, its output).

    The process gets its own process group; on ``timeout`` the whole group is
    terminated (then killed) and the exit code is ``-signal.SIGKILL``.
    """
    cmd = [sys.executable, "-m", "nbgrader", *args]
    proc = subprocess.Popen(cmd, cwd=course.root, env=_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, _ = proc.communicate()
        out += f"\n[course_lib.grading] stopped after {timeout:.0f} s (--student-timeout)\n"
        code = -signal.SIGKILL
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {' '.join(cmd)}\n{out}", encoding="utf-8")
    return code, out


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(text: str, n: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


# ---- release ---------------------------------------------------------------------------
def _stable_id(notebook: str, index: int, cell: dict) -> str:
    key = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or f"{notebook}:{index}"
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def normalize_student_copy(nb: dict, source: dict | None, name: str) -> dict:
    """Make a generated student notebook reproducible and output-free (in place, returned).

    * code cells: no outputs, no execution count;
    * cell and notebook metadata written by front ends (timings, papermill,
      scroll state, widget state) removed: they hold timestamps;
    * cell ids: the source cell's id where it has one, otherwise a hash of the
      cell's grade_id (or position), never nbformat's random ids.
    """
    src_cells = source.get("cells", []) if source else []
    same_shape = len(src_cells) == len(nb.get("cells", []))
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        meta = cell.setdefault("metadata", {})
        for key in VOLATILE_CELL_METADATA:
            meta.pop(key, None)
        if "id" in cell or nb.get("nbformat_minor", 0) >= 5:
            src_id = src_cells[i].get("id") if same_shape else None
            cell["id"] = src_id or _stable_id(name, i, cell)
    for key in VOLATILE_NB_METADATA:
        nb.get("metadata", {}).pop(key, None)
    return nb


def dumps_notebook(nb: dict) -> str:
    """The JSON text nbformat writes (indent 1, sorted keys, UTF-8, final newline)."""
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def generate(course: Course, assignment: str, out_dir: Path) -> dict[str, bytes]:
    """Generate the student copies of ``assignment`` into ``out_dir`` (a new or empty folder).

    Also (re)records the assignment in the gradebook.  Returns
    ``{relative path: normalised bytes}`` of every released file.
    """
    course.ensure_build()
    sources = {p.name: p for p in course.source_notebooks(assignment)}
    code, out = _run_nbgrader(course, ["generate_assignment", assignment, "--force",
                                       f"--CourseDirectory.release_directory={out_dir}",
                                       "--log-level=WARN"])
    made = out_dir / assignment
    if code != 0 or not made.is_dir():
        raise GradingError(f"nbgrader generate_assignment failed (exit {code}):\n{_tail(out, 40)}")
    files: dict[str, bytes] = {}
    for path in sorted(p for p in made.rglob("*") if p.is_file()):
        rel = path.relative_to(made).as_posix()
        data = path.read_bytes()
        if path.suffix == ".ipynb":
            nb = json.loads(data.decode("utf-8"))
            src = sources.get(path.name)
            source = json.loads(src.read_text(encoding="utf-8")) if src else None
            data = dumps_notebook(normalize_student_copy(nb, source, path.stem)).encode("utf-8")
        files[rel] = data
    return files


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _released_files(folder: Path) -> set[str]:
    """The released (non-hidden) files under ``folder``, relative paths."""
    if not folder.is_dir():
        return set()
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def release(course_dir: str | os.PathLike | None = None, assignment: str = ASSIGNMENT,
            check: bool = False, quiet: bool = False) -> list[str]:
    """Regenerate ``notebooks/<assignment>/`` from ``solutions/<assignment>/``.

    Returns the relative paths that changed (were updated, added or removed).
    With ``check=True`` the release folder is not touched: the list says what
    *would* change (the gradebook is updated either way).
    """
    course = Course.load(course_dir or default_course_dir())
    course.ensure_build()
    dest = course.release / assignment
    tmp = Path(tempfile.mkdtemp(prefix=".release-", dir=course.build))
    try:
        files = generate(course, assignment, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    changed = []
    for rel, data in files.items():
        target = dest / rel
        if target.is_file() and target.read_bytes() == data:
            continue
        changed.append(rel)
        if not check:
            _write_atomic(target, data)
    for rel in sorted(_released_files(dest) - set(files)):
        changed.append(rel)
        if not check:
            (dest / rel).unlink()
    if not quiet:
        where = dest.relative_to(course.root) if dest.is_relative_to(course.root) else dest
        for rel in sorted(files):
            state = ("differs" if check else "updated") if rel in changed else "unchanged"
            print(f"{where}/{rel}: {state}")
        for rel in sorted(set(changed) - set(files)):
            print(f"{where}/{rel}: {'not generated (stale)' if check else 'removed (not generated)'}")
    return sorted(changed)


# ---- autograde ---------------------------------------------------------------------------
@dataclass
class StudentResult:
    student: str
    status: str = "graded"        # graded | failed (why; see the log)
    seconds: float = 0.0
    log: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.status.startswith("failed")


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


def sync_gradebook(course: Course, assignment: str) -> None:
    """Record the assignment's cells and hidden tests in the gradebook (from the sources).

    nbgrader restores the test cells of a submission from the gradebook, so the
    gradebook must know the current sources.  The release folder is not touched.
    """
    course.ensure_build()
    tmp = Path(tempfile.mkdtemp(prefix=".gradebook-sync-", dir=course.build))
    try:
        generate(course, assignment, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def grading_env() -> dict:
    """Environment variables of the grading kernels.

    ``COURSE_GRADING=1`` makes the notebooks shrink their live runs.  The rest
    keeps library chatter off stderr: nbgrader (0.9) scores a test cell that
    writes *anything* to stderr as failed, and the Hugging Face libraries warn
    there about harmless things (a long review being tokenized, a deprecated
    trl class, generating without an attention mask).  A student's own
    prints to stderr still fail the cell, as nbgrader intends.
    """
    return {**QUIET_ENV, "COURSE_GRADING": "1"}


def autograde_student(course: Course, assignment: str, student: str, submissions: Path, *,
                      cell_timeout: int, student_timeout: float | None, force: bool) -> StudentResult:
    """Autograde one student in its own nbgrader process; never raises for a bad submission."""
    res = StudentResult(student, log=course.build / "grading-logs" / f"{student}.log")
    if ensure_timestamp(submissions / student / assignment):
        res.notes.append("timestamp.txt created")
    args = ["autograde", assignment, f"--student={student}", "--create",
            f"--CourseDirectory.submitted_directory={submissions}",
            f"--Execute.timeout={cell_timeout}", f"--ExecutePreprocessor.timeout={cell_timeout}"]
    if force:
        args.append("--force")
    t0 = time.time()
    code, out = _run_nbgrader(course, args, log=res.log, env=grading_env(), timeout=student_timeout)
    res.seconds = time.time() - t0
    graded = course.autograded / student / assignment
    if code != 0 or not any(graded.glob("*.ipynb")):
        if code == -signal.SIGKILL:
            why = "stopped: took longer than --student-timeout"
        elif "DeadKernelError" in out:
            why = "the kernel died"
        elif "UnresponsiveKernelError" in out or "kernel became unresponsive" in out:
            why = "the kernel stopped responding"
        else:
            why = f"nbgrader exit {code}"
        res.status = f"failed ({why}; see {_short(res.log, course.root)})"
        # as nbgrader does after its own failures: no half-graded folder that a later run would skip
        shutil.rmtree(graded, ignore_errors=True)
    elif "Skipping existing assignment" in out:
        res.notes.append("unchanged since it was graded: kept (--force regrades)")
    return res


def _short(path: Path | None, root: Path) -> str:
    if path is None:
        return ""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def generate_feedback(course: Course, assignment: str) -> tuple[int, str]:
    """HTML feedback for every autograded student: ``feedback/<student>/<assignment>/*.html``."""
    return _run_nbgrader(course, ["generate_feedback", assignment, "--force"],
                         log=course.build / "grading-logs" / "_feedback.log")


def grade_table(course: Course, assignment: str, students: list[str] | None = None,
                results: dict[str, StudentResult] | None = None) -> tuple[list[str], list[list]]:
    """Header and rows of the grade table, read from the gradebook.

    Columns: ``student_id``, one per notebook (its score: autograded points,
    overridden by manual grades where given), ``total_score``, ``max_score``
    (every point, written answers included), ``needs_manual_grade`` (cells
    waiting for a human grader) and ``status``.  A student whose grading
    failed gets empty scores, not zeros.
    """
    from nbgrader.api import Gradebook, MissingEntry

    results = results or {}
    if course.db_path is not None and not course.db_path.is_file():
        raise GradingError(f"no gradebook at {course.db_path}: run `make grade` first")
    with Gradebook(course.db_url, course.course_id) as gb:
        try:
            a = gb.find_assignment(assignment)
        except MissingEntry:
            raise GradingError(f"the gradebook knows no assignment {assignment!r}: run `make grade` first") from None
        notebooks = [nb.name for nb in sorted(a.notebooks, key=lambda n: n.name)]
        max_score = a.max_score
        if students is None:
            students = sorted(s.student.id for s in a.submissions)
        header = ["student_id", *notebooks, "total_score", "max_score", "needs_manual_grade", "status"]
        rows = []
        for sid in students:
            res = results.get(sid)
            status = res.status if res else "graded"
            try:
                sub = gb.find_submission(assignment, sid)
            except MissingEntry:
                sub = None
                status = res.status if res and not res.ok else "not graded yet"
            if res is None and not any((course.autograded / sid / assignment).glob("*.ipynb")):
                # nbgrader removes the autograded folder of a submission it failed to grade
                log = course.build / "grading-logs" / f"{sid}.log"
                status = (f"failed (not autograded; see {_short(log, course.root)})" if log.exists()
                          else "not graded yet")
                sub = None
            if sub is None or (res is not None and not res.ok):
                rows.append([sid, *[""] * len(notebooks), "", _num(max_score), "", status])
                continue
            scores = {nb.name: nb.score for nb in sub.notebooks}
            manual = sum(1 for nb in sub.notebooks for g in nb.grades if g.needs_manual_grade)
            rows.append([sid, *[_num(scores.get(n, 0.0)) for n in notebooks], _num(sub.score),
                         _num(max_score), manual, status])
    return header, rows


def _num(x) -> str:
    x = float(x or 0.0)
    return str(int(x)) if x == int(x) else f"{x:.2f}"


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    _write_atomic(path, buf.getvalue().encode("utf-8"))


def autograde(course_dir: str | os.PathLike | None = None, submissions: str | os.PathLike | None = None,
              assignment: str = ASSIGNMENT, cell_timeout: int = DEFAULT_CELL_TIMEOUT,
              student_timeout: float | None = DEFAULT_STUDENT_TIMEOUT, students: list[str] | None = None,
              force: bool = False, output: str | os.PathLike = "grades.csv",
              feedback: bool = True) -> tuple[Path, dict[str, StudentResult]]:
    """Autograde every submission, write feedback and the grade table; returns (csv path, results)."""
    course = Course.load(course_dir or default_course_dir())
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

    t0 = time.time()
    print(f"recording {assignment} in the gradebook {_short(course.db_path, course.root)} ...", flush=True)
    sync_gradebook(course, assignment)
    results: dict[str, StudentResult] = {}
    for i, sid in enumerate(found, 1):
        print(f"[{i}/{len(found)}] autograding {sid} ...", flush=True)
        res = autograde_student(course, assignment, sid, sub_dir, cell_timeout=cell_timeout,
                                student_timeout=student_timeout, force=force)
        results[sid] = res
        extra = f" ({'; '.join(res.notes)})" if res.notes else ""
        print(f"      {res.status}, {res.seconds:.0f} s{extra}", flush=True)
    if feedback:
        print("generating feedback ...", flush=True)
        code, out = generate_feedback(course, assignment)
        if code != 0:
            print(f"warning: nbgrader generate_feedback exit {code}:\n{_tail(out)}", file=sys.stderr)
    header, rows = grade_table(course, assignment, everyone, results)  # every submission, graded now or before
    out_path = Path(output)
    out_path = out_path if out_path.is_absolute() else course.root / out_path
    write_csv(out_path, header, rows)
    _print_table(header, rows)
    print(f"grades: {_short(out_path, course.root)}; feedback: {_short(course.feedback, course.root)}/"
          f"<student>/{assignment}/*.html; total {time.time() - t0:.0f} s")
    return out_path, results


def report(course_dir: str | os.PathLike | None = None, assignment: str = ASSIGNMENT,
           output: str | os.PathLike = "grades.csv", feedback: bool = True) -> Path:
    """Feedback and grade table again from the gradebook (e.g. after manual grading); no execution."""
    course = Course.load(course_dir or default_course_dir())
    if feedback:
        code, out = generate_feedback(course, assignment)
        if code != 0:
            print(f"warning: nbgrader generate_feedback exit {code}:\n{_tail(out)}", file=sys.stderr)
    header, rows = grade_table(course, assignment)
    out_path = Path(output)
    out_path = out_path if out_path.is_absolute() else course.root / out_path
    write_csv(out_path, header, rows)
    _print_table(header, rows)
    return out_path


def _print_table(header: list[str], rows: list[list]) -> None:
    table = [header, *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])


# ---- command line --------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)  # accepted before or after the command
    common.add_argument("--course-dir", type=Path, default=argparse.SUPPRESS,
                        help="the course folder with nbgrader_config.py (default: this repository)")
    common.add_argument("--assignment", default=argparse.SUPPRESS, help=f"assignment name (default: {ASSIGNMENT})")
    p = argparse.ArgumentParser(prog="python -m course_lib.grading", parents=[common],
                                description="Release the student notebooks and autograde submissions (nbgrader).")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("release", parents=[common],
                       help="regenerate notebooks/<assignment>/ from solutions/<assignment>/")
    r.add_argument("--check", action="store_true",
                   help="leave notebooks/ alone; exit 1 if it differs from what release generates")

    a = sub.add_parser("autograde", parents=[common], help="autograde every <submissions>/<student>/<assignment>/")
    a.add_argument("--submissions", default=None,
                   help="folder of <student>/<assignment>/ submissions (default: the config's, submitted/)")
    a.add_argument("--timeout", type=int, default=DEFAULT_CELL_TIMEOUT,
                   help=f"seconds one cell may run before it is interrupted and fails (default {DEFAULT_CELL_TIMEOUT})")
    a.add_argument("--student-timeout", type=float, default=DEFAULT_STUDENT_TIMEOUT,
                   help=f"seconds one student's whole grading may take (default {DEFAULT_STUDENT_TIMEOUT}); 0 = no limit")
    a.add_argument("--student", action="append", default=None, metavar="ID",
                   help="grade only this student (repeatable)")
    a.add_argument("--force", action="store_true",
                   help="regrade every submission (default: skip those autograded before and unchanged since)")
    a.add_argument("--no-feedback", action="store_true", help="do not generate feedback HTML")
    a.add_argument("--output", default="grades.csv", help="the grade table (default: grades.csv in the course folder)")

    f = sub.add_parser("report", parents=[common], help="feedback HTML and grades.csv again from the gradebook (after manual grading)")
    f.add_argument("--output", default="grades.csv")
    f.add_argument("--no-feedback", action="store_true")

    args = p.parse_args(argv)
    args.course_dir = getattr(args, "course_dir", None) or default_course_dir()
    args.assignment = getattr(args, "assignment", None) or ASSIGNMENT
    try:
        if args.command == "release":
            changed = release(args.course_dir, args.assignment, check=args.check)
            if args.check and changed:
                print(f"{len(changed)} file(s) differ from the generated student copies: run `make release`",
                      file=sys.stderr)
                return 1
            return 0
        if args.command == "autograde":
            if args.timeout <= 0:
                p.error("--timeout must be a positive number of seconds")
            _, results = autograde(args.course_dir, args.submissions, args.assignment,
                                   cell_timeout=args.timeout, student_timeout=args.student_timeout or None,
                                   students=args.student, force=args.force, output=args.output,
                                   feedback=not args.no_feedback)
            failed = [r.student for r in results.values() if not r.ok]
            if failed:
                print(f"grading failed for: {', '.join(failed)} (their rows say why)", file=sys.stderr)
                return 1
            return 0
        report(args.course_dir, args.assignment, output=args.output, feedback=not args.no_feedback)
        return 0
    except GradingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
