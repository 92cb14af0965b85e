"""Wrong answers are caught, right ones in another style are not: every graded exercise, both judges.

For each of the 20 exercises, ``tests/wrong_answers.py`` holds at least three
plausible wrong answers and one correct solution written differently from the
solution notebook's.  Per notebook ONE kernel (``COURSE_GRADING=1``, as in the
grader: live runs are tiny and the hidden tests record evidence) executes the
solution notebook's cells in order.  At each exercise's test cell it runs

* the notebook's own solution: visible part, then hidden part (the expected evidence);
* each variant: its code, the visible part, then the hidden part on its own
  (so the hidden evidence is observed even when the visible part fails);

and then restores the notebook's solution before moving on.

A wrong answer must fail the visible test with an exception whose message is
not empty and names the problem (contains the variant's ``hint``), and its
hidden evidence must differ from the solution's (compared with the grader's own
:func:`course_instructor.grading.verify.same`), or the hidden part must fail.
The second correct solution must pass the visible test and match the evidence.
"""
from __future__ import annotations

import os
import queue
import time
from pathlib import Path

import nbformat
import pytest

import netguard
from wrong_answers import SECOND_CORRECT, WRONG

from course_instructor.grading.sandbox import grading_env
from course_instructor.grading.verify import same
from course_lib.evidence import MIME

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions" / "rlhf_ppo"
NOTEBOOKS = {
    "1_reward_and_data.ipynb": ["ex1", "ex2", "ex3", "ex4"],
    "2_ppo_happy.ipynb": ["ex5", "ex6", "ex7"],
    "3_evaluate_and_pessimistic.ipynb": ["ex8", "ex9", "ex10"],
    "4_inside_ppo.ipynb": ["ex11", "ex12", "ex13", "ex14", "ex15"],
    "5_beyond_ppo.ipynb": ["ex16", "ex17", "ex18", "ex19", "ex20"],
}
NOTEBOOK_OF = {ex: nb for nb, exs in NOTEBOOKS.items() for ex in exs}
CELL_TIMEOUT = 600
#: Slow cells that no exercise's test depends on: live PPO runs, their plots, the step-time comparison.
#: (In the cpu profile nothing after them reads what they make: notebook 3 loads the bundled
#: Pessimistic checkpoint, not its live run's.)  A cell here that a test did need fails that test
#: with a NameError, loudly.
SKIP = {"nb2-code-22", "nb2-code-23", "nb2-code-25", "nb2-code-26",
        "nb3-code-08", "nb3-code-10", "nb3-code-15", "nb3-code-16",
        "nb4-code-24", "nb4-code-26"}
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


def split_test_cell(source: str) -> tuple[str, str]:
    """(visible part, hidden part) of a test cell's source."""
    visible, _, rest = source.partition(HIDDEN_BEGIN)
    hidden = rest.partition(HIDDEN_END)[0]
    return visible, hidden


def _grade_id(cell) -> str:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")


class Kernel:
    """One IPython kernel; :meth:`run` executes code and returns (error or None, evidence list, stdout)."""

    def __init__(self, cwd: Path):
        from jupyter_client import KernelManager

        # one thread: the models are small, and `make test` runs two workers on two cores
        env = netguard.guarded_env({**os.environ, **grading_env(), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=str(cwd), env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def run(self, code: str, timeout: float = CELL_TIMEOUT):
        error, evidence, text = None, [], []

        def hook(msg):
            nonlocal error
            kind, content = msg["msg_type"], msg["content"]
            if kind == "error":
                error = (content.get("ename", ""), content.get("evalue", ""))
            elif kind in ("display_data", "execute_result") and MIME in content.get("data", {}):
                evidence.append(content["data"][MIME])
            elif kind == "stream":
                text.append(content.get("text", ""))

        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=hook, allow_stdin=False)
        if reply["content"].get("status") == "error" and error is None:
            error = (reply["content"].get("ename", ""), reply["content"].get("evalue", ""))
        return error, evidence, "".join(text)

    def close(self):
        try:
            self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=True)


def evidence_matches(expected: list[dict], got: list[dict]) -> bool:
    """``got`` records the same keys as ``expected``, each value the same within the solution's tolerance."""
    if [e["key"] for e in expected] != [g.get("key") for g in got]:
        return False
    return all(same(e["value"], g.get("value"), float(e.get("rtol", 1e-5)), float(e.get("atol", 1e-8)))
               for e, g in zip(expected, got))


