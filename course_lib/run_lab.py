"""``make run``: execute every lab notebook with papermill and summarise.

For each solution notebook (``solutions/*/*.ipynb``, in order) papermill
injects the profile into the ``parameters`` cell and executes it; the
executed copy and an HTML rendering go to ``<out>/executed/``.  Notebooks
that evaluate models write ``<out>/results/*.json``; the summary prints each
notebook's time and status and each model's mean reward from those files.
The notebooks' own outputs (checkpoints) go under ``<out>`` too: the kernels
get ``COURSE_OUTPUT_DIR=<out>`` (see ``course_lib.paths``) unless it is set.

Exit status: 0 when every notebook ran, 1 otherwise.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from course_lib.config import PROFILES

ROOT = Path(__file__).resolve().parent.parent
#: glibc malloc settings for the kernels (the Makefile exports the same): keep freed memory in the
#: process instead of returning every large tensor to the kernel and faulting it in again at the
#: next step.  Notebook 2 measured 102 s -> 71 s with them.
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}


def find_notebooks(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def execute(nb: Path, out_dir: Path, parameters: dict, cell_timeout: int) -> tuple[str, float, str]:
    """Run one notebook; returns (status, seconds, error message)."""
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / nb.name
    t0 = time.time()
    status, err = "ok", ""
    try:
        pm.execute_notebook(str(nb), str(target), parameters=parameters, cwd=str(nb.parent),
                            kernel_name="python3", progress_bar=False, execution_timeout=cell_timeout)
    except Exception as e:  # papermill raises PapermillExecutionError with the cell's traceback
        status, err = "FAILED", str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    seconds = time.time() - t0
    if target.exists():
        body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(target), as_version=4))
        target.with_suffix(".html").write_text(body, encoding="utf-8")
    return status, seconds, err


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Execute the lab notebooks with papermill.")
    p.add_argument("--profile", default="cpu", help=f"one of: {', '.join(PROFILES)}")
    p.add_argument("--out", type=Path, default=Path("build"))
    p.add_argument("--notebooks", type=Path, default=ROOT / "solutions")
    p.add_argument("--cell-timeout", type=int, default=3600, help="seconds per cell")
    args = p.parse_args(argv)
    if args.profile not in PROFILES:
        p.error(f"unknown profile {args.profile!r}; valid profiles: {', '.join(PROFILES)}")
    for key, value in MALLOC_ENV.items():  # read by glibc when each kernel process starts
        os.environ.setdefault(key, value)
    out = args.out.resolve()
    from course_lib.paths import ENV_VAR

    had_output_dir = ENV_VAR in os.environ
    os.environ.setdefault(ENV_VAR, str(out))  # read by course_lib.paths in each kernel
    try:
        return _run(args, out)
    finally:
        if not had_output_dir:
            os.environ.pop(ENV_VAR, None)


def _run(args, out: Path) -> int:
    notebooks = find_notebooks(args.notebooks)
    if not notebooks:
        print(f"No lab notebooks in {args.notebooks} yet: nothing to execute.")
        return 0
    results_dir = out / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for nb in notebooks:
        print(f"running {nb.relative_to(ROOT) if nb.is_relative_to(ROOT) else nb} (profile {args.profile}) ...", flush=True)
        import papermill as pm

        declared = pm.inspect_notebook(str(nb))
        params = {"profile": args.profile}
        if "results_dir" in declared:
            params["results_dir"] = str(results_dir)
        status, seconds, err = execute(nb, out / "executed", params, args.cell_timeout)
        rows.append((nb.stem, status, seconds, err))
        print(f"  {status} in {seconds:.0f} s{': ' + err if err else ''}", flush=True)
    print("\nNotebook                               status     time")
    for name, status, seconds, err in rows:
        print(f"{name:38s} {status:8s} {seconds:6.0f} s")
    print(f"total {sum(r[2] for r in rows):.0f} s; executed copies and HTML in {out / 'executed'}")
    summaries = sorted(results_dir.glob("*.json"))
    if summaries:
        from course_lib.jsonio import load_json

        print("\nModel                   target label   mean reward (logit)   n prompts   source")
        for f in summaries:
            data = load_json(f)
            for m in data.get("models", []):
                print(f"{m['model']:23s} {m['label']:14s} {m['mean']:+19.3f} {m['n']:11d}   {f.name}")
    return 0 if all(r[1] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
