"""Execute one notebook; runs *inside* the grading sandbox (``python runner.py``).

It is the only file of ``course_instructor`` the sandbox sees (bound alone), so it
imports nothing of the course: the standard library, nbformat and nbclient.

Protocol: a JSON request on stdin ``{"notebook": ..., "cwd": ..., "limits": {...},
"reap_strays": bool}``; one JSON reply on stdout ``{"status": ..., "notebook": ...,
"truncated_cells": [...], "timed_out_cells": [...], "restarted_after": [...],
"late_display_updates": [...], "hooks_reset": {cell index: [what, ...]},
"killed_processes": n, "dumpable": bool}``.  Everything else the kernel or the
libraries print goes to stderr (the grader keeps its tail as a log).

The grader trusts nothing of the reply: the student's code runs in the same
sandbox, under the same user id, and could rewrite it.  The grader takes only
the cells' outputs from it, and decides scores from evidence checked outside
(:mod:`course_instructor.grading.verify`).  What this runner adds is robustness for
honest and careless notebooks, and fewer ways for a notebook to reach into the
test cells:

* Output: each cell's output is cut after a limit (a 10-million-line print
  does not become a 100 MB notebook).
* Time: a cell that runs too long is interrupted (SIGINT) and says so
  (``CellTimeoutError``).  A cell that ignores the interrupt (its own SIGINT
  handler, a loop that swallows ``KeyboardInterrupt``, C code that never
  checks) is killed with its kernel ``interrupt_grace`` seconds later, and a
  fresh kernel is started: that cell fails, and **the cells after it run in the
  fresh kernel**, where everything the earlier cells defined is gone (they
  fail on missing names unless they stand alone).  No cell holds the sandbox
  longer than its timeout plus the grace.
* Processes: processes the kernel starts (a fork bomb) are killed within a
  fraction of a second (the sandbox also has a total memory limit, enforced
  outside, see :mod:`.sandbox`).
* Display ids: an ``update_display_data`` (or a display with an id) changes
  only outputs of the cell now running.  A student function called in a test
  cell can reserve a display id there (``display(..., display_id=True)``) and a
  later cell could rewrite that output with ``update_display``: updates of
  other cells' outputs are ignored, and reported where the target is a graded
  cell (``late_display_updates``: the graded cells whose outputs a later cell
  tried to change; an honest progress display updated from a later cell just
  stops changing, unreported).  Evidence outputs (MIME
  ``application/vnd.course-lib.evidence+json``) are never registered under a
  display id and no update can add that MIME type: evidence comes only from
  display messages sent while its cell ran.
* Kernel hooks: before each test cell (nbgrader metadata ``grade: true,
  solution: false``) a silent request (``silent=True, store_history=False``)
  calls a reset function that puts back IPython's defaults, captured by a
  first silent request right after the kernel started (before any student
  code): input transformers (cleanup, line, token, post), AST transformers,
  event callbacks (``pre_execute``, ``pre_run_cell``, ``post_run_cell``,
  ``post_execute``, ...), ``sys.settrace``/``sys.setprofile`` and
  ``threading.settrace``/``setprofile``, ``sys.displayhook`` and IPython's
  display hook, trap, publisher and formatter, ``sys.stdout``/``stderr``, and
  instance attributes that hide a method of the shell (``ip.run_cell = ...``,
  ``ip.transform_cell = ...``).  How errors are *shown* (``set_custom_exc``,
  ``showtraceback``) is left alone on purpose: errors do not decide scores,
  and a test cell whose check fails while it shows no error is flagged
  (``check-failed-silently``).
  The reset function lives in a closure with its own copy of the builtins,
  under an unguessable name in IPython's hidden namespace, and is called from
  ``user_expressions`` (evaluated outside ``run_cell``, its transformers and
  events).  Its answer carries a secret only the closure knows; what it had to
  reset is reported (``hooks_reset``), and ``reset-failed`` when no valid answer
  came (the student's code broke the request itself).  Transformers and event
  callbacks whose code lives in the read-only Python installation (matplotlib
  registers a ``post_execute`` draw when it first plots) are removed too, but
  not reported: honest notebooks raise no flag.
* The runner itself: it is made non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``) at
  its start, so the kernel, under the same user id, can neither ptrace it nor
  read or write its ``/proc/<pid>/mem``.

What remains (documented residual risks): student code that patches IPython's
or ipykernel's *classes* (``type(get_ipython()).run_cell = ...``), the kernel's
message handlers, the builtins the reset request itself goes through, or that
finds the reset function (it is reachable, e.g. through ``gc``) and replaces or
reads it, can still interfere with a test cell; so can a thread the student's
code left running, which may put a hook back between the reset and the test
cell (the reset is a snapshot, not a lock); a global trace function sees
the reset function's own first frame; a Jupyter Output widget (comm
messages) can capture a test cell's outputs into the widget's state (the
evidence is then missing: the cell fails, it is not forged); the kernel's own
session can be patched to forge replies.  None of that forges a score: the grader
compares the evidence's *values* with the solution's outside the sandbox, which
needs the work done; these defences make the test cells run as written and
leave traces for a human.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import sys

TRUNCATION_NOTE = "\n[output cut by the grader: this cell printed more than {limit} bytes]\n"
EVIDENCE_MIME = "application/vnd.course-lib.evidence+json"   # course_lib.evidence.MIME (not importable here)

#: Kernel-side source of the hook reset (see the module docstring).  ``make(ip, secret)`` runs once,
#: right after the kernel started, in a namespace of its own with a private copy of the builtins; it
#: captures IPython's defaults and returns ``reset()``, which restores them and answers
#: ``"<secret>|what,what,..."``.
KERNEL_RESET_SOURCE = r"""
def make(ip, secret):
    import importlib.util, os, site, sys, threading
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()}
    spec = importlib.util.find_spec("course_lib")
    if spec is not None:
        roots.update(spec.submodule_search_locations or [])
    roots = tuple(os.path.realpath(r) + os.sep for r in roots)
    modules, realpath = sys.modules, os.path.realpath

    def from_library(obj):                 # defined in the read-only Python installation (matplotlib, ...)
        fn = getattr(obj, "__func__", obj)
        code = getattr(fn, "__code__", None)
        origin = code.co_filename if code is not None else \
            getattr(modules.get(getattr(type(obj), "__module__", ""), None), "__file__", None)
        return isinstance(origin, str) and realpath(origin).startswith(roots)

    def added_by_student(current, items):
        try:
            return any(not any(x is y for y in items) and not from_library(x) for x in current)
        except Exception:
            return True

    settrace, setprofile, gettrace, getprofile = sys.settrace, sys.setprofile, sys.gettrace, sys.getprofile
    th_settrace, th_setprofile = threading.settrace, threading.setprofile
    shell_cls = type(ip)
    mgr = ip.input_transformer_manager
    events = ip.events
    callbacks = events.callbacks
    trap = ip.display_trap
    objects = [
        ("input_transformers", ip, "input_transformer_manager", mgr),
        ("events", ip, "events", events), ("events", events, "callbacks", callbacks),
        ("displayhook", sys, "displayhook", sys.displayhook), ("displayhook", ip, "displayhook", ip.displayhook),
        ("displayhook", ip, "display_trap", trap), ("displayhook", trap, "hook", trap.hook),
        ("display_pub", ip, "display_pub", ip.display_pub),
        ("display_formatter", ip, "display_formatter", ip.display_formatter),
        ("sys.stdout", sys, "stdout", sys.stdout), ("sys.stderr", sys, "stderr", sys.stderr),
        ("sys.settrace", sys, "settrace", settrace), ("sys.setprofile", sys, "setprofile", setprofile),
        ("threading.settrace", threading, "settrace", th_settrace),
        ("threading.setprofile", threading, "setprofile", th_setprofile),
    ]
    lists = [(what, owner, attr, tuple(getattr(owner, attr))) for what, owner, attr in (
        ("input_transformers", mgr, "cleanup_transforms"), ("input_transformers", mgr, "line_transforms"),
        ("input_transformers", mgr, "token_transformers"), ("input_transformers", ip, "input_transformers_post"),
        ("ast_transformers", ip, "ast_transformers"))]
    saved_callbacks = {name: tuple(cbs) for name, cbs in callbacks.items()}
    instance = dict(vars(ip))
    # how errors are shown is left alone: errors do not decide scores (the evidence does), and a test
    # cell that fails while showing no error is itself flagged (check-failed-silently)
    error_display = {"CustomTB", "showtraceback", "_showtraceback", "showsyntaxerror", "showindentationerror",
                     "set_custom_exc", "excepthook"}

    def same(current, items):
        return type(current) is list and len(current) == len(items) and all(a is b for a, b in zip(current, items))

    def reset():
        done = []

        def note(what):
            if what not in done:
                done.append(what)

        if gettrace() is not None:
            settrace(None)
            note("sys.settrace")
        if getprofile() is not None:
            setprofile(None)
            note("sys.setprofile")
        if getattr(threading, "_trace_hook", None) is not None:
            th_settrace(None)
            note("threading.settrace")
        if getattr(threading, "_profile_hook", None) is not None:
            th_setprofile(None)
            note("threading.setprofile")
        for what, owner, attr, value in objects:
            try:
                if getattr(owner, attr) is not value:
                    setattr(owner, attr, value)
                    note(what)
            except Exception:
                note(what + "-unrestorable")
        for what, owner, attr, items in lists:
            try:
                current = getattr(owner, attr)
                if not same(current, items):
                    student = type(current) is not list or added_by_student(current, items) or len(current) < len(items)
                    if type(current) is list:
                        current[:] = items
                    if not same(getattr(owner, attr), items):
                        setattr(owner, attr, list(items))
                    if student:
                        note(what)
            except Exception:
                note(what + "-unrestorable")
        for name, items in saved_callbacks.items():
            try:
                current = callbacks.get(name)
                if not same(current, items):
                    student = type(current) is not list or added_by_student(current, items) or len(current) < len(items)
                    callbacks[name] = list(items)
                    if student:                    # a library's own callback is removed, not reported
                        note("events." + name)
            except Exception:
                note("events-unrestorable")
        for name in set(vars(ip)) | set(instance):
            try:
                if name in error_display or not callable(getattr(shell_cls, name, None)):
                    continue                       # not a method of the shell's class
                if name not in instance:
                    if name in vars(ip):
                        delattr(ip, name)          # ip.run_cell = ... hides the method
                        note("ip." + name)
                elif vars(ip).get(name) is not instance[name]:
                    setattr(ip, name, instance[name])
                    note("ip." + name)
            except Exception:
                note("ip-unrestorable")
        return secret + "|" + ",".join(done)

    return reset
