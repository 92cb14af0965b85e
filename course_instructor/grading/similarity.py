"""Submissions that look copied from each other: the ``<notebook>:similar-to:<student>`` flag.

For each notebook a student submitted, the code they wrote is taken from the
solution cells they changed from the released stub, canonicalised
(:func:`canonical_tokens`: comments and docstrings dropped, the layout made
uniform by :func:`ast.unparse`, every name the code itself binds renamed to
``_0``, ``_1``, ... in order of appearance), and what the stub already had
(its signature, its imports) cut off each end.  Cells whose own code is
shorter than :data:`MIN_CELL_TOKENS` are left out: one-liners that everyone
writes the same way prove nothing.  Two students whose remaining code for a
notebook has at least :data:`MIN_TOKENS` tokens each and a
:class:`difflib.SequenceMatcher` ratio of at least :data:`MIN_RATIO` are
flagged, each with the other's id.  Renaming variables, rewording comments and
reformatting do not hide a copy; rewriting the logic does.

The flag never changes a score: it asks a human to compare the two
notebooks.  It is recomputed on every run over every student graded so far
(their submitted notebooks; the autograded copy where the submission is gone).
"""
from __future__ import annotations

import ast
import difflib
import io
import json
import keyword
import re
import tokenize
from pathlib import Path

from .scan import _gid, _meta, _source, escape_id

MIN_RATIO = 0.95           # difflib ratio of the canonical token sequences
MIN_CELL_TOKENS = 40       # a changed cell with fewer tokens of its own is not compared (one-liners)
MIN_TOKENS = 80            # a notebook's compared code must be at least this long, for both students
MAX_CELL_CHARS = 50_000    # a bigger cell is not compared (nobody's solution is that long)
MAX_TOKENS = 20_000        # per notebook, the rest is cut
MAX_NOTEBOOK_BYTES = 64 << 20   # a bigger notebook file is not read
FLAG = "similar-to"


# ---- canonical code ---------------------------------------------------------------------------
class _Docstrings(ast.NodeTransformer):
    """Drop docstrings (and any other bare string statement)."""

    def generic_visit(self, node):
        super().generic_visit(node)
        body = getattr(node, "body", None)
        if isinstance(body, list):
            kept = [s for s in body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                                            and isinstance(s.value.value, str))]
            node.body = kept or [ast.Pass()]
        return node


