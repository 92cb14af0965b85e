"""Plumbing of the term test (tests/test_term_on_jupyterhub.py): users, an interpreter they can run, the Hub.

Kept out of the course's code: what a real set-up does is in course_instructor/hub/.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path


def reachable_by(user: str, path: str | os.PathLike) -> bool:
    """Can ``user`` execute ``path`` (every folder above it searchable)?"""
    proc = subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(path)], capture_output=True)
    return proc.returncode == 0


def users_python(user: str, folder: Path) -> str:
    """An interpreter of this environment that ``user`` can run.

    The project's own when its installation is readable by everyone (Debian's
    python3 in CI); else (here: pyenv's Python under /root, 0700) a
    virtual environment on the system's Python of the same version that sees
    this environment's packages and this checkout (a .pth file).
    """
    if reachable_by(user, os.path.realpath(sys.executable)):
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(f"python{version}", path="/usr/bin:/usr/local/bin")
    if not system:
        raise RuntimeError(f"{os.path.realpath(sys.executable)} is not reachable by {user} and there is no "
                           f"system python{version}: install the venv from a system-wide Python")
    folder = Path(folder)
    subprocess.run([system, "-m", "venv", "--without-pip", str(folder)], check=True)
    site = Path(subprocess.run([str(folder / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    ours = sysconfig.get_paths()["purelib"]
    (site / "course-env.pth").write_text(f"import site; site.addsitedir({ours!r})\n", encoding="utf-8")
    py = folder / "bin" / "python"
    # Jupyter finds its extensions' configuration and files under sys.prefix: this environment's
    for sub in ("etc/jupyter", "share/jupyter"):
        (folder / sub).parent.mkdir(parents=True, exist_ok=True)
        (folder / sub).symlink_to(Path(sys.prefix) / sub)
    for script in ("alembic", "jupyter", "nbgrader"):   # nbgrader runs `alembic` from PATH
        s = folder / "bin" / script
        s.write_text(f"#!/bin/sh\nexec {py} -m {script if script != 'jupyter' else 'jupyter_core.command'} \"$@\"\n")
        s.chmod(0o755)
    for p in folder.rglob("*"):
        p.chmod(p.stat().st_mode | 0o044 | (0o011 if p.is_dir() else 0))
    return str(py)


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{tail(log)}")
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s:\n{tail(log)}")


def tail(path: Path | None, n: int = 60) -> str:
    if path is None or not Path(path).exists():
        return "(no log)"
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)       # the Hub stops the users' servers and its proxy
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def kill_user_processes(users: list[str]) -> None:
    """Whatever the users still run (a server the Hub did not stop): killed by pid."""
    import pwd

    uids = set()
    for u in users:
        try:
            uids.add(pwd.getpwnam(u).pw_uid)
        except KeyError:
            pass
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if d.stat().st_uid in uids:
                os.kill(int(d.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass
