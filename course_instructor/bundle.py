"""``make student-bundle``: the student bundle, built from the instructor's copy and checked.

``python -m course_instructor.bundle --out dist`` writes ``dist/student/`` and
``dist/student.tar.gz``:

* ``notebooks/rlhf_ppo/*.ipynb``  the student notebooks, as ``make release`` generated them
* ``course_lib/``                 the student edition of the library, with its bundled assets
* ``requirements.txt``            the course's pins, unchanged; ``environment.yml`` (conda) installs them
* ``pyproject.toml``              installs ``course_lib`` only
* ``Makefile``, ``README.md``     the student's ``make lab`` and set-up (``course_instructor/student_bundle/``)
* ``MANIFEST.txt``                ``sha256  path`` of every other file (``sha256sum -c MANIFEST.txt``)

Nothing is published unless every check passes (:func:`check_bundle`); the
checks read what to look for from the solution notebooks, so they follow the
exercises as they change:

a. the graded functions (each ``def`` in a solution cell of ``solutions/``) are
   defined nowhere in the bundle's Python files (functions, methods, nested
   functions, lambdas assigned to the name) nor in any notebook cell, except in
   the released stubs, whose bodies must be a docstring and
   ``raise NotImplementedError()``;
b. no file holds nbgrader's solution or hidden-test markers, nor any
   distinctive line of a hidden test block;
c. no path is named like the instructor's side (``solutions``,
   ``course_instructor``, ``tests``, the gradebook, student work, ``.git``, ...);
d. what the notebooks and the library import from the course exists in the
   bundle (no ``course_instructor``; every ``from course_lib.M import NAME``
   names a module and a top-level name of the bundle's ``course_lib``): a
   bundle whose notebooks cannot import is refused too.

The bundle is built in a temporary folder beside the target and renamed into
place; the archive is written to a temporary file and renamed.  A failure
(a check, a copy, a full disk) leaves the previous bundle and archive as they
were.  The archive is reproducible: sorted entries, fixed times and owners,
no gzip time stamp.
"""
from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "student_bundle"
NAME = "student"
ASSIGNMENT = "rlhf_ppo"

#: path components that never ship (the instructor's side, student work, version control, caches)
FORBIDDEN_NAMES = frozenset({
    "solutions", "course_instructor", "tests", "autograded", "submitted", "feedback",
    "gradebook.db", ".git", "nbgrader_config.py", "__pycache__", ".ipynb_checkpoints",
    "release", "grades.csv",
})
#: nbgrader's markers of what only the instructor's copy holds
MARKERS = ("BEGIN HIDDEN TESTS", "BEGIN SOLUTION", "END HIDDEN TESTS", "END SOLUTION")
#: a hidden-test line shorter than this (after stripping) is too common to point at a leak
MIN_DISTINCTIVE = 20
#: copied from course_lib/: everything but caches and build leftovers
SKIP_IN_LIB = ("__pycache__", ".ipynb_checkpoints", "*.pyc", "*.pyo", "*.egg-info", ".DS_Store")
#: fixed time of every archive entry (2000-01-01), unless SOURCE_DATE_EPOCH says otherwise
DEFAULT_EPOCH = 946684800
STUB_RAISE = "raise NotImplementedError()"


class BundleError(RuntimeError):
    """The bundle was not published; the message lists every reason."""


