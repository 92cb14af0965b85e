"""Release: generate the student copies of an assignment from its nbgrader sources.

``release`` runs ``nbgrader generate_assignment`` into a temporary folder,
normalises the copies (no outputs, no execution metadata, stable cell ids) so
the same sources always give the same bytes, and then replaces the files in
``notebooks/<assignment>/`` one by one with an atomic rename (a reader never
sees half a file).  It also records the assignment, its cells and hidden tests
in the gradebook (``build/gradebook.db``), which autograding restores them from.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from .course import ASSIGNMENT, Course, GradingError, default_course_dir, run_nbgrader, tail, write_atomic

#: Cell metadata written by front ends and runners, with timestamps or UI state: never released.
VOLATILE_CELL_METADATA = ("execution", "ExecuteTime", "papermill", "collapsed", "scrolled")
#: Notebook metadata of the same kind (widget state is an output).
VOLATILE_NB_METADATA = ("papermill", "widgets")


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


def generate(course: Course, assignment: str, out_dir: Path, db_url: str | None = None) -> dict[str, bytes]:
    """Generate the student copies of ``assignment`` into ``out_dir`` (a new or empty folder).

    Also (re)records the assignment in the gradebook (``db_url``: another
    gradebook than the course's, e.g. the working copy of a grading run).
    Returns ``{relative path: normalised bytes}`` of every released file.
    """
    course.ensure_build()
    sources = {p.name: p for p in course.source_notebooks(assignment)}
    # outputs are cleared here only: the Formgrader and the feedback show the graded outputs
    args = ["generate_assignment", assignment, "--force", f"--CourseDirectory.release_directory={out_dir}",
            "--ClearOutputPreprocessor.enabled=True", "--log-level=WARN"]
    if db_url:
        args.append(f"--CourseDirectory.db_url={db_url}")
    code, out = run_nbgrader(course, args)
    made = out_dir / assignment
    if code != 0 or not made.is_dir():
        raise GradingError(f"nbgrader generate_assignment failed (exit {code}):\n{tail(out, 40)}")
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
            write_atomic(target, data)
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


def sync_gradebook(course: Course, assignment: str, db_url: str | None = None) -> None:
    """Record the assignment's cells and hidden tests in the gradebook (from the sources).

    nbgrader restores the test cells of a submission from the gradebook, so the
    gradebook must know the current sources.  The release folder is not touched.
    """
    course.ensure_build()
    tmp = Path(tempfile.mkdtemp(prefix=".gradebook-sync-", dir=course.build))
    try:
        generate(course, assignment, tmp, db_url=db_url)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