"""


def _make_client_class():
    import asyncio
    from queue import Empty
    from time import monotonic

    from nbclient import NotebookClient
    from nbclient.util import ensure_async

    class CappedClient(NotebookClient):
        """nbclient with output budgets, timeouts that end, contained display ids and hook resets."""

        cell_output_bytes = 2 << 20
        reap_strays = False
        interrupt_grace = 5.0        # seconds a timed-out cell has to stop after the interrupt
        reset_timeout = 10.0         # seconds the silent hook reset may take

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._spent: dict[int, int] = {}
            self.truncated: set[int] = set()
            self.timed_out: set[int] = set()
            self.restarted_after: list[int] = []           # cells after which the kernel was replaced
            self.late_updates: set[int] = set()            # cells whose outputs a later cell tried to update
            self.hooks_reset: dict[int, list[str]] = {}
            self._cell_index = -1
            self.killed = 0
            self._reset_name = "_course_grader_reset_" + secrets.token_hex(12)
            self._reset_secret = secrets.token_hex(24)
            self._reset_installed = False

        # ---- output ------------------------------------------------------------------------
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
            data = msg.get("content", {}).get("data")
            if isinstance(data, dict) and EVIDENCE_MIME in data:
                display_id = None            # evidence is never registered for later updates
            return super().output(outs, msg, display_id, cell_index)

        def _update_display_id(self, display_id, msg):
            """Apply a display update only to outputs of the cell now running; report the rest."""
            mapping = self._display_id_map.get(display_id)
            if not mapping:
                return
            others = [c for c, indices in mapping.items() if c != self._cell_index and indices]
            # ignored for every other cell; reported where it matters: cells nbgrader grades
            self.late_updates.update(c for c in others if c < len(self.nb.cells) and _is_graded(self.nb.cells[c]))
            own = mapping.get(self._cell_index)
            if not own:
                return
            content = msg.get("content", {})
            data = content.get("data")
            if isinstance(data, dict) and EVIDENCE_MIME in data:   # an update never brings evidence
                content = {**content, "data": {k: v for k, v in data.items() if k != EVIDENCE_MIME}}
            msg = {**msg, "header": dict(msg.get("header", {})), "content": content}
            self._display_id_map[display_id] = {self._cell_index: own}
            try:
                super()._update_display_id(display_id, msg)
            finally:
                self._display_id_map[display_id] = mapping

        # ---- cells ---------------------------------------------------------------------------
        async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
            self._cell_index = cell_index
            if (cell.cell_type == "code" and cell.source.strip() and _is_test_cell(cell)
                    and self.kc is not None):
                what = await self._reset_hooks()
                if what:
                    self.hooks_reset[cell_index] = what
            try:
                return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
            finally:
                if cell_index in self.timed_out and not any(o.get("output_type") == "error" for o in cell.outputs):
                    # nbclient stops reading the cell's output at the timeout: say so in the cell itself
                    from nbformat.v4 import new_output
                    error = dict(self.error_on_timeout)
                    if cell_index in self.restarted_after:
                        error["traceback"] = [*error.get("traceback", []),
                                              "The cell did not stop when interrupted: it was killed with its "
                                              "kernel, and the cells after it run in a fresh kernel."]
                    cell.outputs.append(new_output("error", **error))
                if self.reap_strays:
                    self.killed += _kill_strays(self._kernel_pid())

        async def _async_poll_for_reply(self, msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive):
            """nbclient's loop, but a timed-out cell that ignores the interrupt ends with its kernel."""
            reply = await self._shell_reply(msg_id, timeout)
            if reply is None:                        # the cell's time is up
                self.timed_out.add(self._cell_index)
                task_poll_kernel_alive.cancel()
                await self._async_check_alive()      # a dead kernel: DeadKernelError, as nbclient does
                self.log.error("Timeout waiting for execute reply (%is): interrupting the kernel", timeout)
                await ensure_async(self.km.interrupt_kernel())
                grace_end = monotonic() + self.interrupt_grace
                reply = await self._shell_reply(msg_id, self.interrupt_grace)
                if reply is None:
                    self.log.error("the cell ignored the interrupt: replacing its kernel")
                    task_poll_output_msg.cancel()
                    await self._replace_kernel()
                    self.restarted_after.append(self._cell_index)
                    return {"content": {**self.error_on_timeout, "status": "error"},
                            "parent_header": {"msg_id": msg_id}, "header": {"msg_type": "execute_reply"},
                            "msg_type": "execute_reply", "metadata": {}}
                wait = max(1.0, grace_end - monotonic())
            else:
                wait = self.iopub_timeout
            try:
                await asyncio.wait_for(asyncio.shield(task_poll_output_msg), wait)
            except (asyncio.TimeoutError, Empty):
                self.log.warning("Timeout waiting for IOPub output")
                task_poll_output_msg.cancel()     # not left reading the next cell's messages
            task_poll_kernel_alive.cancel()
            return reply

        async def _shell_reply(self, msg_id, timeout):
            """The shell reply to ``msg_id``, or None after ``timeout`` seconds (None: no limit)."""
            deadline = None if timeout is None else monotonic() + timeout
            while True:
                remaining = None if deadline is None else max(0.0, deadline - monotonic())
                try:
                    msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=remaining))
                except Empty:
                    return None
                if msg.get("parent_header", {}).get("msg_id") == msg_id:
                    return msg

        async def _replace_kernel(self):
            """Kill the kernel (its whole process group) and start a fresh one."""
            try:
                await ensure_async(self.kc.stop_channels())
            except Exception:
                pass
            try:
                await ensure_async(self.km.shutdown_kernel(now=True))
            except Exception as e:
                self.log.error("killing the kernel: %s", e)
            self.kc = None
            self.km = self.create_kernel_manager()
            self._display_id_map = {}
            await self.async_start_new_kernel()
            await self.async_start_new_kernel_client()

        # ---- hook reset ---------------------------------------------------------------------
        async def async_start_new_kernel_client(self):
            kc = await super().async_start_new_kernel_client()
            self._reset_installed = False
            install = (f"(lambda ip, g: (exec({KERNEL_RESET_SOURCE!r}, g), "
                       f"ip.user_ns.__setitem__({self._reset_name!r}, g['make'](ip, {self._reset_secret!r})), "
                       f"ip.user_ns_hidden.__setitem__({self._reset_name!r}, ip.user_ns[{self._reset_name!r}]), "
                       f"None)[-1])(get_ipython(), {{'__builtins__': dict(vars(__import__('builtins'))), "
                       f"'__name__': 'course_grader_reset'}})")
            what = await self._silent(install)
            self._reset_installed = what == []
            if not self._reset_installed:
                self.log.error("the hook reset could not be installed: %s", what)
            return kc

        async def _reset_hooks(self) -> list[str]:
            if not self._reset_installed:
                return ["reset-unavailable"]
            what = await self._silent()
            return ["reset-failed"] if what is None else what

        async def _silent(self, install: str | None = None) -> list[str] | None:
            """A silent request that calls the reset function; what it reset, or None without a valid answer.

            The work is done in ``user_expressions`` (evaluated by IPython outside ``run_cell``: no
            transformers, no cell events, no display trap), after ``install`` (one expression) if given.
            """
            expressions = {"i": install} if install else {}
            expressions["r"] = f"{self._reset_name}()"
            msg_id = await ensure_async(self.kc.execute(
                "", silent=True, store_history=False, user_expressions=expressions,
                allow_stdin=False, stop_on_error=False))
            reply = await self._shell_reply(msg_id, self.reset_timeout)
            if reply is None:
                # the student's hooks hang the request: treat it as a cell that ignores the interrupt
                await ensure_async(self.km.interrupt_kernel())
                if await self._shell_reply(msg_id, self.interrupt_grace) is None:
                    await self._replace_kernel()
                    self.restarted_after.append(self._cell_index)
                return None
            try:
                text = reply["content"]["user_expressions"]["r"]["data"]["text/plain"]
            except (KeyError, TypeError):
                return None
            text = str(text).strip().strip("'\"")
            prefix = self._reset_secret + "|"
            if not text.startswith(prefix):
                return None
            return [w for w in text[len(prefix):].split(",") if w][:50]

        # ---- processes ----------------------------------------------------------------------
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


def _is_test_cell(cell) -> bool:
    """A hidden/visible test cell of nbgrader: graded, not a solution (its source comes from the gradebook)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return isinstance(meta, dict) and meta.get("grade") is True and not meta.get("solution", False)


def _is_graded(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return isinstance(meta, dict) and meta.get("grade") is True


def _not_dumpable() -> bool:
    """prctl(PR_SET_DUMPABLE, 0): processes of the same uid can no longer ptrace us or open /proc/<pid>/mem."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(4, 0, 0, 0, 0) == 0          # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        return False


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
    protected = _not_dumpable()
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
             "timed_out_cells": sorted(client.timed_out), "restarted_after": client.restarted_after,
             "late_display_updates": sorted(client.late_updates),
             "hooks_reset": {str(k): v for k, v in sorted(client.hooks_reset.items())},
             "killed_processes": client.killed, "dumpable": not protected}
    with os.fdopen(reply_fd, "w", encoding="utf-8") as fh:
        json.dump(reply, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
