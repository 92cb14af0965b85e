"""Release the student notebooks and autograde untrusted submissions, with nbgrader.

Command line (run from anywhere; ``--course-dir`` defaults to the repository)::

    python -m course_instructor.grading release                 # solutions/ -> notebooks/ (make release)
    python -m course_instructor.grading release --check         # exit 1 if notebooks/ is stale
    python -m course_instructor.grading autograde --submissions submitted --jobs 2   # (make grade)
    python -m course_instructor.grading report                  # feedback + grades.csv again (after manual grading)
    python -m course_instructor.grading autograde --shard 1/8   # one machine's share of a large class ...
    python -m course_instructor.grading merge                   # ... and, after all shards, the merge

Modules, one job each:

``course``        the course folder as nbgrader sees it; running nbgrader; atomic writes
``release``       student copies generated from the sources (reproducible bytes)
``sandbox``       executing one notebook inside a bubblewrap sandbox, with limits
``runner``        the executor that runs *inside* the sandbox (nbclient, output caps)
``verify``        outputs merged back and test cells decided from evidence, outside the kernel
``scan``          which files are graded; flags for a human reviewer
``similarity``    ``similar-to`` flags: students whose code is nearly the same
``preprocessors`` the nbgrader step that ties sandbox and verify together
``job``           one student's ``nbgrader autograde`` with that step
``gradebook``     working copies, merging, the grade table and the per-exercise table
``autograde``     the whole run: expected evidence, students in parallel, atomic commit
``report``        grades.csv, exercises.csv and feedback from the gradebook
``shard``         a share of the class graded on one of several machines; merging the shares
``cli``           the command line

Student code is untrusted.  The threat model and what the sandbox does and
does not protect are in the README (Instructors) and in :mod:`.sandbox`.
"""
from .autograde import (DEFAULT_CELL_TIMEOUT, DEFAULT_STUDENT_TIMEOUT, StudentResult, autograde,
                        ensure_timestamp, find_submissions)
from .cli import main
from .course import ASSIGNMENT, Course, GradingError, default_course_dir
from .gradebook import grade_table
from .release import (VOLATILE_CELL_METADATA, VOLATILE_NB_METADATA, _stable_id, dumps_notebook, generate,
                      normalize_student_copy, release, sync_gradebook)
from .report import report
from .sandbox import QUIET_ENV, Limits, SandboxUnavailable, grading_env

__all__ = ["ASSIGNMENT", "Course", "DEFAULT_CELL_TIMEOUT", "DEFAULT_STUDENT_TIMEOUT", "GradingError", "Limits",
           "QUIET_ENV", "SandboxUnavailable", "StudentResult", "VOLATILE_CELL_METADATA", "VOLATILE_NB_METADATA",
           "_stable_id", "autograde", "default_course_dir", "dumps_notebook", "ensure_timestamp",
           "find_submissions", "generate", "grade_table", "grading_env", "main", "normalize_student_copy",
           "release", "report", "sync_gradebook"]
