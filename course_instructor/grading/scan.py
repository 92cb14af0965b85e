"""Look at a submission before it runs: what to grade, and what a human should look at.

:func:`stage_submission` decides which of a student's files are graded: only
notebooks with the assignment's names that parse as notebooks; anything else
is left out (it scores as a missing notebook) and flagged.  The staged copy
gets the released cell structure back (:func:`restore_structure`).

:func:`scan_notebook` compares a submitted notebook with the released copy and
searches the cells a student may edit for code that tampers with grading.
Flags never change a score: nbgrader restores locked cells from the gradebook,
and the sandbox and the evidence checks make the listed tricks useless.  They
point a human at submissions that tried, in the ``flags`` column of
``grades.csv``.
"""
from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from course_instructor.grading import astscan

#: (flag, pattern) searched in the code of cells a student may edit (solution cells and added cells).
PATTERNS: list[tuple[str, str]] = [
    ("exception-handler-override", r"set_custom_exc|excepthook|showtraceback|_showtraceback|InteractiveTB"),
    ("ipython-internals", r"get_ipython\s*\(|IPython\.core|\bInteractiveShell\b|\.run_cell\b|display_pub"),
    ("kernel-messaging", r"\bsend_response\b|execute_reply|\.session\.send|\biopub|\bshell_stream|ipykernel"),
    ("builtins-patched", r"\bbuiltins\b|__builtins__"),
    ("library-patched", r"^\s*(torch|np|numpy|pd|pandas|math|course_lib|trl|transformers)(\.\w+)+\s*=[^=]"
                        r"|setattr\s*\(\s*(torch|np|numpy|pd|pandas|math|course_lib|trl|transformers)\b"),
    ("comparison-override", r"def\s+__(eq|ne|bool|float|int|index|lt|gt|le|ge|len|hash|instancecheck)__"),
    ("process-control", r"os\._exit|os\.kill|\bsignal\.|sys\.exit|os\.abort"),
    ("spawns-processes", r"os\.fork|multiprocessing|subprocess|os\.system|os\.exec|os\.spawn|\bpty\b"),
    ("network", r"\bsocket\b|urllib|requests\.|http\.client|\bhttpx\b"),
    ("introspection", r"\bctypes\b|\bcffi\b|\bmmap\b|gc\.get_objects|gc\.get_referrers|sys\.settrace|sys\.setprofile"
                      r"|sys\._getframe|inspect\.(currentframe|stack|getouterframes)|__code__|__globals__"),
    ("grader-files", r"solutions|gradebook|submitted|autograded|nbgrader|grades\.csv|\.\./\.\."),
    ("evidence-forgery", r"course_lib\.evidence|vnd\.course-lib|\bevidence\b|raw\s*=\s*True|publish_display_data"),
]
_COMPILED = [(flag, re.compile(pat, re.M)) for flag, pat in PATTERNS]


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(s for s in src if isinstance(s, str)) if isinstance(src, list) else str(src)


def _meta(cell: dict) -> dict:
    m = cell.get("metadata", {})
    m = m.get("nbgrader", {}) if isinstance(m, dict) else {}
    return m if isinstance(m, dict) else {}


def read_notebook(path: Path) -> tuple[dict | None, str]:
    """(the notebook, "") or (None, why it cannot be graded)."""
    try:
        return parse_notebook(path.read_bytes())
    except OSError as e:
        return None, f"cannot be read ({type(e).__name__})"


def parse_notebook(data: bytes) -> tuple[dict | None, str]:
    """(the notebook, "") or (None, why it cannot be graded), from a file's bytes."""
    import nbformat

    try:
        text = data.decode("utf-8")
        nb = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        return None, f"not valid JSON ({type(e).__name__})"
    try:
        node = nbformat.reads(text, as_version=4)
        nbformat.validate(node)
    except Exception as e:  # nbformat raises several kinds
        return None, f"not a valid notebook ({type(e).__name__}: {str(e)[:120]})"
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        return None, "not a notebook"
    return nb, ""


