"""The project's packaging: one list of pins, a light package import, a working Makefile stamp."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_requirements_pin_every_package_exactly():
    lines = [l.strip() for l in (ROOT / "requirements.txt").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert lines, "requirements.txt is empty"
    for line in lines:
        assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9A-Za-z.+\-]*", line), f"not an exact pin: {line}"
    names = {l.split("==")[0].lower().replace("_", "-") for l in lines}
    required = {"torch", "trl", "transformers", "rich", "accelerate", "datasets", "tokenizers", "safetensors",
                "pandas", "matplotlib", "tqdm", "jupyterlab", "nbgrader", "papermill", "ipykernel", "pytest"}
    assert required <= names, f"missing pins: {sorted(required - names)}"
    pins = dict(l.split("==") for l in lines)
    assert pins["torch"] == "2.13.0" and pins["trl"] == "0.11.4" and pins["transformers"] == "4.46.3"


def test_environment_yml_reuses_requirements_without_a_second_list():
    text = (ROOT / "environment.yml").read_text()
    assert "python=3.11" in text
    assert "-r requirements.txt" in text
    # no package pinned here: the only version numbers allowed are python's
    pinned = [l for l in text.splitlines() if re.search(r"(==|>=|<=|=\d)", l) and "python=" not in l]
    assert pinned == [], f"environment.yml pins packages itself: {pinned}"


def test_import_course_lib_pulls_in_no_heavy_or_gpu_code():
    code = ("import sys, time; t = time.perf_counter(); import course_lib, course_lib.config, course_lib.jsonio; "
            "print(time.perf_counter() - t); print(sorted(m for m in ('torch', 'transformers', 'trl', 'datasets') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    seconds, heavy = out.stdout.strip().splitlines()
    assert heavy == "[]", f"importing course_lib imported {heavy}"


def test_makefile_has_the_documented_targets_and_ci_calls_make_test():
    mk = (ROOT / "Makefile").read_text()
    for target in ("run", "test", "gpu-check", "lab", "assets", "release", "grade", "formgrader"):
        assert re.search(rf"^{target}:", mk, re.M), f"Makefile has no '{target}' target"
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    head = readme[: readme.index("## ")]
    assert "make run" in head and "make test" in head, "the README must start with the two commands"


#: What the repository may carry (every tracked file, assets included), in bytes.
REPOSITORY_BUDGET = 60_000_000


def test_the_repository_stays_within_its_60_mb_budget():
    """Tracked files as git sees them; outside a git checkout, every file but the build, venv and caches."""
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True,
                               timeout=60).stdout.decode().split("\0")
        files = [ROOT / n for n in names if n]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache", ".ipynb_checkpoints"}
        files = [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]
    assert len(files) > 50  # the listing found the project
    total = sum(p.stat().st_size for p in files if p.is_file())
    assert total <= REPOSITORY_BUDGET, f"{total / 1e6:.1f} MB tracked, budget {REPOSITORY_BUDGET / 1e6:.0f} MB"
