"""How long autograding takes: per perfect student, serial and parallel, with and without the sandbox.

    .venv/bin/python benchmarks/bench_grading.py [--jobs 2] [--repeats 1]

In a temporary copy of the course, a perfect submission (every exercise
solved, all notebooks) is graded

* serially without the sandbox (``--no-sandbox``) and with it, in the order
  A B B A per repeat so that a drift of the machine's load cancels out in the
  ratio;
* ``--jobs`` students at once, with the sandbox.

The solutions' expected results are computed (and cached) first, for both
modes, and not counted.  Reported: seconds per student (the student's own
``nbgrader autograde`` process, from the grader's results), the sandbox's
overhead as a ratio, the parallel speed-up, and the projected time for a class
of 100.  Figures only: nothing here passes or fails.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from grading_fixtures import ASSIGNMENT, NOTEBOOK_NAMES, new_course, student_notebook, write_nb  # noqa: E402

from course_instructor import grading  # noqa: E402
from course_instructor.grading.autograde import Options, expected_evidence  # noqa: E402


def grade(course: Path, students: list[str], *, jobs: int, sandbox: bool) -> tuple[float, dict]:
    t0 = time.time()
    _, results = grading.autograde(course, "submitted", students=students, force=True, jobs=jobs, sandbox=sandbox,
                                   feedback=False, output="bench.csv")
    bad = [r.student for r in results.values() if not r.ok]
    if bad:
        raise SystemExit(f"grading failed for {bad}: see {course}/build/grading-logs")
    return time.time() - t0, results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel students (default: cores)")
    p.add_argument("--repeats", type=int, default=1, help="A B B A rounds (default 1)")
    p.add_argument("--class-size", type=int, default=100)
    p.add_argument("--notebooks", type=int, default=0,
                   help="submit only the first N notebooks (default 0: all; a quick estimate with 1)")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-grading-"))
    try:
        course = new_course(tmp / "course")
        n = max(2, args.jobs)
        students = [f"perfect{i}" for i in range(n)]
        names = NOTEBOOK_NAMES[: args.notebooks] if args.notebooks else NOTEBOOK_NAMES
        for sid in students:
            for name in names:
                write_nb(course / "submitted" / sid / ASSIGNMENT / name, student_notebook(name))
        c = grading.Course.load(course)
        grading.sync_gradebook(c, ASSIGNMENT)
        t0 = time.time()
        for sandbox in (True, False):
            expected_evidence(c, ASSIGNMENT, Options(jobs=args.jobs, sandbox=sandbox))
        print(f"expected results of the solutions (both modes): {time.time() - t0:.0f} s", flush=True)

        per = {True: [], False: []}
        for _ in range(args.repeats):
            for sandbox in (False, True, True, False):
                _, res = grade(course, students[:1], jobs=1, sandbox=sandbox)
                per[sandbox].append(res[students[0]].seconds)
                print(f"  serial, {'sandbox   ' if sandbox else 'no sandbox'}: {per[sandbox][-1]:.1f} s", flush=True)
        wall, res = grade(course, students, jobs=args.jobs, sandbox=True)
        student_seconds = [r.seconds for r in res.values()]
        serial_s = statistics.mean(per[True])
        serial_n = statistics.mean(per[False])
        ratio = statistics.mean(s / u for s, u in zip(per[True], per[False]))
        throughput = len(students) / max(student_seconds)          # students per second, grading phase
        summary = {
            "cores": os.cpu_count(), "jobs": args.jobs, "notebooks": names, "students_in_parallel_run": len(students),
            "seconds_per_student_serial_sandbox": round(serial_s, 1),
            "seconds_per_student_serial_no_sandbox": round(serial_n, 1),
            "sandbox_overhead_ratio": round(ratio, 3),
            "parallel_wall_seconds": round(wall, 1),
            "parallel_seconds_per_student": round(1 / throughput, 1),
            "parallel_speedup": round(serial_s * throughput, 2),
            "projected_minutes_class": round(args.class_size / throughput / 60, 1),
            "class_size": args.class_size,
        }
        print(json.dumps(summary, indent=1))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