def scan_notebook(nb: dict, released: dict) -> list[str]:
    """Flags for one submitted notebook against its released copy."""
    flags: list[str] = []
    released_by_id = {_meta(c).get("grade_id"): c for c in released.get("cells", []) if _meta(c).get("grade_id")}
    seen: dict[str, int] = {}
    editable_code = []
    for cell in nb.get("cells", []):
        if not isinstance(cell, dict):
            continue
        gid = _gid(cell)
        ref = released_by_id.get(gid)
        if gid:
            seen[gid] = seen.get(gid, 0) + 1
        if ref is None:
            if cell.get("cell_type") == "code":
                editable_code.append(_source(cell))    # a cell the student added
            continue
        ref_meta = _meta(ref)
        if cell.get("cell_type") != ref.get("cell_type"):
            flags.append(f"cell-type-changed:{gid}")
        elif {k: _meta(cell).get(k) for k in ("grade", "solution", "locked", "points", "task")} != \
                {k: ref_meta.get(k) for k in ("grade", "solution", "locked", "points", "task")}:
            flags.append(f"cell-metadata-edited:{gid}")
        if ref_meta.get("locked") and _source(cell).strip() != _source(ref).strip():
            flags.append(f"locked-cell-edited:{gid}")
        if ref_meta.get("solution") and cell.get("cell_type") == "code":
            editable_code.append(_source(cell))
    flags += _plan(nb, released)[1]    # unknown grade_ids; deleted or stripped graded, solution and locked cells
    flags += [f"duplicate-cell:{gid}" for gid, n in seen.items() if n > 1]
    code = "\n".join(editable_code)
    flags += [flag for flag, rx in _COMPILED if rx.search(code)]
    # an exercise's answer taken from a library (trl, course_lib) or from course_instructor: an AST scan
    # that follows aliases (astscan's docstring says how, and what it cannot see)
    flags += astscan.twin_flags(nb, released)
    return flags


def _gid(cell: dict) -> str | None:
    """The cell's nbgrader grade_id if it is a non-empty string (a student may have put anything there)."""
    gid = _meta(cell).get("grade_id")
    return gid if isinstance(gid, str) and gid else None


def escape_id(value, limit: int = 60) -> str:
    """A student-controlled id as flag text: ``[A-Za-z0-9._-]`` kept, the rest %-escaped, cut to ``limit``."""
    from urllib.parse import quote

    if value is None:
        return "(none)"
    if not isinstance(value, str):
        return f"({type(value).__name__})"
    if not value:
        return "(empty)"
    text = quote(value[:limit * 4], safe="._-")
    if len(text) <= limit and len(value) <= limit * 4:
        return text
    return re.sub(r"%[0-9A-F]?$", "", text[:limit]) + "..."


def _plain(cell: dict) -> dict:
    """``cell`` without nbgrader metadata: an ordinary cell, as if the student had added it."""
    meta = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
    return {**cell, "metadata": {k: v for k, v in meta.items() if k != "nbgrader"}}


def _with_role(cell: dict, ref: dict) -> dict:
    """``cell`` with the released ``ref``'s type and nbgrader metadata (its own source)."""
    cell = dict(cell)
    cell["metadata"] = {**(cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}),
                        "nbgrader": json.loads(json.dumps(ref["metadata"]["nbgrader"]))}
    cell["cell_type"] = ref["cell_type"]
    if ref["cell_type"] == "code":
        cell.setdefault("outputs", [])
        cell.setdefault("execution_count", None)
    else:
        cell.pop("outputs", None)
        cell.pop("execution_count", None)
    return cell


#: A plain cell this close (difflib ratio of the lines) to a missing released cell, where it stood, is that cell.
STRIPPED_SIMILARITY = 0.5


def _find_stripped(cells: list[dict], ref: dict, lo: int, hi: int) -> int | None:
    """Index of the plain cell that is ``ref`` with its nbgrader metadata removed, or None.

    First a plain cell with ``ref``'s cell id (the release has stable ids;
    anywhere in the notebook); else, between the released cells around it
    (``lo`` < index < ``hi``), the plain cell of the same type whose lines are
    most like ``ref``'s, if at least :data:`STRIPPED_SIMILARITY` alike.
    """
    import difflib

    ref_id = ref.get("id")
    if isinstance(ref_id, str) and ref_id:
        for k, cell in enumerate(cells):
            if cell.get("id") == ref_id and _gid(cell) is None:
                return k
    want = [line.strip() for line in _source(ref).splitlines() if line.strip()]
    best, best_ratio = None, STRIPPED_SIMILARITY
    for k in range(max(lo + 1, 0), min(hi, len(cells))):
        cell = cells[k]
        if cell.get("cell_type") != ref.get("cell_type") or _gid(cell) is not None:
            continue
        text = _source(cell)
        if len(text) > 100_000:
            continue
        got = [line.strip() for line in text.splitlines() if line.strip()][:2000]
        ratio = difflib.SequenceMatcher(None, want, got, autojunk=False).ratio()
        if ratio >= best_ratio:
            best, best_ratio = k, ratio
    return best


