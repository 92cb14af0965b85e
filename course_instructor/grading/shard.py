"""Grading a class on several machines: ``autograde --shard I/N`` and ``merge``.

``python -m course_instructor.grading autograde --shard I/N`` grades the
students whose id hashes to shard ``I`` of ``N`` (``I`` from 1 to ``N``;
:func:`shard_of`: the SHA-256 of the id, modulo ``N``, so every machine makes
the same split without talking to the others).  It writes nothing of the
course's own results: its partial result is a folder of its own,
``build/shards/<I>-of-<N>/`` (``--shard-dir`` to move it), which is a small
course folder of its own:

* ``nbgrader_config.py``: the course's configuration, with the sources, the
  release folder and the gradebook pointing into the course or into the shard;
* ``gradebook.db``: a copy of the course's gradebook with this shard's
  students' autograded rows;
* ``autograded/<student>/<assignment>/``: their executed notebooks;
* ``build/grading-flags.json``, ``build/grading-logs/``: flags and logs;
* ``shard.json``: which shard, the class it was cut from (every student id
  found) and each graded student's status.

Each shard runs the same sandboxed :func:`.autograde.autograde` as a one-machine
run, on its own students.  ``python -m course_instructor.grading merge``
then reads the ``N`` partial results (all of them, or it stops), and does what
the commit step of a one-machine run does: the students' rows are merged into
a working copy of the course's gradebook (which then replaces it in one
rename), the autograded folders, logs and flags are moved into place, the
feedback is generated and ``grades.csv`` written, from the gradebook, by the
same code (:func:`.autograde.commit`): the result is byte for byte that of one
machine.  The merge reads the submissions folder again (the similarity of
students' code is judged over the whole class, and refused folders get their
rows): it must be reachable where the merge runs (``--submissions``; by
default the folder the shards graded).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from . import gradebook
from .autograde import StudentResult, _RunLock, autograde, commit, find_submissions, released_notebooks
from .course import ASSIGNMENT, Course, GradingError, default_course_dir, write_atomic
from .release import sync_gradebook
from .report import load_state
from .sandbox import DEFAULT_UID_BASE

MANIFEST = "shard.json"
#: sandbox user ids per shard when several shards share a machine (slots 0..63 of each shard)
UIDS_PER_SHARD = 64


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with 1 <= I <= N; a clear error otherwise."""
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise GradingError(f"--shard {text!r}: expected I/N, e.g. 1/8 (shard I of N, I from 1 to N)") from None
    if n < 1 or not 1 <= i <= n:
        raise GradingError(f"--shard {text!r}: I must be between 1 and N (N >= 1)")
    return i, n


def shard_of(student: str, n: int) -> int:
    """The shard (1..n) of ``student``: the SHA-256 of its id modulo n, plus 1 (the same on every machine)."""
    return int.from_bytes(hashlib.sha256(student.encode("utf-8")).digest()[:8], "big") % n + 1


def default_shard_dir(course: Course, i: int, n: int) -> Path:
    return course.build / "shards" / f"{i}-of-{n}"


def _shard_config(course: Course, shard_dir: Path) -> str:
    """The course's nbgrader_config.py, then its folders redirected: sources and release in the course,
    results in the shard."""
    original = (course.root / "nbgrader_config.py").read_text(encoding="utf-8")
    redirect = {
        "root": shard_dir, "source_directory": course.source, "release_directory": course.release,
        "submitted_directory": course.submitted, "autograded_directory": shard_dir / "autograded",
        "feedback_directory": shard_dir / "feedback",
    }
    lines = [original.rstrip("\n"), "", "# ---- a grading shard's partial result (course_instructor/grading/shard.py) ----"]
    lines += [f"c.CourseDirectory.{k} = {str(v)!r}" for k, v in redirect.items()]
    lines.append(f"c.CourseDirectory.db_url = {gradebook.sqlite_url(shard_dir / 'gradebook.db')!r}")
    lines.append(f"c.CourseDirectory.course_id = {course.course_id!r}")
    return "\n".join(lines) + "\n"


