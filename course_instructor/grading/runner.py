"""Execute one notebook; runs *inside* the grading sandbox (``python runner.py``).

It is the only file of ``course_instructor`` the sandbox sees (bound alone), so it
imports nothing of the course: the standard library, nbformat and nbclient.

Protocol: a JSON request on stdin ``{"notebook": ..., "cwd": ..., "limits": {...},
"reap_strays": bool}``; one JSON reply on stdout ``{"status": ..., "notebook": ...,
"truncated_cells": [...], "killed_processes": n}``.  Everything else the kernel
or the libraries print goes to stderr (the grader keeps its tail as a log).

The grader trusts nothing of the reply: the student's code runs in the same
sandbox, under the same user id, and could rewrite it.  The grader takes only
the cells' outputs from it, and decides scores from evidence checked outside
(:mod:`course_instructor.grading.verify`).  What this runner adds is robustness for
honest and careless notebooks: each cell's output is cut after a limit (a
10-million-line print does not become a 100 MB notebook), a cell that runs too
long is interrupted (and says so), and processes the kernel starts (a fork
bomb) are killed within a fraction of a second.
"""
from __future__ import annotations

import json
import os
import signal
import sys

TRUNCATION_NOTE = "\n[output cut by the grader: this cell printed more than {limit} bytes]\n"


def _make_client_class():
    from nbclient import NotebookClient

    class CappedClient(NotebookClient):
        """nbclient with a per-cell output budget and stray-process cleanup between cells."""

        cell_output_bytes = 2 << 20
        reap_strays = False

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._spent: dict[int, int] = {}
            self.truncated: set[int] = set()
            self.timed_out: set[int] = set()
            self._cell_index = -1
            self.killed = 0

        def output(self, outs, msg, display_id, cell_index):
            size = len(json.dumps(msg.get("content", {}), default=str))
            spent = self._spent.get(cell_index, 0) + size
            self._spent[cell_index] = spent
            if spent > self.cell_output_bytes:
                if cell_index not in self.truncated:
                    self.truncated.add(cell_index)
                    from nbformat.v4 import new_output
                    outs.append(new_output("stream", name="stdout",
                                           text=TRUNCATION_NOTE.format(limit=self.cell_output_bytes)))
                return None
            return super().output(outs, msg, display_id, cell_index)

        async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
            self._cell_index = cell_index
            try:
                return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
            finally:
                if cell_index in self.timed_out and not any(o.get("output_type") == "error" for o in cell.outputs):
                    # nbclient stops reading the cell's output at the timeout: say so in the cell itself
                    from nbformat.v4 import new_output
                    cell.outputs.append(new_output("error", **self.error_on_timeout))
                if self.reap_strays:
                    self.killed += _kill_strays(self._kernel_pid())

        async def _async_handle_timeout(self, timeout, cell=None):
            self.timed_out.add(self._cell_index)
            return await super()._async_handle_timeout(timeout, cell)

        def start_watchdog(self) -> None:
            """Kill processes the kernel starts (every 0.2 s, once 8 of them live), not only between cells.

            A fork bomb would otherwise keep the sandbox's whole process allowance
            spinning until its cell times out, slowing every other student
            graded at the same time.  Notebooks of this course start at most a short helper.
            """
            import threading
            import time

            def loop():
                while True:
                    pid = self._kernel_pid()
                    if pid is not None:
                        self.killed += _kill_strays(pid, at_least=8)
                    time.sleep(0.2)

            threading.Thread(target=loop, daemon=True).start()

        def _kernel_pid(self) -> int | None:
            try:
                return self.km.provisioner.process.pid
            except AttributeError:
                return None

    return CappedClient


def _live(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"   # a zombie is already dead
    except (OSError, IndexError):
        return False


def _kill_strays(kernel_pid: int | None, at_least: int = 1) -> int:
    """SIGKILL every process of this (private) pid namespace but init, this runner and the kernel.

    Nothing is killed while fewer than ``at_least`` such processes live: the
    watchdog lets a library's short helper process (matplotlib's ``fc-list``)
    finish, and stops a fork bomb.
    """
    keep = {1, os.getpid(), kernel_pid}
    killed = 0
    for _ in range(100):  # a fork bomb forks while we kill: repeat until nothing is left
        strays = [int(n) for n in os.listdir("/proc") if n.isdigit() and int(n) not in keep and _live(int(n))]
        if len(strays) < (at_least if killed == 0 else 1):
            break
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
    return killed


def main() -> int:
    # the reply goes to a private copy of stdout; fd 1 becomes stderr for everything else
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    request = json.loads(sys.stdin.buffer.read())
    limits = request.get("limits", {})
    cwd = request["cwd"]
    os.makedirs(cwd, exist_ok=True)
    os.chdir(cwd)

    import nbformat
    from nbclient.exceptions import DeadKernelError

    nb = nbformat.reads(json.dumps(request["notebook"]), as_version=4)  # sources as strings
    client_cls = _make_client_class()
    client = client_cls(
        nb, timeout=int(limits.get("cell_timeout", 120)), interrupt_on_timeout=True, allow_errors=True,
        kernel_name="python3", resources={"metadata": {"path": cwd}}, record_timing=False,
        extra_arguments=["--HistoryManager.hist_file=:memory:"], store_widget_state=False,
        error_on_timeout={"ename": "CellTimeoutError", "evalue": "",
                          "traceback": [f"CellTimeoutError: the cell ran longer than "
                                        f"{int(limits.get('cell_timeout', 120))} s and was interrupted"]},
    )
    client.cell_output_bytes = int(limits.get("cell_output_bytes", 2 << 20))
    client.reap_strays = bool(request.get("reap_strays"))
    if client.reap_strays:
        client.start_watchdog()
    status = "ok"
    try:
        client.execute()
    except DeadKernelError:
        status = "kernel died"
    except Exception as e:  # the kernel could not start, stopped answering, ...
        status = f"execution stopped: {type(e).__name__}: {str(e)[:200]}"
    reply = {"status": status, "notebook": nb, "truncated_cells": sorted(client.truncated),
             "timed_out_cells": sorted(client.timed_out), "killed_processes": client.killed}
    with os.fdopen(reply_fd, "w", encoding="utf-8") as fh:
        json.dump(reply, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
