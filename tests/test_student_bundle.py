"""The student bundle: ``make student-bundle`` (``course_instructor/bundle.py``).

What students receive must hold the notebooks, the student edition of
``course_lib`` and the pins, and nothing that answers a graded exercise or
belongs to the instructor.  These tests build the real bundle from this
repository, check its contents against the rules, check that the bundler's
own check catches planted leaks (so it cannot pass vacuously), and, in the
slow test, set a student up from the archive alone.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tarfile
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

import netguard
from course_instructor import bundle

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "rlhf_ppo"
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks" / ASSIGNMENT).glob("*.ipynb"))
SKIPPED = {"__pycache__", ".ipynb_checkpoints"}


def _lib_files(lib: Path) -> dict[str, bytes]:
    return {p.relative_to(lib).as_posix(): p.read_bytes() for p in sorted(lib.rglob("*"))
            if p.is_file() and not SKIPPED & set(p.relative_to(lib).parts) and p.suffix not in (".pyc", ".pyo")}


def _build(out: Path) -> subprocess.CompletedProcess:
    """``python -m course_instructor.bundle --out OUT``, the command ``make student-bundle`` runs."""
    return subprocess.run([sys.executable, "-m", "course_instructor.bundle", "--out", str(out)], cwd=ROOT,
                          env=netguard.guarded_env(), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    r = _build(out)
    assert r.returncode == 0, f"the bundle was refused:\n{r.stdout}\n{r.stderr}"
    return out


@pytest.fixture(scope="module")
def secrets():
    return bundle.read_secrets(ROOT / "solutions")


@pytest.fixture
def staged(tmp_path) -> Path:
    """A bundle written to a folder without checks, for planting leaks in."""
    target = tmp_path / "student"
    target.mkdir()
    bundle.stage(ROOT, target)
    return target


# ---- what the checks look for ------------------------------------------------------------------
def test_graded_names_and_hidden_lines_come_from_the_solutions(secrets):
    """Every exercise's function is known, and each notebook gives distinctive hidden-test lines."""
    for name in ("pad_to_length", "tokenize", "collator", "score_for_label", "generate_response",
                 "kl_shaped_rewards", "next_kl_coef", "comparison_table", "stutter_share", "gae", "clipped_policy_loss",
                 "clipped_value_loss", "rloo_advantages", "preference_pairs", "dpo_loss", "group_advantages", "k3_kl",
                 "grpo_loss"):
        assert name in secrets.graded, name
    solution_cells = set()
    for nb in (ROOT / "solutions" / ASSIGNMENT).glob("*.ipynb"):
        for cell in json.loads(nb.read_text())["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("solution") and cell["cell_type"] == "code":
                solution_cells.add(f"{nb.name}:{meta['grade_id']}")
    assert solution_cells <= set(secrets.graded.values()), "a solution cell defines no function"
    assert {w.split(":")[0] for w in secrets.hidden_lines.values()} == {f"{n}" for n in NOTEBOOKS}
    assert len(secrets.hidden_lines) >= 50
    # plain Python is not "distinctive" (the library may hold it); lines of the tests themselves are
    assert not bundle._distinctive("except Exception as e:", secrets.graded)
    assert bundle._distinctive('record("padded int32", pad_to_length(x, 3, 1))', secrets.graded)


# ---- the real bundle -------------------------------------------------------------------------
def test_bundle_holds_what_students_need_and_nothing_else(dist):
    b = dist / "student"
    assert sorted(p.name for p in b.iterdir()) == sorted([
        "MANIFEST.txt", "Makefile", "README.md", "course_lib", "environment.yml", "notebooks",
        "pyproject.toml", "requirements.txt"])
    # the notebooks as `make release` generated them, byte for byte
    assert sorted(p.name for p in (b / "notebooks" / ASSIGNMENT).iterdir()) == NOTEBOOKS
    for name in NOTEBOOKS:
        assert (b / "notebooks" / ASSIGNMENT / name).read_bytes() == (ROOT / "notebooks" / ASSIGNMENT / name).read_bytes()
    # course_lib with its assets, byte for byte, without caches
    assert _lib_files(b / "course_lib") == _lib_files(ROOT / "course_lib")
    assert (b / "course_lib" / "assets" / "gpt2-imdb-mini" / "model.safetensors").is_file()
    assert (b / "requirements.txt").read_bytes() == (ROOT / "requirements.txt").read_bytes()
    # a pyproject that installs course_lib only
    project = tomllib.loads((b / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["course_lib*"]
    assert project["project"]["name"] == "course_lib"
    # the student Makefile: make lab with its venv logic, the malloc settings, LAB_ARGS and VENV
    mk = (b / "Makefile").read_text()
    for needle in ("lab:", "export MALLOC_MMAP_MAX_", "export MALLOC_TRIM_THRESHOLD_", "LAB_ARGS ?=",
                   "VENV     ?= .venv", "-m pip install -q -r requirements.txt", "-m pip install -q --no-deps -e ."):
        assert needle in mk, needle
    readme = (b / "README.md").read_text()
    for needle in ("make lab", 'profile = "cpu"', 'profile = "gpu"', "Assignments", "Submit"):
        assert needle in readme, needle


def test_bundle_has_no_instructor_paths_solutions_or_hidden_tests(dist, secrets):
    b = dist / "student"
    files = [p for p in b.rglob("*") if p.is_file()]
    for p in b.rglob("*"):
        rel = p.relative_to(b)
        assert not set(rel.parts) & bundle.FORBIDDEN_NAMES, rel
        assert not p.is_symlink(), rel
    for p in files:
        data = p.read_bytes()
        for marker in bundle.MARKERS:
            assert marker.encode() not in data, (p, marker)
    # the bundler's own check, run again on the published folder: nothing to report
    assert bundle.check_bundle(b, secrets) == []
    # no Python file of the bundle defines a graded function (the check's rule, restated here)
    import ast
    for py in b.rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.name not in secrets.graded, (py, node.name)


def test_manifest_lists_every_file_with_its_sha256(dist):
    b = dist / "student"
    rows = (b / "MANIFEST.txt").read_text().splitlines()
    listed = {}
    for row in rows:
        digest, path = row.split("  ", 1)
        listed[path] = digest
    files = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file() and p.name != "MANIFEST.txt")
    assert [r.split("  ", 1)[1] for r in rows] == files
    for path, digest in listed.items():
        assert hashlib.sha256((b / path).read_bytes()).hexdigest() == digest, path


def test_archive_is_the_folder_and_reproducible(dist, tmp_path):
    b = dist / "student"
    with tarfile.open(dist / "student.tar.gz") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names) and names[0] == "student"
        assert {m.mtime for m in members} == {bundle.DEFAULT_EPOCH}
        assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
        for m in members:
            if m.isfile():
                assert tar.extractfile(m).read() == (b / m.name.removeprefix("student/")).read_bytes(), m.name
    folder = sorted("student/" + p.relative_to(b).as_posix() for p in b.rglob("*"))
    assert names[1:] == folder
    # a second build gives the same bytes
    again = tmp_path / "again"
    r = _build(again)
    assert r.returncode == 0, r.stderr
    assert (again / "student.tar.gz").read_bytes() == (dist / "student.tar.gz").read_bytes()


def test_a_refused_build_leaves_the_previous_bundle(tmp_path, monkeypatch):
    out = tmp_path / "dist"
    bundle.build(out, quiet=True)
    before_manifest = (out / "student" / "MANIFEST.txt").read_bytes()
    before_archive = (out / "student.tar.gz").read_bytes()
    real_stage = bundle.stage

    def leaky_stage(root, target):
        real_stage(root, target)
        with open(target / "course_lib" / "padding.py", "a") as f:
            f.write("\n\ndef pad_to_length(seq, length, pad_token_id):\n    return seq\n")

    monkeypatch.setattr(bundle, "stage", leaky_stage)
    with pytest.raises(bundle.BundleError, match=r"course_lib/padding.py:\d+: defines pad_to_length"):
        bundle.build(out, quiet=True)
    assert (out / "student" / "MANIFEST.txt").read_bytes() == before_manifest
    assert (out / "student.tar.gz").read_bytes() == before_archive
    assert "def pad_to_length" not in (out / "student" / "course_lib" / "padding.py").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["student", "student.tar.gz"]  # no temporary folder left


def test_make_student_bundle_refuses_with_a_clear_error(tmp_path):
    """The command line: a planted leak makes it exit 1 and say what and where, writing nothing."""
    root = tmp_path / "root"
    root.mkdir()
    for name in ("solutions", "course_lib", "requirements.txt", "environment.yml", "pyproject.toml"):
        (root / name).symlink_to(ROOT / name)
    # the planted leak lives in a copy of one notebook, not in the repository
    nbdir = root / "notebooks" / ASSIGNMENT
    nbdir.mkdir(parents=True)
    for name in NOTEBOOKS:
        (nbdir / name).write_bytes((ROOT / "notebooks" / ASSIGNMENT / name).read_bytes())
    nb = json.loads((nbdir / NOTEBOOKS[0]).read_text())
    nb["cells"].append({"cell_type": "code", "execution_count": None, "id": "planted", "metadata": {},
                        "outputs": [], "source": "def pad_to_length(seq, length, pad_token_id):\n    return seq\n"})
    (nbdir / NOTEBOOKS[0]).write_text(json.dumps(nb))
    out = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "course_instructor.bundle", "--out", str(out), "--root", str(root)],
                       cwd=ROOT, env=netguard.guarded_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 1
    assert "was not written" in r.stderr
    assert f"notebooks/{ASSIGNMENT}/{NOTEBOOKS[0]} cell" in r.stderr and "(planted)" in r.stderr
    assert "defines pad_to_length in a cell that is not a released stub" in r.stderr
    assert not (out / "student").exists() and not (out / "student.tar.gz").exists()