def autograde_shard(course_dir: str | os.PathLike | None, submissions: str | os.PathLike | None,
                    assignment: str = ASSIGNMENT, shard: tuple[int, int] = (1, 1),
                    shard_dir: str | os.PathLike | None = None, uid_base: int = DEFAULT_UID_BASE,
                    **options) -> tuple[Path, dict[str, StudentResult]]:
    """Grade shard ``shard = (I, N)`` of the class into its own folder; returns (that folder, results).

    ``options`` are :func:`.autograde.autograde`'s (timeouts, jobs, sandbox...).
    With the default ``uid_base``, shard I's sandboxes run as user ids
    ``DEFAULT_UID_BASE + (I-1)*64 + slot``, so shards sharing a machine never
    share a user id (and its process limit).
    """
    i, n = shard
    course = Course.load(course_dir or default_course_dir())
    sub_dir = Path(submissions).expanduser() if submissions else course.submitted
    sub_dir = (sub_dir if sub_dir.is_absolute() else course.root / sub_dir).resolve()
    everyone = find_submissions(sub_dir, assignment)
    mine = [s for s in everyone if shard_of(s, n) == i]

    out = Path(shard_dir) if shard_dir else default_shard_dir(course, i, n)
    out = (out if out.is_absolute() else course.root / out).resolve()
    if out == course.root or course.root.is_relative_to(out):
        raise GradingError(f"--shard-dir {out} would hold the course folder: choose an empty folder")
    shutil.rmtree(out, ignore_errors=True)
    (out / "build").mkdir(parents=True)
    (out / "nbgrader_config.py").write_text(_shard_config(course, out), encoding="utf-8")
    if course.db_path is not None and course.db_path.is_file():
        shutil.copyfile(course.db_path, out / "gradebook.db")
    cache = course.build / "grading-cache"          # the solutions' evidence, when this machine has it
    if cache.is_dir():
        shutil.copytree(cache, out / "build" / "grading-cache")
    manifest = {"shard": i, "of": n, "assignment": assignment, "course_id": course.course_id,
                "everyone": everyone, "submissions": str(sub_dir), "students": {}}
    results: dict[str, StudentResult] = {}
    print(f"shard {i}/{n}: {len(mine)} of {len(everyone)} students", flush=True)
    if mine:
        if uid_base == DEFAULT_UID_BASE:
            uid_base = DEFAULT_UID_BASE + (i - 1) * UIDS_PER_SHARD
        _, results = autograde(out, sub_dir, assignment, students=mine, force=True, feedback=False,
                               output=out / "grades.csv", uid_base=uid_base, **options)
    for sid, res in sorted(results.items()):
        manifest["students"][sid] = {"status": res.status, "flags": res.flags, "fingerprint": res.fingerprint,
                                     "seconds": round(res.seconds, 3), "notes": res.notes}
    write_atomic(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"))
    return out, results


def find_shard_dirs(course: Course) -> list[Path]:
    return sorted(p.parent for p in (course.build / "shards").glob(f"*/{MANIFEST}"))


def merge(course_dir: str | os.PathLike | None = None, shard_dirs: list[str | os.PathLike] | None = None,
          assignment: str = ASSIGNMENT, output: str | os.PathLike = "grades.csv",
          feedback: bool = True, submissions: str | os.PathLike | None = None) -> Path:
    """Combine the partial results of every shard into the course's gradebook, feedback and grade table."""
    course = Course.load(course_dir or default_course_dir())
    dirs = [Path(d).resolve() for d in shard_dirs] if shard_dirs else find_shard_dirs(course)
    if not dirs:
        raise GradingError(f"no partial results in {course.build / 'shards'}: run autograde --shard I/N first")
    manifests = []
    for d in dirs:
        try:
            m = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise GradingError(f"{d}: not a finished shard ({MANIFEST}: {e})") from None
        if m.get("assignment") != assignment or m.get("course_id") != course.course_id:
            raise GradingError(f"{d}: a shard of {m.get('course_id')}/{m.get('assignment')}, "
                               f"not of {course.course_id}/{assignment}")
        manifests.append((d, m))
    n = manifests[0][1]["of"]
    everyone = manifests[0][1]["everyone"]
    have = sorted(m["shard"] for _, m in manifests)
    if any(m["of"] != n or m["everyone"] != everyone for _, m in manifests) or have != list(range(1, n + 1)):
        raise GradingError(f"need each of the {n} shards of one class exactly once; have shards {have} "
                           f"of {sorted({m['of'] for _, m in manifests})} (rerun the missing or stale ones)")
    sub_dir = Path(submissions or manifests[0][1].get("submissions") or course.submitted).expanduser()
    sub_dir = (sub_dir if sub_dir.is_absolute() else course.root / sub_dir).resolve()
    refused: dict = {}
    if find_submissions(sub_dir, assignment, refused) != everyone:
        raise GradingError(f"the submissions in {sub_dir} are not the class the shards graded: "
                           f"pass the same folder with --submissions")
    course.ensure_build()
    results: dict[str, StudentResult] = {}
    with _RunLock(course.build / "grading.lock"):
        run_dir = course.build / "grading-run"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        try:
            work_db = gradebook.working_copy(course, run_dir / "gradebook.db")
            sync_gradebook(course, assignment, db_url=gradebook.sqlite_url(work_db))
            state = load_state(course)
            items = []
            for d, m in manifests:
                for sid, rec in sorted(m["students"].items()):
                    results[sid] = StudentResult(sid, status=rec["status"], flags=list(rec["flags"]),
                                                 fingerprint=rec["fingerprint"], seconds=rec.get("seconds", 0.0))
                    items.append((sid, d / "gradebook.db", d / "autograded" / sid / assignment))
                    log = d / "build" / "grading-logs" / f"{sid}.log"
                    if log.is_file():
                        course.logs.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(log, course.logs / f"{sid}.log")
            items.sort()
            out_path = commit(course, assignment, work_db, items, results, state, sub_dir=sub_dir,
                              found=everyone, everyone=everyone, released=released_notebooks(course, assignment),
                              refused=refused, output=output, feedback=feedback)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
    print(f"merged {n} shard(s), {len(results)} student(s): {course.short(out_path)}")
    failed = [s for s, r in results.items() if not r.ok]
    if failed:
        print(f"grading failed for: {', '.join(sorted(failed))} (their rows say why)", file=sys.stderr)
    return out_path
