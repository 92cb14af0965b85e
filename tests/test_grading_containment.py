"""Containment of the grading sandbox and runner (issue 22): time, memory, display ids, kernel hooks.

Each sandbox test starts a real sandbox (bubblewrap) with a tiny notebook that
carries nbgrader metadata where it matters; a kernel start costs a few seconds.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from course_instructor.grading import sandbox

MIME = "application/vnd.course-lib.evidence+json"
TEST = {"nbgrader": {"grade": True, "solution": False, "locked": True, "grade_id": "test_answer", "points": 1,
                     "schema_version": 3}}
SOLUTION = {"nbgrader": {"grade": False, "solution": True, "locked": False, "grade_id": "answer",
                         "schema_version": 3}}


def _nb(*cells) -> dict:
    """Code cells from sources or (source, metadata) pairs."""
    out = []
    for i, cell in enumerate(cells):
        source, meta = (cell, {}) if isinstance(cell, str) else cell
        out.append({"cell_type": "code", "id": f"c{i}", "metadata": json.loads(json.dumps(meta)),
                    "source": textwrap.dedent(source).strip(), "outputs": [], "execution_count": None})
    return {"nbformat": 4, "nbformat_minor": 5, "cells": out,
            "metadata": {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}}


def _text(cell: dict) -> str:
    parts = []
    for o in cell["outputs"]:
        if o["output_type"] == "stream":
            parts.append(o["text"])
        elif o["output_type"] == "error":
            parts.append(f"{o['ename']}: {o['evalue']} {' '.join(o.get('traceback', []))}\n")
        elif "text/plain" in o.get("data", {}):
            parts.append(str(o["data"]["text/plain"]) + "\n")
    return "".join(parts)


def _evidence(cell: dict) -> list:
    return [o["data"][MIME] for o in cell["outputs"] if MIME in o.get("data", {})]


# ---- time: a cell that ignores the interrupt -----------------------------------------------------
def test_a_cell_that_ignores_the_interrupt_is_killed_and_fails_alone():
    nb = _nb("x = 1\nprint('x set')",
             "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
             "print('fresh kernel:', 'x' not in globals())",
             ("print('test cell', 2 + 2)", TEST))
    limits = sandbox.Limits(cell_timeout=5, wall_seconds=300)
    t0 = time.monotonic()
    run = sandbox.execute_notebook(nb, limits=limits)
    seconds = time.monotonic() - t0
    cells = run.notebook["cells"]
    assert run.status == "ok", run.log_tail
    # two kernel starts + 5 s timeout + 5 s grace: far from the 300 s this notebook could have held
    assert seconds < limits.cell_timeout + 20, seconds
    assert _text(cells[0]) == "x set\n"                              # the honest cell before kept its output
    assert "CellTimeoutError" in _text(cells[1]) and "fresh kernel" in _text(cells[1])
    assert run.timed_out_cells == [1] and run.restarted_after == [1]
    assert _text(cells[2]) == "fresh kernel: True\n"                 # later cells run, in a new kernel
    assert _text(cells[3]) == "test cell 4\n" and run.hooks_reset == {}   # the fresh kernel got its reset too


def test_a_cell_that_honours_the_interrupt_keeps_its_kernel():
    nb = _nb("x = 1", "import time\ntime.sleep(60)", "print('x' in globals())")
    run = sandbox.execute_notebook(nb, limits=sandbox.Limits(cell_timeout=3, wall_seconds=120))
    cells = run.notebook["cells"]
    assert run.timed_out_cells == [1] and run.restarted_after == []
    assert "KeyboardInterrupt" in _text(cells[1]) or "CellTimeoutError" in _text(cells[1])
    assert _text(cells[2]) == "True\n"


# ---- memory of the whole sandbox ------------------------------------------------------------------
def _available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


FORK_HELPERS = """
import os, time
t0 = time.monotonic()
pids = []
for i in range(7):
    pid = os.fork()
    if pid == 0:
        try:
            block = b'\\x01' * (1536 << 20)       # 1.5 GB each, touched
            time.sleep(2)
        finally:
            os._exit(0)
    pids.append(pid)