# ---- the check catches planted leaks (negative tests) --------------------------------------------
def _errors_about(errors, *needles):
    return [e for e in errors if all(n in e for n in needles)]


def test_check_catches_a_graded_function_planted_in_the_library(staged, secrets):
    assert not _errors_about(bundle.check_bundle(staged, secrets), "pad_to_length")
    with open(staged / "course_lib" / "padding.py", "a") as f:
        f.write("\n\ndef pad_to_length(seq, length, pad_token_id):\n"
                "    import torch\n    return torch.cat([seq, torch.full((length - len(seq),), pad_token_id)])\n")
    (staged / "course_lib" / "extra.py").write_text(
        "class Helpers:\n    def collator(self, batch):\n        return batch\n\n"
        "def outer():\n    def gae(values, rewards):\n        return values\n    return gae\n\n"
        "rloo_advantages = lambda rewards, mask: rewards\n"
        "async def stutter_share(texts):\n    return 0.0\n")
    errors = bundle.check_bundle(staged, secrets)
    assert _errors_about(errors, "course_lib/padding.py", "defines pad_to_length (def)")
    assert _errors_about(errors, "course_lib/extra.py:2", "defines collator")          # a method
    assert _errors_about(errors, "course_lib/extra.py:6", "defines gae")               # a nested function
    assert _errors_about(errors, "course_lib/extra.py:10", "defines rloo_advantages (lambda)")
    assert _errors_about(errors, "course_lib/extra.py:11", "defines stutter_share")    # async def