def run_notebook(name: str) -> dict:
    """Execute solution notebook ``name`` with every variant of its exercises; the observations per exercise."""
    nb = nbformat.read(SOLUTIONS / name, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code"]
    wanted = NOTEBOOKS[name]
    last = max(i for i, c in enumerate(cells) if _grade_id(c).split("-")[0] in wanted and _grade_id(c).endswith("-tests"))
    results, solutions, seconds = {}, {}, {}
    t0 = time.time()
    kernel = Kernel(SOLUTIONS)
    try:
        for cell in cells[: last + 1]:
            gid = _grade_id(cell)
            ex = gid.split("-")[0]
            if gid in SKIP:
                continue
            if gid.endswith("-solution"):
                solutions[ex] = cell.source
            t1 = time.time()
            if not gid.endswith("-tests"):
                error, _, _ = kernel.run(cell.source)
                assert error is None, f"{name}: cell {gid or cell.source[:60]!r} failed: {error}"
                seconds[gid] = round(time.time() - t1, 1)
                continue
            visible, hidden = split_test_cell(cell.source)
            obs = {}
            v_err, _, _ = kernel.run(visible)
            h_err, expected, _ = kernel.run(hidden)
            assert v_err is None and h_err is None and expected, \
                f"{name}: the solution fails its own test cell {gid}: {v_err or h_err or 'no evidence'}"
            obs["expected"] = expected
            variants = [("second correct", SECOND_CORRECT[ex], None)] + [(w.name, w.code, w.hint) for w in WRONG[ex]]
            for label, code, _hint in variants:
                d_err, _, _ = kernel.run(code)
                assert d_err is None, f"{ex} variant {label!r} does not even define: {d_err}"
                v_err, _, _ = kernel.run(visible)
                h_err, got, _ = kernel.run(hidden)
                obs[label] = {"visible error": v_err, "hidden error": h_err, "evidence": got}
            error, _, _ = kernel.run(solutions[ex])     # restore the notebook's own solution
            assert error is None, error
            results[ex] = obs
            seconds[gid] = round(time.time() - t1, 1)
    finally:
        kernel.close()
    results["_seconds"] = time.time() - t0
    results["_cells"] = seconds
    return results


_RUNS: dict[str, dict] = {}


def runs_of(name: str) -> dict:
    if name not in _RUNS:
        _RUNS[name] = run_notebook(name)
    return _RUNS[name]


def _params():
    return [pytest.param(ex, marks=pytest.mark.xdist_group(f"wrong-answers-{nb}"), id=ex)
            for nb, exs in NOTEBOOKS.items() for ex in exs]


def test_every_exercise_has_three_wrong_answers_and_a_second_solution():
    exercises = [ex for exs in NOTEBOOKS.values() for ex in exs]
    assert exercises == [f"ex{i}" for i in range(1, 21)]
    for ex in exercises:
        assert len(WRONG[ex]) >= 3, f"{ex}: {len(WRONG[ex])} wrong answers"
        assert len({w.name for w in WRONG[ex]}) == len(WRONG[ex]), f"{ex}: two wrong answers share a name"
        assert ex in SECOND_CORRECT, ex
    # the grade ids of the solution notebooks are the ones listed here
    for name, exs in NOTEBOOKS.items():
        nb = nbformat.read(SOLUTIONS / name, as_version=4)
        tests = [_grade_id(c).split("-")[0] for c in nb.cells if _grade_id(c).endswith("-tests")]
        assert tests == exs, (name, tests)


@pytest.mark.slow
@pytest.mark.parametrize("ex", _params())
def test_wrong_answers_fail_the_visible_test_with_a_message_and_the_hidden_evidence(ex):
    obs = runs_of(NOTEBOOK_OF[ex])[ex]
    problems = []
    for w in WRONG[ex]:
        o = obs[w.name]
        err = o["visible error"]
        if err is None:
            problems.append(f"{w.name}: passes the visible test")
        elif not err[1].strip():
            problems.append(f"{w.name}: the visible test fails with a bare {err[0]}")
        elif w.hint not in err[1].lower():
            problems.append(f"{w.name}: the visible test's message does not name the problem ({w.hint!r}): "
                            f"{err[0]}: {err[1][:300]}")
        if o["hidden error"] is None and evidence_matches(obs["expected"], o["evidence"]):
            problems.append(f"{w.name}: the hidden evidence equals the solution's")
    assert not problems, f"{ex}:\n" + "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("ex", _params())
def test_a_second_correct_solution_passes_both(ex):
    o = runs_of(NOTEBOOK_OF[ex])[ex]["second correct"]
    assert o["visible error"] is None, f"{ex}: the visible test rejects a correct solution: {o['visible error']}"
    assert o["hidden error"] is None, f"{ex}: the hidden test fails on a correct solution: {o['hidden error']}"
    assert evidence_matches(runs_of(NOTEBOOK_OF[ex])[ex]["expected"], o["evidence"]), \
        f"{ex}: a correct solution's evidence differs from the notebook solution's"