def _plan(nb: dict, released: dict) -> tuple[list[dict], list[str]]:
    """The cells nbgrader should see for ``nb``, and the flags of what had to be restored.

    * A cell with nbgrader metadata whose grade_id the release does not have
      (or no string grade_id at all) becomes a plain cell (nbgrader would stop
      on it): ``unknown-grade-id:<escaped id>``.
    * Of cells sharing a grade_id only the last keeps it, as in nbgrader.
    * Every cell with a released grade_id gets the released type and metadata.
    * A released test, solution or locked code cell that is missing is found
      again if the student only stripped its metadata (:func:`_find_stripped`):
      a locked one is replaced by the released cell, so the student's version
      never runs in its place (``locked-cell-stripped:<grade_id>``); a
      solution cell keeps the student's source and gets its metadata back
      (``cell-metadata-edited:<grade_id>``).  Otherwise the released cell is put
      back after the released cell that preceded it (``graded-cell-deleted``,
      ``locked-cell-deleted``; a missing solution cell returns as its stub,
      unflagged).
    """
    ref_cells = [c for c in released.get("cells", []) if isinstance(c, dict) and _gid(c)]
    by_id = {_gid(c): c for c in ref_cells}
    flags: list[str] = []
    given = []
    for cell in nb.get("cells", []):
        if not isinstance(cell, dict):
            continue
        meta = cell.get("metadata")
        if isinstance(meta, dict) and "nbgrader" in meta and _gid(cell) not in by_id:
            raw = meta["nbgrader"].get("grade_id") if isinstance(meta["nbgrader"], dict) else None
            if raw is not None or _meta(cell).get("grade") or _meta(cell).get("solution") \
                    or _meta(cell).get("locked") or _meta(cell).get("task"):
                flags.append(f"unknown-grade-id:{escape_id(raw)}")
            cell = _plain(cell)
        given.append(cell)
    last = {_gid(c): i for i, c in enumerate(given) if _gid(c)}
    cells = []
    for i, cell in enumerate(given):
        gid = _gid(cell)
        if gid and last[gid] != i:
            cells.append(_plain(cell))    # a duplicate: as nbgrader does, the last copy counts
        elif gid:
            cells.append(_with_role(cell, by_id[gid]))
        else:
            cells.append(cell)
    for i, ref in enumerate(ref_cells):
        m = _meta(ref)
        gid = m["grade_id"]
        at = {g: k for k, c in enumerate(cells) if (g := _gid(c))}
        if gid in at or not (m.get("grade") or m.get("solution") or (m.get("locked") and ref["cell_type"] == "code")):
            continue
        lo = next((at[_gid(p)] for p in reversed(ref_cells[:i]) if _gid(p) in at), -1)
        hi = next((at[_gid(p)] for p in ref_cells[i + 1:] if _gid(p) in at), len(cells))
        k = _find_stripped(cells, ref, lo, hi if hi > lo else len(cells))
        if k is not None and m.get("locked"):
            cells[k] = json.loads(json.dumps(ref))
            flags.append(f"locked-cell-stripped:{gid}")
        elif k is not None:
            cells[k] = _with_role(cells[k], ref)
            flags.append(f"cell-metadata-edited:{gid}")
        else:
            cells.insert(lo + 1, json.loads(json.dumps(ref)))
            if m.get("grade"):
                flags.append(f"graded-cell-deleted:{gid}")
            elif m.get("locked"):
                flags.append(f"locked-cell-deleted:{gid}")
    return cells, flags


def restore_structure(nb: dict, released: dict) -> dict:
    """``nb`` with the released copy's cell types and nbgrader metadata, and its deleted graded cells back.

    nbgrader restores the *sources* of locked cells from the gradebook, but a
    test cell whose metadata a student edited (``grade: false``, other points)
    makes it stop with an error, a cell with a grade_id it does not know
    fails the whole notebook, a deleted test cell is simply not scored and a
    locked cell whose metadata was removed runs as the student rewrote it.
    So before nbgrader sees a notebook, every cell with a released grade_id
    gets the released type and metadata, unknown grade_ids are removed, and
    released graded, solution and locked code cells that are missing are put
    back (:func:`_plan`).  (The scan of the notebook as submitted has flagged
    all of it already.)
    """
    return {**nb, "cells": _plan(nb, released)[0]}


