"""The nbgrader preprocessor that executes a notebook in the sandbox and checks its evidence.

It replaces nbgrader's ``Execute`` in ``nbgrader autograde`` (see :mod:`.job`).
nbgrader itself stays in the instructor's process: it restores the locked and
test cells from the gradebook before this step and writes the scores after it.
"""
from __future__ import annotations

import json
from pathlib import Path

from nbformat import from_dict
from traitlets import Bool, Int, Unicode

from nbgrader.preprocessors import NbGraderPreprocessor

from . import render, verify
from .sandbox import DEFAULT_UID_BASE, Limits, execute_notebook


class ExecutionFailed(RuntimeError):
    """The notebook could not be executed to the end (the kernel died, ran out of time, ...)."""


class SandboxedExecute(NbGraderPreprocessor):
    """Execute in a bubblewrap sandbox, merge the outputs, decide test cells from evidence."""

    sandbox = Bool(True, help="isolate the kernel (False: only for trusted submissions)").tag(config=True)
    slot = Int(0, help="parallel slot: selects the sandbox's user id").tag(config=True)
    uid_base = Int(DEFAULT_UID_BASE, help="first sandbox user id (root only)").tag(config=True)
    cell_timeout = Int(120, help="seconds per cell").tag(config=True)
    wall_seconds = Int(1800, help="seconds per notebook").tag(config=True)
    expected = Unicode("", help="JSON file of the solution's evidence ({notebook: {grade_id: [...]}})").tag(config=True)
    report = Unicode("", help="JSON-lines file this step appends its findings to").tag(config=True)
    assignment = Unicode("assignment").tag(config=True)

    def preprocess(self, nb, resources):
        name = resources.get("unique_key") or "notebook"
        expected_all = json.loads(Path(self.expected).read_text(encoding="utf-8"))
        expected = expected_all.get(name, {})
        limits = Limits(cell_timeout=self.cell_timeout, wall_seconds=float(self.wall_seconds))
        trusted = json.loads(json.dumps(nb))          # plain dict copy of nbgrader's notebook
        run = execute_notebook(trusted, limits=limits, slot=self.slot, sandbox=self.sandbox,
                               assignment=self.assignment, uid_base=self.uid_base)
        finding = {"notebook": name, "status": run.status, "seconds": round(run.seconds, 1),
                   "truncated_cells": run.truncated_cells, "killed_processes": run.killed_processes,
                   "restarted_after": run.restarted_after, "late_display_updates": run.late_display_updates,
                   "hooks_reset": {str(k): v for k, v in run.hooks_reset.items()}, "memory": run.memory,
                   "flags": [], "checks": {}}
        problems = verify.merge_outputs(trusted, run.notebook) if run.notebook is not None else [run.status]
        if problems:
            finding["flags"].append("executed-notebook-tampered")
        verdict = verify.check_test_cells(trusted, expected)
        for v in verdict.cells:
            finding["checks"][v.grade_id] = "passed" if v.passed else f"failed: {v.reason}"
            if v.silent_failure and not problems and run.ok:
                finding["flags"].append(f"check-failed-silently:{v.grade_id}")
            if v.malformed:
                finding["flags"].append(f"malformed-evidence:{v.grade_id}")
        for gid in verdict.missing:
            finding["checks"][gid] = "failed: test cell missing"
        if render.sanitize_notebook(trusted):     # what the Formgrader and the feedback will render
            finding["flags"].append("active-content")
        if run.truncated_cells:
            finding["flags"].append("output-bomb")
        if run.timed_out_cells:
            finding["flags"].append("cell-timeout")
        if run.killed_processes:
            finding["flags"].append("stray-processes")
        if run.late_display_updates:
            finding["flags"].append("late-display-update")
        for what in dict.fromkeys(w for cell in sorted(run.hooks_reset) for w in run.hooks_reset[cell]):
            finding["flags"].append(f"hooks-reset:{what}")
        if run.memory.get("oom_kills"):
            finding["flags"].append("memory-limit")
        if not run.ok:
            finding["flags"].append("kernel-died" if run.status == "kernel died" else "execution-failed")
        self._report(finding)
        if not run.ok:
            raise ExecutionFailed(f"{name}: {run.status}\n--- last lines of the sandbox log ---\n"
                                  f"{run.log_tail[-3000:]}")
        self.log.info("%s executed in %.1f s (%s); checks: %s", name, run.seconds,
                      "sandbox" if self.sandbox else "NO SANDBOX", finding["checks"])
        return from_dict(trusted), resources

    def _report(self, finding: dict) -> None:
        if self.report:
            with open(self.report, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(finding) + "\n")
