"""Plumbing of the browser test (tests/test_browser.py): a private JupyterLab server and a headless Chromium.

Everything here is bounded in time and cleans up after itself:

* :class:`LabServer` starts ``jupyter lab`` from the running interpreter (the
  project's venv) on 127.0.0.1, on a free port, with token auth, no browser of
  its own, and private runtime, config, data, settings and workspace folders
  inside one temporary directory, so neither the user's Jupyter setup nor
  earlier runs change what the test sees.  :meth:`LabServer.stop` shuts the
  kernels down through the REST API, stops the server, and, as a last resort,
  kills by pid any kernel still running from this server's runtime folder.
* :func:`launch_chromium` drives Debian's ``/usr/bin/chromium`` (never a
  downloaded browser) with the background network features switched off and
  every non-loopback request sent to a dead proxy.
* The ``Notebook*`` helpers act on a JupyterLab notebook the way a student
  does (click a cell, press Ctrl+Enter, use the Run menu).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_HINT = ("install Debian's Chromium as root: apt-get install chromium fonts-dejavu-core "
                "(`bash .ci/run` does it)")

CHROMIUM_ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--disable-quic",
    "--disable-dev-shm-usage",  # small /dev/shm in containers
    # anything that is not loopback goes to a closed port (loopback bypasses proxies by default)
    "--proxy-server=http://127.0.0.1:9",
]

def in_ci() -> bool:
    """True when the environment says CI (the variable ``CI`` set to anything but 0/false/no)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str, hint: str = INSTALL_HINT):
    """Skip a test whose tool is missing, but fail it in CI, where ``.ci/run`` installs every tool."""
    import pytest

    suffix = f"; {hint}" if hint else ""
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip){suffix}", pytrace=False)
    pytest.skip(f"{reason}{suffix}")


# cell prompts: "[12]:" once run, "[*]:" while queued or running, "[ ]:" never run
_DONE_PROMPT = re.compile(r"\[\d+\]")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """A JupyterLab server on loopback serving ``root_dir``; ``workdir`` holds its private state."""

    def __init__(self, root_dir: Path, workdir: Path, startup_timeout: float = 90.0, extra_args: tuple = ()):
        self.extra_args = list(extra_args)  # more options of `jupyter lab`
        self.root_dir = Path(root_dir)
        self.workdir = Path(workdir)
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "jupyter-lab.log"
        self.runtime_dir = self.workdir / "runtime"
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self._log = None

    # ---- lifecycle ------------------------------------------------------------
    def _env(self) -> dict:
        env = dict(os.environ)
        for name in ("config", "data", "settings", "workspaces"):
            (self.workdir / name).mkdir(parents=True, exist_ok=True)
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        # Lab settings of the test: no news/update checks (a toast and a request to the internet)
        notif = self.workdir / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notif.parent.mkdir(parents=True, exist_ok=True)
        notif.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}), encoding="utf-8")
        repo = Path(__file__).resolve().parents[1]
        env.update({
            "JUPYTER_RUNTIME_DIR": str(self.runtime_dir),
            "JUPYTER_CONFIG_DIR": str(self.workdir / "config"),
            "JUPYTER_DATA_DIR": str(self.workdir / "data"),
            "JUPYTERLAB_SETTINGS_DIR": str(self.workdir / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(self.workdir / "workspaces"),
            "JUPYTER_PLATFORM_DIRS": "1",
            # the kernel imports this checkout's course_lib, installed or not
            "PYTHONPATH": os.pathsep.join(p for p in (str(repo), env.get("PYTHONPATH", "")) if p),
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
        })
        return env

    def start(self) -> "LabServer":
        cmd = [
            sys.executable, "-m", "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1", f"--port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            "--ServerApp.allow_remote_access=False",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--ServerApp.shutdown_no_activity_timeout=900",  # an orphaned server ends itself
            "--MappingKernelManager.cull_idle_timeout=900",
        ] + (["--allow-root"] if os.geteuid() == 0 else []) + self.extra_args
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.root_dir, env=self._env(), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status", timeout=5)
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.5)
        raise TimeoutError(f"jupyter lab did not answer within {self.startup_timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self.shutdown_kernels()
                self.proc.send_signal(signal.SIGTERM)  # jupyter_server shuts down cleanly on SIGTERM
                try:
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=10)
        finally:
            self._kill_leftover_kernels()
            if self._log is not None:
                self._log.close()
            self.proc = None

    def _kill_leftover_kernels(self) -> None:
        """Kernels run in their own session: kill by pid any whose connection file lies in our runtime dir."""
        marker = str(self.runtime_dir)
        for proc_dir in Path("/proc").glob("[0-9]*"):
            try:
                cmdline = (proc_dir / "cmdline").read_bytes().decode("utf-8", "replace")
            except OSError:
                continue
            if marker in cmdline and "ipykernel" in cmdline:
                try:
                    os.kill(int(proc_dir.name), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    # ---- REST ------------------------------------------------------------------
    def api(self, method: str, path: str, timeout: float = 10):
        req = urllib.request.Request(self.base + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        try:
            for session in self.api("GET", "/api/sessions"):
                self.api("DELETE", f"/api/sessions/{session['id']}", timeout=30)
            for kernel in self.api("GET", "/api/kernels"):
                self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=30)
        except (OSError, urllib.error.URLError, ValueError):
            pass

    def kernel_state(self, notebook_path: str) -> str | None:
        for session in self.api("GET", "/api/sessions"):
            if session.get("path") == notebook_path and session.get("kernel"):
                return session["kernel"].get("execution_state")
        return None

    def lab_url(self, notebook_path: str) -> str:
        # reset: a clean workspace, so tabs (and kernels) of an earlier page are not restored
        return f"{self.base}/lab/tree/{notebook_path}?reset&token={self.token}"


def launch_chromium(playwright):
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, timeout=60_000,
        args=CHROMIUM_ARGS + (["--no-sandbox"] if os.geteuid() == 0 else []),
    )


