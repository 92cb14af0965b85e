"""Plumbing of the term test (tests/test_term_on_jupyterhub.py): users, an interpreter they can run, the Hub.

Kept out of the course's code: what a real set-up does is in course_instructor/hub/.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def reachable_by(user: str, path: str | os.PathLike) -> bool:
    """Can ``user`` execute ``path`` (every folder above it searchable)?"""
    proc = subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(path)], capture_output=True)
    return proc.returncode == 0


def users_python(user: str) -> tuple[str, list[tuple[Path, int]]]:
    """This environment's interpreter, made runnable by ``user``; returns it and the modes to restore.

    In CI the interpreter is Debian's (/usr/bin) and nothing changes.  Where it
    lies under a folder others cannot search (here: pyenv's Python under
    /root, mode 0700), that folder gets search permission (o+x: enter, not
    list) for the test; :func:`restore_modes` puts the old mode back.
    """
    changed: list[tuple[Path, int]] = []
    for target in (os.path.realpath(sys.executable), sys.executable):
        if reachable_by(user, target):
            continue
        for folder in reversed(Path(target).parents):
            mode = folder.stat().st_mode
            if not mode & 0o001:
                changed.append((folder, mode & 0o7777))
                folder.chmod((mode & 0o7777) | 0o001)
    for target in (os.path.realpath(sys.executable), sys.executable):
        if not reachable_by(user, target):
            restore_modes(changed)
            raise RuntimeError(f"{target} is not runnable by {user}: install the environment from a system-wide Python")
    return sys.executable, changed


def restore_modes(changed: list[tuple[Path, int]]) -> None:
    for folder, mode in reversed(changed):
        folder.chmod(mode)


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Wait until ``url`` answers 200.

    Through JupyterHub's proxy an error status is not readiness: the proxy
    answers 404 or 503 from the moment it listens, before the Hub has added
    its own route (a browser sent to the login page then waits on an error
    page).
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
                last = f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except OSError as e:
            last = str(e)
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s (last: {last}):\n{tail(log)}")


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
