"""Visible tests teach: every assert a student can see says what is wrong.

The visible part of a test cell is what precedes ``### BEGIN HIDDEN TESTS``
(the release removes the rest).  A bare ``assert x == y`` fails with an empty
``AssertionError`` (or one that only prints a value), which tells a student
nothing; each assert must carry a message (expected against got, or the rule
broken).  The wrong answers that these messages must name are exercised in
``tests/test_wrong_answers.py``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "solutions").rglob("*.ipynb")) + sorted((ROOT / "notebooks").rglob("*.ipynb"))


def visible_test_cells(path: Path):
    """(grade_id, visible source) of every nbgrader test cell of ``path``."""
    nb = nbformat.read(path, as_version=4)
    found = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            found.append((meta.get("grade_id", "?"), cell.source.partition("### BEGIN HIDDEN TESTS")[0]))
    return found


def bare_asserts(source: str) -> list[int]:
    """Line numbers of the asserts in ``source`` without a message, or whose message is a bare value."""
    # IPython lines (magics, shell escapes) are not Python: blank them out, keeping the numbering
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    tree = ast.parse("\n".join(lines))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            msg = node.msg
            # a message that is only a variable or a tuple of values ("assert x == 5, x") names no problem
            if msg is None or isinstance(msg, (ast.Name, ast.Tuple, ast.Attribute, ast.Subscript, ast.Call)) \
                    and not _is_text(msg):
                bad.append(node.lineno)
    return bad


def _is_text(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) or isinstance(node, ast.JoinedStr)


def test_the_solution_notebooks_have_test_cells():
    cells = [c for p in NOTEBOOKS if p.is_relative_to(ROOT / "solutions") for c in visible_test_cells(p)]
    assert len(cells) == 20, [gid for gid, _ in cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_every_visible_assert_has_a_message(path):
    problems = [f"{gid} line {line}" for gid, source in visible_test_cells(path) for line in bare_asserts(source)]
    assert not problems, f"{path.name}: asserts without a message that says what is wrong: {problems}"


def test_the_check_finds_bare_asserts():
    assert bare_asserts("assert x == 1\nassert y, 'y must be set'\nassert z == 2, z\n%time f()\n") == [1, 3]
    assert bare_asserts('assert a, f"expected 1, got {a}"\nassert b, ("two " f"parts {b}")') == []