def test_check_catches_a_graded_function_in_a_notebook(staged, secrets):
    nb_path = staged / "notebooks" / ASSIGNMENT / NOTEBOOKS[0]
    nb = json.loads(nb_path.read_text())
    # the released stub itself passes; a stub that holds an implementation does not
    stub = next(c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "ex1-pad-solution")
    assert "raise NotImplementedError()" in "".join(stub["source"])
    assert not _errors_about(bundle.check_bundle(staged, secrets), "pad_to_length")
    stub["source"] = "".join(stub["source"]).replace(
        "raise NotImplementedError()", "return torch.cat([seq, seq.new_full((length - len(seq),), pad_token_id)])\n"
        "    raise NotImplementedError()")
    nb["cells"].append({"cell_type": "code", "execution_count": None, "id": "extra", "metadata": {}, "outputs": [],
                        "source": "def gae(values, rewards, mask, gamma, lam):\n    return values, rewards\n"})
    nb_path.write_text(json.dumps(nb))
    errors = bundle.check_bundle(staged, secrets)
    assert _errors_about(errors, NOTEBOOKS[0], "(ex1-pad-solution)", "defines pad_to_length in a released stub")
    assert _errors_about(errors, NOTEBOOKS[0], "(extra)", "defines gae in a cell that is not a released stub")