def wait_until(predicate, timeout: float, what: str, interval: float = 0.5):
    """Poll ``predicate`` until it returns something truthy; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# ---- notebooks, as files ----------------------------------------------------------
def read_cells(path: Path) -> list[dict]:
    return json.loads(Path(path).read_text(encoding="utf-8"))["cells"]


def cell_source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def first_solution_cell(cells: list[dict]) -> int:
    for i, cell in enumerate(cells):
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            return i
    raise AssertionError("no cell with nbgrader metadata solution: true")


def find_cell(cells: list[dict], pattern: str, what: str) -> int:
    """Index of the first code cell whose source matches the regular expression ``pattern``."""
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code" and re.search(pattern, cell_source(cell), re.MULTILINE):
            return i
    raise AssertionError(f"no code cell matches {pattern!r} ({what})")


def defining_cell(cells: list[dict], name: str) -> int:
    """Index of the first code cell that assigns ``name`` at top level (``name = ...``, ``a, name = ...``)."""
    pattern = rf"^(?:\w+\s*,\s*)*{re.escape(name)}\s*(?:,\s*\w+\s*)*=(?!=)"
    return find_cell(cells, pattern, f"defines `{name}`")


def parameters_cell(cells: list[dict]) -> int:
    for i, cell in enumerate(cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return i
    raise AssertionError("no cell tagged 'parameters'")


def error_outputs(cells: list[dict]) -> list[str]:
    """'cell i: ename: evalue' for every error output of a saved notebook."""
    return [f"cell {i}: {out.get('ename')}: {out.get('evalue')}"
            for i, cell in enumerate(cells) for out in cell.get("outputs", [])
            if out.get("output_type") == "error"]


# ---- notebooks, in the browser ------------------------------------------------------
class NotebookPage:
    """A notebook opened in JupyterLab, driven through the UI."""

    def __init__(self, page, server: LabServer, path: str, n_cells: int):
        self.page = page
        self.server = server
        self.path = path  # relative to the server's root_dir, with forward slashes
        self.n_cells = n_cells

    @property
    def notebook(self):
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")

    def cell(self, i: int):
        return self.notebook.locator(".jp-Cell").nth(i)

    def open(self, timeout: float = 90) -> "NotebookPage":
        self.page.goto(self.server.lab_url(self.path), timeout=timeout * 1000)
        self.notebook.locator(".jp-Cell").first.wait_for(state="attached", timeout=timeout * 1000)
        wait_until(lambda: self.notebook.locator(".jp-Cell").count() == self.n_cells, 30,
                   f"the {self.n_cells} cells of {self.path} in the page")
        self.wait_kernel_idle(timeout)
        # fold the file browser away: more notebook in the screenshots
        sidebar_tab = self.page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
        if sidebar_tab.count():
            sidebar_tab.first.click()
        return self

    def wait_kernel_idle(self, timeout: float) -> None:
        """The server says the kernel is idle and the page's kernel status says so too."""
        wait_until(lambda: self.server.kernel_state(self.path) == "idle", timeout,
                   f"the kernel of {self.path} to be idle")
        indicator = self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator")
        wait_until(lambda: indicator.get_attribute("data-status") == "idle", timeout,
                   "the notebook's kernel indicator to show idle")

    def select(self, i: int) -> None:
        """Select cell ``i`` in command mode, as a click on its prompt does."""
        cell = self.cell(i)
        cell.scroll_into_view_if_needed()
        cell.locator(".jp-InputPrompt").click()
        self.page.keyboard.press("Escape")
        wait_until(lambda: "jp-mod-selected" in (cell.get_attribute("class") or ""), 10,
                   f"cell {i} to be selected")

    def prompt(self, i: int) -> str:
        return self.cell(i).locator(".jp-InputPrompt").inner_text().strip()

    def wait_executed(self, indices, timeout: float) -> None:
        indices = list(indices)
        wait_until(lambda: all(_DONE_PROMPT.search(self.prompt(i)) for i in indices), timeout,
                   f"cells {indices} of {self.path} to finish (prompts {[self.prompt(i) for i in indices]})")
        self.wait_kernel_idle(timeout)

    def run_cell(self, i: int, timeout: float) -> None:
        """Run cell ``i`` (Ctrl+Enter), wait for it, and fail with its traceback if it shows one."""
        self.select(i)
        self.page.keyboard.press("Control+Enter")
        self.wait_executed([i], timeout)
        shown = self.cell_tracebacks(i)
        if shown:
            raise AssertionError(f"cell {i} of {self.path} failed:\n" + shown[0][-2000:])

    def run_all_above(self, i: int) -> None:
        """Select cell ``i`` and use Run > Run All Above Selected Cell."""
        self.select(i)
        self.page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        self.page.locator(".lm-Menu-item:visible", has_text="Run All Above Selected Cell").click()

    def insert_code_above(self, i: int, code: str) -> None:
        """Insert a code cell above cell ``i`` (key A in command mode) holding ``code``."""
        self.select(i)
        self.page.keyboard.press("a")
        new = self.cell(i)
        wait_until(lambda: self.notebook.locator(".jp-Cell").count() == self.n_cells + 1, 10, "the new cell")
        self.n_cells += 1
        new.locator(".cm-content").click()
        self.page.keyboard.insert_text(code)  # no key events: no auto-closed brackets
        self.page.keyboard.press("Escape")

    def save(self, timeout: float = 30) -> None:
        self.notebook.click(position={"x": 5, "y": 5})
        self.page.keyboard.press("Escape")
        self.page.keyboard.press("Control+s")
        panel = self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        tab_dirty = self.page.locator(".lm-TabBar-tab.lm-mod-current.jp-mod-dirty")
        wait_until(lambda: tab_dirty.count() == 0 and panel.count() == 1, timeout, f"{self.path} to be saved")

    def stderr_tracebacks(self) -> list[str]:
        """Texts of the tracebacks shown in the page (an error output renders as stderr with a traceback)."""
        outs = self.notebook.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
        # textContent, not innerText: off-screen cells (content-visibility) have no rendered text
        return [t for t in outs.all_text_contents() if "Traceback" in t]

    def cell_tracebacks(self, i: int) -> list[str]:
        outs = self.cell(i).locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
        return [t for t in outs.all_text_contents() if "Traceback" in t]