def _bound_names(tree: ast.AST) -> set[str]:
    """Names the code binds itself: assigned, parameters, loop and comprehension targets, defined functions."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


def _tokens(text: str) -> list[tuple[int, str]]:
    """(type, string) of Python's tokens, without comments and blank lines.

    Code that stops tokenising (an unclosed bracket) keeps the tokens of the
    statements read to the end, and the rest as words and symbols without comments.
    """
    out: list[tuple[int, str]] = []
    done, kept = 0, 0             # lines, and tokens, of the statements read to the end
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if len(out) >= MAX_TOKENS:
                return out
            if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.ENDMARKER):
                continue
            if tok.type == tokenize.NEWLINE:
                out.append((tok.type, "\n"))
                done, kept = tok.end[0], len(out)
            elif tok.type == tokenize.INDENT:
                out.append((tok.type, ">"))
            elif tok.type == tokenize.DEDENT:
                out.append((tok.type, "<"))
            else:
                out.append((tok.type, tok.string))
    except (tokenize.TokenError, SyntaxError, ValueError, RecursionError, MemoryError):
        rest = re.sub(r"#[^\n]*", "", "".join(text.splitlines(keepends=True)[done:]))
        out = out[:kept] + [(tokenize.NAME if w[0].isalpha() or w[0] == "_" else tokenize.OP, w)
                            for w in re.findall(r"\w+|[^\w\s]", rest)[:MAX_TOKENS]]
    return out[:MAX_TOKENS]


def canonical_tokens(code: str) -> list[str]:
    """``code`` as a token sequence that ignores comments, docstrings, layout and the names of its own variables.

    Code that does not parse (a student's syntax error) is still tokenised,
    comments dropped, names renamed when they are assigned with ``=``.
    """
    bound: set[str] | None = None
    try:
        tree = _Docstrings().visit(ast.parse(code))
        bound = _bound_names(tree)
        text = ast.unparse(tree)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError, TypeError):
        text = code
    toks = _tokens(text)
    if bound is None:     # no syntax tree: a name followed by `=` (not `==`) counts as bound
        bound = {s for (t, s), (_, nxt) in zip(toks, toks[1:]) if t == tokenize.NAME and nxt == "="}
    names: dict[str, str] = {}
    out = []
    prev = ""
    for t, s in toks:
        if t == tokenize.NAME and s in bound and prev != "." and not keyword.iskeyword(s):
            s = names.setdefault(s, f"_{len(names)}")
        out.append(s)
        prev = s
        if len(out) >= MAX_TOKENS:
            break
    return out


def own_tokens(code: str, stub: str) -> list[str]:
    """The canonical tokens of ``code`` without what it shares with the released ``stub`` at either end."""
    mine, theirs = canonical_tokens(code), canonical_tokens(stub)
    start = 0
    while start < min(len(mine), len(theirs)) and mine[start] == theirs[start]:
        start += 1
    end = 0
    while end < min(len(mine), len(theirs)) - start and mine[-1 - end] == theirs[-1 - end]:
        end += 1
    return mine[start:len(mine) - end]


def notebook_code(nb: dict, released: dict) -> list[str]:
    """What a student wrote in one notebook, for comparison: the own tokens of each solution code cell they
    changed from the stub and that is long enough, in the release's order, each after a marker of its cell."""
    stubs = [(c, _gid(c)) for c in released.get("cells", []) if isinstance(c, dict) and c.get("cell_type") == "code"
             and _meta(c).get("solution") and _gid(c)]
    mine = {}
    for cell in nb.get("cells", []):
        if isinstance(cell, dict) and cell.get("cell_type") == "code" and _gid(cell):
            mine[_gid(cell)] = cell          # the last copy counts, as in nbgrader
    out: list[str] = []
    for stub, gid in stubs:
        cell = mine.get(gid)
        if cell is None:
            continue
        code = _source(cell)
        if len(code) > MAX_CELL_CHARS or code.strip() == _source(stub).strip():
            continue
        own = own_tokens(code, _source(stub))
        if len(own) >= MIN_CELL_TOKENS:
            out += [f"#cell:{gid}", *own]
    return out[:MAX_TOKENS]


def _size(seq: list[str]) -> int:
    return sum(1 for t in seq if not t.startswith("#cell:"))


def similar_pairs(code: dict[str, list[str]], min_ratio: float = MIN_RATIO,
                  min_tokens: int = MIN_TOKENS) -> list[tuple[str, str, float]]:
    """Pairs ``(a, b, ratio)`` (a < b) of students whose code for one notebook is that alike."""
    items = sorted((sid, seq) for sid, seq in code.items() if _size(seq) >= min_tokens)
    pairs = []
    for i, (a, sa) in enumerate(items):
        matcher = difflib.SequenceMatcher(None, autojunk=False)
        matcher.set_seq2(sa)
        for b, sb in items[i + 1:]:
            if sa == sb:
                pairs.append((a, b, 1.0))
                continue
            if 2 * min(len(sa), len(sb)) / (len(sa) + len(sb)) < min_ratio:
                continue
            matcher.set_seq1(sb)
            if matcher.real_quick_ratio() < min_ratio or matcher.quick_ratio() < min_ratio:
                continue
            r = matcher.ratio()
            if r >= min_ratio:
                pairs.append((a, b, r))
    return pairs


def similarity_flags(code: dict[str, dict[str, list[str]]], **kw) -> dict[str, list[str]]:
    """``{student: ["<notebook>:similar-to:<other>", ...]}`` from ``{student: {notebook stem: code}}``."""
    flags: dict[str, list[str]] = {}
    stems = sorted({stem for per in code.values() for stem in per})
    for stem in stems:
        per_student = {sid: per[stem] for sid, per in code.items() if stem in per}
        for a, b, _ in similar_pairs(per_student, **kw):
            flags.setdefault(a, []).append(f"{stem}:{FLAG}:{escape_id(b, 120)}")
            flags.setdefault(b, []).append(f"{stem}:{FLAG}:{escape_id(a, 120)}")
    return {sid: sorted(set(f)) for sid, f in flags.items()}


def is_similarity_flag(flag: str) -> bool:
    return isinstance(flag, str) and f":{FLAG}:" in flag


# ---- reading everyone's notebooks -----------------------------------------------------------------
def _notebook_files(folder: Path, names) -> dict[str, Path]:
    found = {}
    try:
        if folder.is_symlink() or not folder.is_dir():
            return found
        for name in names:
            p = folder / name
            if p.is_file() and not p.is_symlink():
                found[name] = p
    except OSError:
        pass
    return found


def class_code(students, released: dict[str, dict], assignment: str, submitted: Path | None,
               autograded: Path | None) -> dict[str, dict[str, list[str]]]:
    """Each student's :func:`notebook_code` per notebook: from their submission, else their autograded copy.

    Unreadable notebooks are skipped; nothing here raises for a student's file.
    """
    out: dict[str, dict[str, list[str]]] = {}
    for sid in sorted(set(students)):
        files = {}
        for root in (autograded, submitted):          # the submission wins where both exist
            if root is not None and isinstance(sid, str) and sid and "/" not in sid and sid not in (".", ".."):
                files.update(_notebook_files(root / sid / assignment, released))
        per = {}
        for name, path in sorted(files.items()):
            try:
                if path.stat().st_size > MAX_NOTEBOOK_BYTES:
                    continue
                nb = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(nb, dict) and isinstance(nb.get("cells"), list):
                    per[Path(name).stem] = notebook_code(nb, released[name])
            except Exception:                           # a hostile file costs its owner the comparison only
                continue
        if per:
            out[sid] = per
    return out


def released_notebooks(release_folder: Path) -> dict[str, dict]:
    """``{file name: released notebook}`` of ``release/<assignment>/`` (empty if there is none)."""
    found = {}
    for p in sorted(release_folder.glob("*.ipynb")):
        try:
            found[p.name] = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return found


def refresh(state: dict, students, released: dict[str, dict], assignment: str, submitted: Path | None,
            autograded: Path | None, results: dict | None = None) -> dict[str, list[str]]:
    """Recompute the similarity flags of everyone in ``students`` and put them in ``state`` (in place).

    Earlier similarity flags are removed first from every entry of ``state``
    and every result in ``results`` (their ``flags``), so a flag disappears
    when the pair no longer matches.  Returns ``{student: flags}``; a failure
    here is reported on stderr and leaves no similarity flags, never stops a run.
    """
    import sys

    try:
        similar = similarity_flags(class_code(students, released, assignment, submitted, autograded))
    except Exception as e:    # the comparison is advice: grading goes on without it
        print(f"warning: the similarity check failed ({type(e).__name__}: {str(e)[:200]}); "
              f"no similar-to flags this time", file=sys.stderr)
        similar = {}
    for sid, entry in state.items():
        if isinstance(entry, dict):
            old = entry.get("flags") if isinstance(entry.get("flags"), list) else []
            entry["flags"] = [f for f in old if not is_similarity_flag(f)] + similar.get(sid, [])
    for sid, res in (results or {}).items():
        res.flags = [f for f in res.flags if not is_similarity_flag(f)] + similar.get(sid, [])
    return similar