def test_check_catches_a_planted_hidden_test_line_and_markers(staged, secrets):
    line = next(s for s, where in secrets.hidden_lines.items() if where.startswith(NOTEBOOKS[0]) and "record(" in s)
    assert not _errors_about(bundle.check_bundle(staged, secrets), "hidden tests")
    with open(staged / "course_lib" / "plots.py", "a") as f:
        f.write(f"\n# {line}\n")
    (staged / "course_lib" / "assets" / "notes.md").write_text("### BEGIN HIDDEN TESTS\nnothing\n")
    nb_path = staged / "notebooks" / ASSIGNMENT / NOTEBOOKS[1]
    nb = json.loads(nb_path.read_text())
    nb["cells"].append({"cell_type": "markdown", "id": "m", "metadata": {}, "source": ["x = 1\n", "### BEGIN SOLUTION\n"]})
    nb_path.write_text(json.dumps(nb))
    errors = bundle.check_bundle(staged, secrets)
    assert _errors_about(errors, "course_lib/plots.py", "holds a line of the hidden tests", NOTEBOOKS[0])
    assert _errors_about(errors, "course_lib/assets/notes.md", "'BEGIN HIDDEN TESTS'")
    assert _errors_about(errors, NOTEBOOKS[1], "'BEGIN SOLUTION'")


def test_check_catches_instructor_paths_and_imports(staged, secrets):
    (staged / "tests").mkdir()
    (staged / "tests" / "test_x.py").write_text("x = 1\n")
    (staged / "course_lib" / "solutions").mkdir()
    (staged / "course_lib" / "solutions" / "a.txt").write_text("a\n")
    (staged / "gradebook.db").write_bytes(b"\0")
    (staged / "nbgrader_config.py").write_text("c = None\n")
    (staged / "course_lib" / "uses_instructor.py").write_text(
        "from course_instructor.ppo import CoursePPO\nfrom course_lib.padding import no_such_name\n")
    errors = bundle.check_bundle(staged, secrets)
    for path in ("tests/test_x.py", "course_lib/solutions/a.txt", "gradebook.db", "nbgrader_config.py"):
        assert _errors_about(errors, f"{path}: path named"), path
    assert _errors_about(errors, "course_lib/uses_instructor.py:1", "imports course_instructor.ppo, which is not in the bundle")
    assert _errors_about(errors, "course_lib/uses_instructor.py:2", "imports no_such_name from course_lib.padding")