# --------------------------------------------------------------------------------------------
# what the solution notebooks say must not ship
# --------------------------------------------------------------------------------------------
def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _parse_cell(src: str) -> ast.Module | None:
    """A code cell's AST; IPython magics and shell escapes become blank lines. None if it does not parse."""
    lines = ["" if re.match(r"\s*[%!]", line) else line for line in src.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def _defined_names(tree: ast.AST):
    """(name, line, kind) of every function defined anywhere in ``tree``: def, async def, lambda bound to a name."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, "def"
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and isinstance(node.value, ast.Lambda):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for sub in ast.walk(t):
                    if isinstance(sub, ast.Name):
                        yield sub.id, node.lineno, "lambda"
                    elif isinstance(sub, ast.Attribute):
                        yield sub.attr, node.lineno, "lambda"


@dataclass
class Secrets:
    """What the solution notebooks hold that the bundle must not: graded names and hidden-test lines."""

    graded: dict[str, str] = field(default_factory=dict)          # name -> grade_id of its solution cell
    hidden_lines: dict[str, str] = field(default_factory=dict)    # distinctive line -> grade_id


def read_secrets(solutions: Path) -> Secrets:
    """Graded function names and distinctive hidden-test lines of every ``solutions/*/*.ipynb``."""
    secrets = Secrets()
    hidden: dict[str, str] = {}
    visible: set[str] = set()
    notebooks = sorted(solutions.glob("*/*.ipynb"))
    if not notebooks:
        raise BundleError(f"no solution notebooks in {solutions}: nothing to check the bundle against")
    for nb_path in notebooks:
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        for cell in nb.get("cells", []):
            src = _source(cell)
            meta = cell.get("metadata", {}).get("nbgrader", {})
            gid = meta.get("grade_id", "?")
            if cell.get("cell_type") == "code" and meta.get("solution"):
                tree = _parse_cell(src)
                if tree is None:
                    names = re.findall(r"^\s*(?:async\s+)?def\s+(\w+)", src, re.M)
                else:
                    names = [n for n, _, _ in _defined_names(tree)]
                for n in names:
                    secrets.graded.setdefault(n, f"{nb_path.name}:{gid}")
            inside = False
            for line in src.splitlines():
                s = line.strip()
                if "BEGIN HIDDEN TESTS" in s:
                    inside = True
                elif "END HIDDEN TESTS" in s:
                    inside = False
                elif inside:
                    hidden.setdefault(s, f"{nb_path.name}:{gid}")
                else:
                    visible.add(s)
    for s, where in hidden.items():
        if s not in visible and _distinctive(s, secrets.graded):
            secrets.hidden_lines[s] = where
    return secrets


def _distinctive(line: str, graded) -> bool:
    """Whether a hidden-test line is specific enough that finding it elsewhere means a leak.

    At least ``MIN_DISTINCTIVE`` characters, not an import or a comment, and holding something of the
    test itself: a string, a number other than 0 and 1, a graded function's name or ``record``.  Plain
    Python (``except Exception as e:``, ``torch.manual_seed(s)``) is left out: the library may hold it.
    """
    if len(line) < MIN_DISTINCTIVE or line.startswith("#") or re.match(r"(from\s+\S+\s+)?import\s", line):
        return False
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line).readline))
    except (tokenize.TokenError, SyntaxError):
        return True
    for tok in tokens:
        if tok.type == tokenize.STRING:
            return True
        if tok.type == tokenize.NUMBER and tok.string not in ("0", "1", "0.0", "1.0"):
            return True
        if tok.type == tokenize.NAME and (tok.string in graded or tok.string == "record"):
            return True
    return False