status = [os.waitpid(p, 0)[1] for p in pids]
killed = sum(os.WIFSIGNALED(s) and os.WTERMSIG(s) == 9 for s in status)
print('killed', killed, 'of 7 in', round(time.monotonic() - t0), 's')
"""


@pytest.mark.skipif(_available_bytes() < 6 << 30, reason="needs 6 GB of free memory (the fallback may overshoot)")
def test_helpers_that_together_exceed_the_sandbox_memory_are_killed():
    limits = sandbox.Limits(cell_timeout=90, wall_seconds=300, total_memory_bytes=3 << 30)
    run = sandbox.execute_notebook(_nb("x = 1", FORK_HELPERS, "print('kernel alive', x)"), limits=limits)
    cells = run.notebook["cells"]
    memory = run.memory
    print("memory:", memory, "cell:", _text(cells[1]).strip())
    assert memory["mechanism"] in ("cgroup-v1", "cgroup-v2", "systemd-scope", "watchdog")
    assert memory["limit_bytes"] == 3 << 30 and memory["oom_kills"] >= 5
    words = _text(cells[1]).split()
    assert words[0] == "killed" and int(words[1]) >= 5 and int(words[-2]) < 60      # within seconds
    assert _text(cells[2]) == "kernel alive 1\n"                     # the largest processes went, not the kernel
    if memory["mechanism"].startswith("cgroup"):
        assert memory["peak_bytes"] <= 3 << 30
        root = sandbox._cgroup_mounts()[0 if memory["mechanism"] == "cgroup-v1" else 1] / "course-grading"
        assert not [p for p in root.iterdir() if p.is_dir() and f"-{os.getpid()}-" in p.name]   # removed


def test_the_mechanism_in_force_is_reported():
    text = sandbox.memory_mechanism(sandbox.Limits(total_memory_bytes=6 << 30))
    assert text.startswith("6.0 GiB per sandbox")
    if os.geteuid() == 0 and sandbox._cgroup_mounts()[0] is not None:
        assert "cgroup v1" in text                                   # this machine: root, cgroup v1 memory
        stale = sandbox._cgroup_mounts()[0] / "course-grading" / "uid1-999999999-1"   # its grader was killed
        stale.mkdir()
        sandbox.memory_mechanism()
        assert not stale.exists()                                    # swept by the next grader
    forced = sandbox.MemoryGuard(1 << 30, "test", prefer="watchdog")
    assert forced.mechanism == "watchdog" and forced.wrap(["true"]) == ["true"]
    assert forced.finish()["mechanism"] == "watchdog"


ALLOCATORS = """
import os, sys, time
for i in range(4):
    if os.fork() == 0:
        chunks = []
        for _ in range(12):                       # 12 x 50 MB = 600 MB, touched, over ~1 s
            chunks.append(b'\\x01' * (50 << 20))
            time.sleep(0.08)
        time.sleep(5)
        os._exit(0)
