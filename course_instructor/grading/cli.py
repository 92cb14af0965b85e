"""Command line: ``python -m course_instructor.grading {release,autograde,merge,report}`` (see the package docstring)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .autograde import DEFAULT_CELL_TIMEOUT, DEFAULT_STUDENT_TIMEOUT, autograde
from .course import ASSIGNMENT, GradingError, default_course_dir
from .release import release
from .report import report
from .sandbox import DEFAULT_UID_BASE


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)  # accepted before or after the command
    common.add_argument("--course-dir", type=Path, default=argparse.SUPPRESS,
                        help="the course folder with nbgrader_config.py (default: this repository)")
    common.add_argument("--assignment", default=argparse.SUPPRESS, help=f"assignment name (default: {ASSIGNMENT})")
    p = argparse.ArgumentParser(prog="python -m course_instructor.grading", parents=[common],
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
    a.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="grade N students at once (default: the number of cores, here %(default)s)")
    a.add_argument("--no-sandbox", action="store_true",
                   help="run student code WITHOUT isolation, with your rights: only for trusted submissions")
    a.add_argument("--sandbox-uid-base", type=int, default=DEFAULT_UID_BASE, metavar="UID",
                   help="as root, the sandboxes run as user ids UID, UID+1, ... (default %(default)s): "
                        "they must belong to no account")
    a.add_argument("--no-feedback", action="store_true", help="do not generate feedback HTML")
    a.add_argument("--output", default="grades.csv", help="the grade table (default: grades.csv in the course folder)")
    # ---- several machines (course_instructor/grading/shard.py) ----
    a.add_argument("--shard", default=None, metavar="I/N",
                   help="grade only shard I of N of the class (by a hash of the student id) into a partial "
                        "result of its own (build/shards/I-of-N/); then `merge`")
    a.add_argument("--shard-dir", default=None, metavar="DIR", help="where --shard writes its partial result")

    m = sub.add_parser("merge", parents=[common],
                       help="combine the partial results of `autograde --shard I/N` into the gradebook and grades.csv")
    m.add_argument("shard_dirs", nargs="*", metavar="SHARD_DIR",
                   help="the shards' folders (default: every build/shards/*/)")
    m.add_argument("--output", default="grades.csv")
    m.add_argument("--no-feedback", action="store_true")
    m.add_argument("--submissions", default=None,
                   help="the class's submissions folder, to judge similarity and refused folders "
                        "(default: the folder the shards graded)")

    f = sub.add_parser("report", parents=[common], help="feedback HTML and grades.csv again from the gradebook (after manual grading)")
    f.add_argument("--output", default="grades.csv")
    f.add_argument("--no-feedback", action="store_true")
    f.add_argument("--submissions", default=None,
                   help="folder of <student>/<assignment>/ submissions compared for similar-to flags "
                        "(default: the config's, submitted/)")

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
            if args.jobs < 1:
                p.error("--jobs must be 1 or more")
            if args.shard:
                from .shard import autograde_shard, parse_shard

                if args.student or args.force:
                    p.error("--shard grades its whole share of the class: no --student, no --force")
                _, results = autograde_shard(args.course_dir, args.submissions, args.assignment,
                                             shard=parse_shard(args.shard), shard_dir=args.shard_dir,
                                             uid_base=args.sandbox_uid_base, cell_timeout=args.timeout,
                                             student_timeout=args.student_timeout or None, jobs=args.jobs,
                                             sandbox=not args.no_sandbox)
            else:
                _, results = autograde(args.course_dir, args.submissions, args.assignment,
                                       cell_timeout=args.timeout, student_timeout=args.student_timeout or None,
                                       students=args.student, force=args.force, output=args.output,
                                       feedback=not args.no_feedback, jobs=args.jobs,
                                       sandbox=not args.no_sandbox, uid_base=args.sandbox_uid_base)
            failed = [r.student for r in results.values() if not r.ok]
            if failed:
                print(f"grading failed for: {', '.join(failed)} (their rows say why)", file=sys.stderr)
                return 1
            return 0
        if args.command == "merge":
            from .shard import merge

            merge(args.course_dir, args.shard_dirs or None, args.assignment, output=args.output,
                  feedback=not args.no_feedback, submissions=args.submissions)
            return 0
        report(args.course_dir, args.assignment, output=args.output, feedback=not args.no_feedback,
               submissions=args.submissions)
        return 0
    except GradingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