# --------------------------------------------------------------------------------------------
# the checks
# --------------------------------------------------------------------------------------------
def _is_stub_body(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A released stub's body: an optional docstring, then ``raise NotImplementedError()`` and nothing else."""
    body = list(fn.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    if len(body) != 1 or not isinstance(body[0], ast.Raise):
        return False
    exc = body[0].exc
    if isinstance(exc, ast.Call):
        exc = exc.func if not exc.args and not exc.keywords else None
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def _is_text(data: bytes) -> bool:
    if b"\0" in data[:8192]:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _notebook_strings(obj) -> list[str]:
    """Every string of a notebook's JSON (sources, outputs, metadata), lists of lines joined."""
    out: list[str] = []
    if isinstance(obj, str):
        out.append(obj)
    elif isinstance(obj, list):
        if obj and all(isinstance(x, str) for x in obj):
            out.append("".join(obj))
        else:
            for x in obj:
                out.extend(_notebook_strings(x))
    elif isinstance(obj, dict):
        for v in obj.values():
            out.extend(_notebook_strings(v))
    return out


def _module_names(lib_root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for the package(s) under ``lib_root`` (the bundle's root)."""
    mods = {}
    for py in lib_root.rglob("*.py"):
        rel = py.relative_to(lib_root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            mods[".".join(parts)] = py
    return mods


def _top_level_names(tree: ast.Module) -> set[str] | None:
    """Names a module binds at top level; None when it cannot be known (star import, ``__getattr__``)."""
    names: set[str] = set()
    for node in tree.body:
        for sub in [node] + (list(ast.walk(node)) if isinstance(node, (ast.If, ast.Try)) else []):
            if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(sub.name)
                if sub.name == "__getattr__":
                    return None
            elif isinstance(sub, (ast.Import, ast.ImportFrom)):
                for a in sub.names:
                    if a.name == "*":
                        return None
                    names.add(a.asname or a.name.split(".")[0])
            elif isinstance(sub, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target]
                for t in targets:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name):
                            names.add(n.id)
    return names


def check_bundle(bundle: Path, secrets: Secrets) -> list[str]:
    """Every reason why ``bundle`` must not ship (empty when it may)."""
    errors: list[str] = []
    files = sorted(p for p in bundle.rglob("*") if p.is_file() or p.is_symlink())
    modules = _module_names(bundle)
    module_names_cache: dict[str, set[str] | None] = {}

    def names_of(mod: str) -> set[str] | None:
        if mod not in module_names_cache:
            try:
                module_names_cache[mod] = _top_level_names(ast.parse(modules[mod].read_text(encoding="utf-8")))
            except SyntaxError:
                module_names_cache[mod] = None
        return module_names_cache[mod]

    def check_imports(tree: ast.AST, where: str, package: str | None = None) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative import inside course_lib
                    if package is None:
                        continue
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                mods = [(mod, [a.name for a in node.names])]
            else:
                continue
            for mod, imported in mods:
                top = mod.split(".")[0]
                if top in FORBIDDEN_NAMES or top == "solutions":
                    errors.append(f"{where}:{node.lineno}: imports {mod}, which is not in the bundle")
                    continue
                if top != "course_lib":
                    continue
                if mod not in modules:
                    errors.append(f"{where}:{node.lineno}: imports {mod}, which the bundle's course_lib does not have")
                    continue
                known = names_of(mod)
                for name in imported or []:
                    if name == "*" or known is None or name in known or f"{mod}.{name}" in modules:
                        continue
                    errors.append(f"{where}:{node.lineno}: imports {name} from {mod}, which does not define it")

    for path in files:
        rel = path.relative_to(bundle).as_posix()
        parts = set(Path(rel).parts)
        bad = sorted(parts & FORBIDDEN_NAMES) + [p for p in Path(rel).parts if p.endswith(".egg-info")]
        if bad:
            errors.append(f"{rel}: path named {', '.join(bad)} (instructor-only or build leftover)")
        if path.is_symlink():
            errors.append(f"{rel}: a symbolic link (the bundle holds plain files only)")
            continue
        data = path.read_bytes()
        for m in MARKERS:
            if m.encode() in data:
                errors.append(f"{rel}: holds nbgrader's marker {m!r}")
        if not _is_text(data):
            continue
        text = data.decode("utf-8")
        if path.suffix == ".ipynb":
            try:
                nb = json.loads(text)
            except json.JSONDecodeError as e:
                errors.append(f"{rel}: not a valid notebook ({e})")
                continue
            haystack = "\n".join(_notebook_strings(nb))
        else:
            haystack = text
        for line, where in secrets.hidden_lines.items():
            if line in haystack:
                errors.append(f"{rel}: holds a line of the hidden tests of {where}: {line[:80]!r}")

        if path.suffix == ".py":
            try:
                tree = ast.parse(text)
            except SyntaxError as e:
                errors.append(f"{rel}: does not parse, so it cannot be checked ({e.msg}, line {e.lineno})")
                continue
            for name, lineno, kind in _defined_names(tree):
                if name in secrets.graded:
                    errors.append(f"{rel}:{lineno}: defines {name} ({kind}), the graded function of "
                                  f"{secrets.graded[name]}")
            mod = ".".join(Path(rel).with_suffix("").parts)
            package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
            check_imports(tree, rel, package.removesuffix(".__init__"))
        elif path.suffix == ".ipynb":
            for i, cell in enumerate(nb.get("cells", [])):
                if cell.get("cell_type") != "code":
                    continue
                src = _source(cell)
                meta = cell.get("metadata", {}).get("nbgrader", {})
                where = f"{rel} cell {i} ({meta.get('grade_id') or cell.get('id', '?')})"
                tree = _parse_cell(src)
                if tree is None:
                    if any(re.search(rf"\b{re.escape(n)}\b", src) for n in secrets.graded):
                        errors.append(f"{where}: does not parse and names a graded function")
                    continue
                stub = bool(meta.get("solution")) and STUB_RAISE in src
                for node in ast.walk(tree):
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in secrets.graded:
                        if stub and node in tree.body and _is_stub_body(node):
                            continue
                        what = "a released stub whose body is more than `raise NotImplementedError()`" if stub \
                            else "a cell that is not a released stub"
                        errors.append(f"{where}:{node.lineno}: defines {node.name} in {what}")
                for name, lineno, kind in _defined_names(tree):
                    if kind == "lambda" and name in secrets.graded:
                        errors.append(f"{where}:{lineno}: binds {name} to a lambda")
                check_imports(tree, where)
    return errors


# --------------------------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------------------------
def _pyproject(root: Path) -> str:
    import tomllib

    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return f'''# The student edition of the course's library: installs course_lib (with its bundled models and
# data) and nothing else.  The pinned stack is in requirements.txt (`make lab` installs both).
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{project["name"]}"
version = "{project["version"]}"
description = {json.dumps(project.get("description", ""))}
readme = "README.md"
requires-python = {json.dumps(project.get("requires-python", ">=3.11"))}
license = {{ text = {json.dumps(project.get("license", {}).get("text", "Apache-2.0"))} }}
dependencies = []

[tool.setuptools.packages.find]
include = ["course_lib*"]

[tool.setuptools.package-data]
course_lib = ["assets/**/*"]
'''


def stage(root: Path, target: Path) -> None:
    """Write the bundle's files into the empty folder ``target`` (no checks)."""
    nb_src = root / "notebooks" / ASSIGNMENT
    notebooks = sorted(nb_src.glob("*.ipynb"))
    if not notebooks:
        raise BundleError(f"no student notebooks in {nb_src}: run `make release` first")
    (target / "notebooks" / ASSIGNMENT).mkdir(parents=True)
    for nb in notebooks:
        shutil.copyfile(nb, target / "notebooks" / ASSIGNMENT / nb.name)
    shutil.copytree(root / "course_lib", target / "course_lib", ignore=shutil.ignore_patterns(*SKIP_IN_LIB),
                    copy_function=shutil.copyfile)
    shutil.copyfile(root / "requirements.txt", target / "requirements.txt")
    if (root / "environment.yml").exists():
        shutil.copyfile(root / "environment.yml", target / "environment.yml")
    (target / "pyproject.toml").write_text(_pyproject(root), encoding="utf-8")
    for name in ("Makefile", "README.md"):
        shutil.copyfile(TEMPLATES / name, target / name)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(bundle: Path) -> Path:
    """``MANIFEST.txt``: ``sha256  path`` of every other file, sorted by path (``sha256sum -c`` reads it)."""
    manifest = bundle / "MANIFEST.txt"
    rows = [f"{_sha256(p)}  {p.relative_to(bundle).as_posix()}"
            for p in sorted(bundle.rglob("*"), key=lambda p: p.relative_to(bundle).as_posix())
            if p.is_file() and p != manifest]
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return manifest


def write_archive(bundle: Path, archive: Path, epoch: int) -> None:
    """A reproducible ``.tar.gz`` of ``bundle`` under the top folder ``student/``."""
    entries = sorted(bundle.rglob("*"), key=lambda p: p.relative_to(bundle).as_posix())
    with open(archive, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
                def add(path: Path, arcname: str) -> None:
                    info = tarfile.TarInfo(arcname)
                    info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
                    if path.is_dir():
                        info.type, info.mode = tarfile.DIRTYPE, 0o755
                        tar.addfile(info)
                    else:
                        info.size = path.stat().st_size
                        info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
                        with open(path, "rb") as f:
                            tar.addfile(info, f)

                add(bundle, NAME)
                for p in entries:
                    add(p, f"{NAME}/{p.relative_to(bundle).as_posix()}")


def check_student_library(solutions: Path, root: Path = ROOT) -> list[str]:
    """Why the library and notebooks of ``root`` must not be shown to students (empty when they may).

    The same checks as a bundle build, on a scratch copy (the grader runs this
    before it mounts ``course_lib`` into a sandbox: nothing there may answer an
    exercise of ``solutions``).
    """
    secrets = read_secrets(solutions)
    with tempfile.TemporaryDirectory(prefix="student-library-check-") as tmp:
        staged = Path(tmp) / NAME
        staged.mkdir()
        stage(root, staged)
        return check_bundle(staged, secrets)


def build(out: Path, root: Path = ROOT, quiet: bool = False) -> Path:
    """Build, check and publish ``out/student/`` and ``out/student.tar.gz``; returns the folder.

    Raises :class:`BundleError` (nothing published) when a check fails.
    """
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    final, archive = out / NAME, out / f"{NAME}.tar.gz"
    secrets = read_secrets(root / "solutions")
    work = Path(tempfile.mkdtemp(prefix=f".{NAME}-build-", dir=out))
    try:
        staged = work / NAME
        staged.mkdir()
        stage(root, staged)
        errors = check_bundle(staged, secrets)
        if errors:
            raise BundleError("the student bundle was not written: "
                              f"{len(errors)} check(s) failed\n  " + "\n  ".join(errors))
        write_manifest(staged)
        epoch = int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH))
        tmp_archive = work / f"{NAME}.tar.gz"
        write_archive(staged, tmp_archive, epoch)
        # publish: the folder (old one moved aside, new one renamed in, old one removed), then the archive
        old = work / "previous"
        if final.exists():
            os.rename(final, old)
        try:
            os.rename(staged, final)
        except BaseException:
            if old.exists() and not final.exists():
                os.rename(old, final)
            raise
        os.replace(tmp_archive, archive)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not quiet:
        n = sum(1 for p in final.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in final.rglob("*") if p.is_file())
        print(f"student bundle: {final} ({n} files, {size / 1e6:.1f} MB; "
              f"{len(secrets.graded)} graded functions and {len(secrets.hidden_lines)} hidden-test lines checked)")
        print(f"archive       : {archive} ({archive.stat().st_size / 1e6:.1f} MB, sha256 {_sha256(archive)[:16]}...)")
    return final


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Build the student bundle (notebooks, course_lib, pins) and check "
                                            "that it holds no solution, hidden test or instructor file.")
    p.add_argument("--out", type=Path, default=Path("dist"), help="folder that receives student/ and "
                                                                  "student.tar.gz (default: dist)")
    p.add_argument("--root", type=Path, default=ROOT, help="the instructor's copy (default: this repository)")
    p.add_argument("--check", type=Path, metavar="FOLDER",
                   help="only check an existing bundle folder (e.g. dist/student) and report")
    args = p.parse_args(argv)
    try:
        if args.check:
            errors = check_bundle(args.check, read_secrets(args.root / "solutions"))
            for e in errors:
                print(e, file=sys.stderr)
            print(f"{args.check}: {'%d problem(s)' % len(errors) if errors else 'ok'}")
            return 1 if errors else 0
        build(args.out, args.root)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