#: A submission's folder is walked up to this many entries (the rest is not looked at, and flagged).
MAX_ENTRIES = 10_000
#: A notebook larger than this is not read (flagged unreadable).
MAX_NOTEBOOK_BYTES = 100 * 2**20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_folder(path: Path, dir_fd: int | None = None) -> int:
    """A descriptor of the folder ``path``; ``OSError`` (ELOOP/ENOTDIR) if it is a symbolic link or no folder."""
    return os.open(path, _DIR_FLAGS, dir_fd=dir_fd)


def read_regular(name: str, dir_fd: int, limit: int) -> bytes | None:
    """The bytes of the regular file ``name`` in ``dir_fd``, never through a link; None if larger than ``limit``."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{name!r} is not a regular file")
        if st.st_size > limit:
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(limit + 1)
        return None if len(data) > limit else data
    finally:
        os.close(fd)


def walk_submission(folder: Path):
    """Every entry under ``folder`` as ``(relative path, lstat, dir_fd, name)``, links not followed.

    Sorted, folders before their contents; neither ``folder`` nor its parent
    may be a link (``OSError``), so a student folder swapped for a link after
    it was checked is not followed either.  Stops after :data:`MAX_ENTRIES` entries and then yields
    ``(None, None, None, None)`` once.  ``dir_fd`` is valid while the entry is
    being looked at (for :func:`read_regular`).
    """
    parent = open_folder(folder.parent)     # the student's folder, when ``folder`` is their assignment folder
    try:
        top = open_folder(folder.name, dir_fd=parent)
    finally:
        os.close(parent)
    try:
        count = 0
        for dirpath, dirnames, filenames, dirfd in os.fwalk(".", dir_fd=top):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                count += 1
                if count > MAX_ENTRIES:
                    yield None, None, None, None
                    return
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                rel = os.path.normpath(os.path.join(dirpath, name))
                yield rel, st, dirfd, name
    finally:
        os.close(top)


def stage_submission(folder: Path, dest: Path, released: dict[str, dict]) -> list[str]:
    """Copy the gradable notebooks of ``folder`` to ``dest``; return the flags.

    ``released``: ``{notebook file name: released notebook}``.  Only regular
    files directly in ``folder`` with one of the assignment's notebook names
    that parse as notebooks are copied; a notebook that does not (nbgrader
    then scores it as missing), any other file or folder, and every symbolic
    link anywhere under ``folder`` (never followed; ``symlink:<path in folder>``,
    ``symlink:.`` for ``folder`` itself, ``symlink:..`` for the student's folder) are
    flagged.  A student's ``timestamp.txt`` is not copied (``student-timestamp``):
    the submission time is the grader's (see ``autograde.submission_time``).
    Names in flags are escaped (:func:`.course.escape`).
    """
    from .course import escape

    dest.mkdir(parents=True, exist_ok=True)
    flags: list[str] = []
    try:
        entries = walk_submission(folder)
        for rel, st, dirfd, name in entries:
            if rel is None:
                flags.append(f"too-many-files:over {MAX_ENTRIES}")
                break
            top_level = os.sep not in rel
            if stat.S_ISLNK(st.st_mode):
                flags.append(f"symlink:{escape(rel)}")
            elif not top_level:
                continue                                    # inside a folder already flagged
            elif name == "timestamp.txt":
                flags.append("student-timestamp")
            elif not stat.S_ISREG(st.st_mode) or name not in released:
                flags.append(f"unexpected-file:{escape(name)}")
            else:
                try:
                    data = read_regular(name, dirfd, MAX_NOTEBOOK_BYTES)
                except OSError as e:
                    nb, why = None, f"cannot be read ({type(e).__name__})"
                else:
                    nb, why = (None, f"larger than {MAX_NOTEBOOK_BYTES // 2**20} MB") if data is None \
                        else parse_notebook(data)
                if nb is None:
                    flags.append(f"unreadable-notebook:{name} ({escape(why)})")
                    continue
                flags += [f"{Path(name).stem}:{f}" for f in scan_notebook(nb, released[name])]
                (dest / name).write_text(json.dumps(restore_structure(nb, released[name]), indent=1),
                                         encoding="utf-8")
    except OSError as e:
        flags.append("symlink:." if os.path.islink(folder) else "symlink:.." if os.path.islink(folder.parent)
                     else f"unreadable-folder ({type(e).__name__})")
    for name in sorted(released):
        if not (dest / name).exists():
            flags.append(f"missing-notebook:{name}")
    return flags