results = [os.wait()[1] for _ in range(4)]
print(sum(os.WIFSIGNALED(s) for s in results), flush=True)
"""


def test_the_watchdog_sums_a_process_tree_and_kills_the_largest():
    """The fallback on its own: 4 children of 600 MB each under a 1 GB limit for the whole tree."""
    proc = subprocess.Popen([sys.executable, "-c", ALLOCATORS], stdout=subprocess.PIPE, text=True)
    dog = sandbox.MemoryWatchdog(proc.pid, 1 << 30, interval=0.1)
    dog.start()
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        dog.stop()
    print("watchdog: peak", dog.peak, "kills", dog.kills, "children killed", out.strip())
    assert int(out.strip()) >= 2                      # at most one child's 600 MB fits with the others growing
    assert dog.kills >= 2
    assert dog.peak < (1 << 30) + (400 << 20)         # polled 10 times a second: a short overshoot at most
    assert proc.pid in sandbox._descendants(os.getpid()) or proc.poll() is not None


# ---- evidence only from the test cell, while it runs ------------------------------------------------
DISPLAY_ATTACK = [
    ("""
     import matplotlib.pyplot as plt, torch      # an honest notebook's imports: no hook is reported for them
     plt.plot([1, 2])                            # (matplotlib registers a post_execute callback: removed, unreported)
     from IPython.display import display, update_display
     def answer(x):
         display({'text/plain': 'placeholder'}, raw=True, display_id='grab')
         global HANDLE
         HANDLE = display({'text/plain': 'second placeholder'}, raw=True, display_id=True)
         return x * 2
     """, SOLUTION),
    ("""
     from course_lib.evidence import record
     record('answer', answer(3))
     """, TEST),
    """
    forged = {'key': 'answer', 'value': 999, 'rtol': 1e-05, 'atol': 1e-08}
    update_display({'application/vnd.course-lib.evidence+json': forged, 'text/plain': 'changed'}, raw=True,
                   display_id='grab')
    HANDLE.update({'application/vnd.course-lib.evidence+json': forged, 'text/plain': 'changed'}, raw=True)
    """,
    """
    h = display({'text/plain': 'own 1'}, raw=True, display_id=True)
    h.update({'text/plain': 'own 2', 'application/vnd.course-lib.evidence+json': {'key': 'x', 'value': 1}}, raw=True)
    """,
    """
    h.update({'text/plain': 'own 3'}, raw=True)      # a later cell, an ungraded target: ignored, not reported
    import os
    try:
        open(f'/proc/{os.getppid()}/mem', 'rb').read(1)
        print('runner memory readable')
    except OSError as e:
        print('runner protected', type(e).__name__)
    """,
]


def test_display_updates_from_later_cells_do_not_change_a_test_cell():
    run = sandbox.execute_notebook(_nb(*DISPLAY_ATTACK), limits=sandbox.Limits(cell_timeout=120, wall_seconds=300))
    assert run.status == "ok", run.log_tail
    cells = run.notebook["cells"]
    test = cells[1]
    assert _text(test) == "placeholder\nsecond placeholder\n"      # untouched by cell 2's updates
    assert [e["value"] for e in _evidence(test)] == [6]              # the honest evidence, once
    assert run.late_display_updates == [1]
    assert "changed" not in json.dumps(test)
    own = cells[3]["outputs"]                                         # a cell may still update its own outputs...
    assert own[0]["data"]["text/plain"] == "own 2" and MIME not in own[0]["data"]   # ...but never into evidence
    # (cell 4's update of cell 3 was ignored; only graded cells are reported)
    assert _text(cells[4]).startswith("runner protected")
    assert run.hooks_reset == {}                                      # honest imports reset nothing


HOOK_ATTACK = [
    ("""
     import ast, sys, threading
     def answer(x):
         return x * 2
     def cheat(x):
         return 1000
     class Shift(ast.NodeTransformer):        # every literal 3 becomes 4
         def visit_Constant(self, node):
             return ast.copy_location(ast.Constant(4), node) if node.value == 3 else node
     ip = get_ipython()
     ip.ast_transformers.append(Shift())
     ip.input_transformers_cleanup.append(lambda lines: [l.replace('answer(', 'cheat(') for l in lines])
     ip.events.register('pre_run_cell', lambda info: print('hook saw the cell'))
     _transform = ip.transform_cell
     ip.transform_cell = lambda cell: _transform(cell.replace('answer(', 'cheat('))
     threading.settrace(lambda *a: None)
     sys.settrace(lambda *a: None)
     """, SOLUTION),
    "print(3, answer(3))",
    ("""
     from course_lib.evidence import record
     record('answer', answer(3))
     print(3)
     """, TEST),
    "print(3, answer(3))",
]


def test_kernel_hooks_set_by_student_code_are_reset_before_a_test_cell():
    run = sandbox.execute_notebook(_nb(*HOOK_ATTACK), limits=sandbox.Limits(cell_timeout=120, wall_seconds=300))
    assert run.status == "ok", run.log_tail
    cells = run.notebook["cells"]
    assert _text(cells[1]) == "hook saw the cell\n4 1000\n"          # the hooks were live in the student's cells
    assert _text(cells[2]) == "3\n"                                   # the test cell ran as written
    assert [e["value"] for e in _evidence(cells[2])] == [6]
    assert _text(cells[3]) == "3 6\n"                                 # and they stay off afterwards
    reset = run.hooks_reset
    print("hooks_reset:", reset)
    assert list(reset) == [2], reset
    for what in ("ast_transformers", "input_transformers", "events.pre_run_cell", "sys.settrace",
                 "threading.settrace", "ip.transform_cell"):
        assert what in reset[2], reset


def test_a_reset_the_student_breaks_is_reported():
    nb = _nb(("""
              ip = get_ipython()
              def broken(*a, **k):
                  raise RuntimeError('no')
              ip.transform_cell = broken
              """, SOLUTION),
             ("print('test')", TEST))
    run = sandbox.execute_notebook(nb, limits=sandbox.Limits(cell_timeout=60, wall_seconds=200))
    # the reset runs in user_expressions, after the (empty) code: a transform_cell that raises only
    # breaks the reset request itself, which is reported; nothing the student did goes unnoticed
    print("hooks_reset:", run.hooks_reset)
    assert run.hooks_reset.get(1) in (["reset-failed"], ["ip.transform_cell"]), run.hooks_reset
