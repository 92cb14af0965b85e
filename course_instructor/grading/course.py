"""The course folder as nbgrader sees it, and running nbgrader on it.

Everything here runs in the instructor's (trusted) process.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ASSIGNMENT = "rlhf_ppo"
REPO_ROOT = Path(__file__).resolve().parent.parent.parent


class GradingError(RuntimeError):
    """A step of release/autograde failed; the message says which and why."""


def default_course_dir() -> Path:
    """The repository root (where ``nbgrader_config.py`` lives)."""
    return REPO_ROOT


@dataclass
class Course:
    """Where a course's folders are, read from its ``nbgrader_config.py``."""

    root: Path
    source: Path
    release: Path
    submitted: Path
    autograded: Path
    feedback: Path
    db_url: str
    course_id: str

    @classmethod
    def load(cls, root: str | os.PathLike) -> "Course":
        from traitlets.config.loader import PyFileConfigLoader

        root = Path(root).resolve()
        cfg_file = root / "nbgrader_config.py"
        if not cfg_file.is_file():
            raise GradingError(f"no nbgrader_config.py in {root}: pass --course-dir <the course repository>")
        cfg = PyFileConfigLoader(cfg_file.name, path=str(root)).load_config()
        cd = cfg.get("CourseDirectory", {})

        def folder(key: str, default: str) -> Path:
            return (root / str(cd.get(key, default))).resolve()

        db_url = str(cd.get("db_url", "sqlite:///gradebook.db"))
        prefix = "sqlite:///"
        if db_url.startswith(prefix) and not db_url.startswith(prefix + "/"):
            db_url = prefix + str((root / db_url[len(prefix):]).resolve())
        return cls(root=root, source=folder("source_directory", "source"),
                   release=folder("release_directory", "release"),
                   submitted=folder("submitted_directory", "submitted"),
                   autograded=folder("autograded_directory", "autograded"),
                   feedback=folder("feedback_directory", "feedback"),
                   db_url=db_url, course_id=str(cd.get("course_id", "")))

    @property
    def db_path(self) -> Path | None:
        prefix = "sqlite:///"
        return Path(self.db_url[len(prefix):]) if self.db_url.startswith(prefix) else None

    @property
    def build(self) -> Path:
        return self.root / "build"

    @property
    def logs(self) -> Path:
        return self.build / "grading-logs"

    @property
    def flags_file(self) -> Path:
        """Per-student tampering flags of the last grading (JSON; see :mod:`.scan`)."""
        return self.build / "grading-flags.json"

    def source_notebooks(self, assignment: str) -> list[Path]:
        folder = self.source / assignment
        if not folder.is_dir():
            have = sorted(p.name for p in self.source.iterdir() if p.is_dir()) if self.source.is_dir() else []
            raise GradingError(f"no assignment {assignment!r} in {self.source}; "
                               f"valid assignments: {', '.join(have) or '(none)'}")
        notebooks = sorted(p for p in folder.glob("*.ipynb"))
        if not notebooks:
            raise GradingError(f"no notebooks in {folder}")
        return notebooks

    def ensure_build(self) -> None:
        self.build.mkdir(parents=True, exist_ok=True)
        if self.db_path is not None:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)

    def short(self, path: Path | None) -> str:
        """``path`` relative to the course folder where it lies inside it."""
        if path is None:
            return ""
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)


# ---- running nbgrader ------------------------------------------------------------------
def nbgrader_env(extra: dict | None = None) -> dict:
    """The environment of an nbgrader process: this interpreter's bin/ first on PATH.

    nbgrader calls the ``alembic`` script of its own environment when it creates a
    gradebook; with the venv not activated (``make``) it would not be found.
    """
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def die_with_parent(cmd: list[str]) -> list[str]:
    """``cmd`` behind ``setpriv --pdeathsig KILL``: it is killed when the process that started it dies.

    A grader killed mid-run then leaves no student process running behind it.
    """
    import shutil

    return ["setpriv", "--pdeathsig", "KILL", "--", *cmd] if shutil.which("setpriv") else cmd


def run_nbgrader(course: Course, args: list[str], *, log: Path | None = None, env: dict | None = None,
                 timeout: float | None = None, module: str = "nbgrader") -> tuple[int, str]:
    """Run ``python -m <module> <args>`` in the course folder; returns (exit code, its output).

    The process gets its own process group; on ``timeout`` the whole group is
    terminated (then killed) and the exit code is ``-signal.SIGKILL``.
    """
    cmd = [sys.executable, "-m", module, *args]
    proc = subprocess.Popen(die_with_parent(cmd), cwd=course.root, env=nbgrader_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, _ = proc.communicate()
        out += f"\n[course_instructor.grading] stopped after {timeout:.0f} s (--student-timeout)\n"
        code = -signal.SIGKILL
    if log is not None:
        write_atomic(log, f"$ {' '.join(cmd)}\n{out}".encode("utf-8"))
    return code, out


def kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, the process group that ``proc`` leads."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(text: str, n: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` aside and rename it over ``path``: readers see the old or the new file, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def escape(text: object) -> str:
    """``text`` with backslashes and every unprintable character escaped as in ``repr`` (``\\n``, ``\\x1b``, ``\\u202e``).

    For names that come from students (folder and file names): what reaches a
    terminal, a CSV cell or a log line is plain, visible text, and two
    different names never escape to the same text.
    """
    out = []
    for ch in str(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1] if ch in "\n\r\t" else
                       f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else
                       f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return "".join(out)


def strip_controls(text: object) -> str:
    """``text`` with unprintable characters escaped (backslashes kept): safe for a terminal or a table cell."""
    s = str(text)
    return s if s.isprintable() else "".join(ch if ch.isprintable() else escape(ch) for ch in s)