# ---- a student's set-up from the archive alone -----------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_student_setup_and_make_lab_work_from_the_bundle_alone(dist, tmp_path):
    """Extract the archive into an empty folder and do what a student does, offline.

    The venv: a fresh ``python -m venv --without-pip`` whose site-packages holds one ``.pth`` line naming
    this repository's venv, so the pinned stack is there without downloading it (a real set-up from the
    network takes minutes and is not what this test is about).  Everything else is the bundle's own:
    its Makefile runs its venv recipe (pip with ``PIP_NO_INDEX=1``: every pin must already be satisfied,
    and its ``pip install --no-deps -e .`` installs the bundle's course_lib), ``import course_lib``
    resolves to the extracted copy and ``course_instructor`` is not importable.  ``make lab`` starts
    JupyterLab (``LAB_ARGS``: no browser, a fixed port and token), whose API lists the four notebooks.

    Then notebook 1 runs with papermill in that venv (``train_rows=400``) with ``allow_errors``: the
    student copy's exercises are stubs, so every cell runs and the test asserts that the only errors
    are the ``NotImplementedError`` of the four exercise test cells, while the cells that load the
    bundled tokenizer, data set and classifier (and build the prompt dataset and rewards) succeed,
    from the bundle's assets.  No solution code is brought in to fill the stubs.
    """
    work = tmp_path / "fresh"
    work.mkdir()
    with tarfile.open(dist / "student.tar.gz") as tar:
        tar.extractall(work, filter="data")
    assert sorted(p.name for p in work.iterdir()) == ["student"]
    b = work / "student"
    home = tmp_path / "home"
    home.mkdir()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "repo-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    log = tmp_path / "net.log"
    env = netguard.guarded_env(log=log)
    env.update({"HOME": str(home), "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "PIP_NO_CACHE_DIR": "1",
                "JUPYTER_PLATFORM_DIRS": "1"})
    for var in ("VIRTUAL_ENV", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_PATH"):
        env.pop(var, None)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(sys.prefix))

    t0 = time.time()
    r = subprocess.run(["make", "venv", f"VENV={venv}"], cwd=b, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert list(venv.glob(".stamp-*")), "the bundle's Makefile did not finish its venv recipe"
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import importlib.util, json, course_lib, course_lib.config as c; "
         "print(json.dumps([course_lib.__file__, importlib.util.find_spec('course_instructor') is None, "
         "str(c.ASSETS_DIR)]))"],
        cwd=home, env=env, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    lib_file, no_instructor, assets = json.loads(probe.stdout)
    assert Path(lib_file) == b / "course_lib" / "__init__.py"
    assert no_instructor, "course_instructor is importable in the student's venv"
    assert Path(assets).is_relative_to(b)
    setup_s = time.time() - t0

    # make lab: JupyterLab on the notebooks
    port, token = _free_port(), "bundle-test-token"
    lab = subprocess.Popen(
        ["make", "lab", f"VENV={venv}",
         f"LAB_ARGS=--no-browser --port={port} --ServerApp.port_retries=0 --ServerApp.token={token} --ServerApp.ip=127.0.0.1"],
        cwd=b, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    listed = None
    try:
        deadline = time.time() + 120
        while time.time() < deadline and listed is None:
            if lab.poll() is not None:
                break
            try:
                status = _get_json(f"http://127.0.0.1:{port}/api/status?token={token}")
                contents = _get_json(f"http://127.0.0.1:{port}/api/contents/{ASSIGNMENT}?token={token}")
                listed = sorted(c["name"] for c in contents["content"] if c["type"] == "notebook")
            except OSError:
                time.sleep(0.5)
    finally:
        if lab.poll() is None:
            os.killpg(lab.pid, signal.SIGTERM)
        try:
            out, _ = lab.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
            out, _ = lab.communicate()
    assert listed == NOTEBOOKS, out.decode(errors="replace")[-3000:]
    assert "started" in status

    # notebook 1 from the bundle, in the student's venv
    executed = tmp_path / "executed.ipynb"
    driver = (
        "import sys, papermill as pm\n"
        "try:\n"
        "    pm.execute_notebook(sys.argv[1], sys.argv[2], parameters={'train_rows': 400}, kernel_name='python3',\n"
        "                        allow_errors=True, progress_bar=False, cwd=sys.argv[3], execution_timeout=600)\n"
        "except pm.PapermillExecutionError as e:\n"
        "    print('first error:', e.ename)\n")
    nb_dir = b / "notebooks" / ASSIGNMENT
    env_nb = dict(env, PATH=os.pathsep.join([str(venv / "bin"), env["PATH"]]))
    t1 = time.time()
    r = subprocess.run([str(venv / "bin" / "python"), "-c", driver, str(nb_dir / NOTEBOOKS[0]), str(executed), str(nb_dir)],
                       cwd=home, env=env_nb, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and executed.exists(), r.stdout + r.stderr
    nb = json.loads(executed.read_text())
    errors, ran, text = {}, [], {}
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or cell.get("id")
        ran.append(cell.get("execution_count") is not None)
        for o in cell.get("outputs", []):
            if o["output_type"] == "error":
                errors[gid] = o["ename"]
            elif o["output_type"] == "stream":
                text[gid] = text.get(gid, "") + "".join(o["text"])
    assert all(ran), "a cell did not run"
    assert errors == {"ex1-pad-tests": "NotImplementedError", "ex2-tokenize-tests": "NotImplementedError",
                      "ex3-collator-tests": "NotImplementedError", "ex4-score-tests": "NotImplementedError"}, errors
    # the cells that need the bundled assets ran, from the bundle's copy
    assert str(b / "course_lib" / "assets" / "gpt2-imdb-mini") in text["nb1-code-04"]
    assert "vocabulary size : 50257" in text["nb1-code-09"]
    assert "reviews are longer than" in text["nb1-code-11"]
    assert "sent_kwargs" in text["nb1-code-19"]
    assert netguard.attempts(log) == []
    print(f"\nset-up {setup_s:.1f} s, notebook 1 {time.time() - t1:.1f} s")


def test_make_student_bundle_is_a_documented_target_and_dist_is_ignored():
    mk = (ROOT / "Makefile").read_text()
    assert "student-bundle: $(STAMP)\n\t$(BIN)/python -m course_instructor.bundle --out $(DIST)\n" in mk
    assert "make student-bundle" in mk.split("\nhelp:", 1)[1].split("\n\n", 1)[0]
    assert "/dist/" in (ROOT / ".gitignore").read_text().splitlines()
    readme = (ROOT / "README.md").read_text()
    head = readme[: readme.index("## ")]
    assert "instructor's copy" in head and "private" in head
    students = readme[readme.index("## Students"):readme.index("## Instructors")]
    assert "make student-bundle" in students and "dist/student.tar.gz" in students


def test_the_grader_refuses_a_library_that_answers_an_exercise(tmp_path):
    """``autograde`` runs these checks on the ``course_lib`` every sandbox mounts before grading anyone."""
    import shutil

    from course_instructor.grading.autograde import check_library
    from course_instructor.grading.course import Course, GradingError

    assert bundle.check_student_library(ROOT / "solutions") == []
    check_library(Course.load(ROOT), ASSIGNMENT)           # the committed library passes
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "course_lib", root / "course_lib", ignore=shutil.ignore_patterns("__pycache__", "assets"))
    (root / "course_lib" / "assets").mkdir()
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    for name in ("requirements.txt", "environment.yml", "pyproject.toml"):
        shutil.copyfile(ROOT / name, root / name)
    with open(root / "course_lib" / "padding.py", "a", encoding="utf-8") as fh:
        fh.write("\n\ndef gae(values, rewards, gamma, lam):\n    return values, rewards\n")
    errors = bundle.check_student_library(ROOT / "solutions", root=root)
    assert any("course_lib/padding.py" in e and "defines gae" in e for e in errors), errors
    with pytest.raises(GradingError, match="holds what students must not have"):
        check_library(Course.load(ROOT), ASSIGNMENT, library_root=root)
