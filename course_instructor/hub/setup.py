"""``python -m course_instructor.hub setup``: accounts, exchange, the instructor's course, the roles, the release."""
from __future__ import annotations

import filecmp
import json
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from .settings import HubError, HubSettings, home_of, run_as, user_exists

#: nbgrader's plugins and server extensions a student does not get (the Formgrader, the course list, cell
#: toolbar for creating assignments); they keep the Assignments tab (assignment_list) and Validate.
STUDENT_LAB_DISABLED = ["@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:course-list",
                        "@jupyter/nbgrader:create-assignment"]
STUDENT_SERVER_DISABLED = ["nbgrader.server_extensions.formgrader", "nbgrader.server_extensions.course_list"]
ALL_SERVER = STUDENT_SERVER_DISABLED + ["nbgrader.server_extensions.assignment_list",
                                        "nbgrader.server_extensions.validate_assignment"]
#: nbgrader documents `chmod ugo+rw` on the exchange; its release checks 0777 (the sticky bit is not compared)
EXCHANGE_MODE = 0o1777


def ensure_users(s: HubSettings, create: bool) -> None:
    for user in [s.instructor, *s.students]:
        if not user_exists(user):
            if not create:
                raise HubError(f"no Unix account {user!r}: create it (useradd -m {user}) or pass --create-users")
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", user], check=True,
                           capture_output=True)
        os.chmod(home_of(user), 0o700)        # nobody reads another's home: work, course, gradebook


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o755)
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)


def write_roles(s: HubSettings) -> None:
    """Each role's Jupyter configuration (JUPYTER_CONFIG_PATH of its servers), owned by root, world-readable."""
    exchange = {"Exchange": {"root": s.exchange}, "CourseDirectory": {"course_id": s.course_id}}
    course = Path(s.course_dir)
    for role in ("student", "instructor"):
        d = s.role_dir(role)
        d.mkdir(parents=True, exist_ok=True)
        for p in [d, *d.parents]:
            if p == s.state.parent:
                break
            os.chmod(p, 0o755)
        lines = ["# written by `python -m course_instructor.hub setup`: edit the settings, not this file",
                 "c = get_config()  # noqa: F821"]
        if role == "instructor":
            lines += [f"load_subconfig({str(course / 'nbgrader_config.py')!r})  # noqa: F821  (the course's own settings)",
                      f"c.CourseDirectory.root = {str(course)!r}",
                      f"c.CourseDirectory.db_url = {'sqlite:///' + str(course / 'build' / 'gradebook.db')!r}"]
        lines += [f"c.Exchange.root = {s.exchange!r}", f"c.CourseDirectory.course_id = {s.course_id!r}"]
        if role == "student":
            # a student sees their own fetched assignments, whatever folder the server started in
            lines.append("c.Exchange.path_includes_course = False")
        _write(d / "nbgrader_config.py", "\n".join(lines) + "\n")
        exts = {e: (role == "instructor" or e not in STUDENT_SERVER_DISABLED) for e in ALL_SERVER}
        # the Formgrader's pages under a strict Content-Security-Policy (grading/formgrader_csp.py)
        exts["course_instructor.grading.formgrader_csp"] = role == "instructor"
        server = {"ServerApp": {"jpserver_extensions": exts},
                  "LabApp": {"check_for_updates_class": "jupyterlab.NeverCheckForUpdate"}}
        _write(d / "jupyter_server_config.json", json.dumps(server, indent=1) + "\n")
        page = {"disabledExtensions": {e: True for e in STUDENT_LAB_DISABLED}} if role == "student" else {}
        _write(d / "labconfig" / "page_config.json", json.dumps(page, indent=1) + "\n")
    os.chmod(s.role_dir("student").parent, 0o755)


def ensure_exchange(s: HubSettings) -> None:
    ex = Path(s.exchange)
    ex.mkdir(parents=True, exist_ok=True)
    os.chmod(ex, EXCHANGE_MODE)
    for p in ex.parents:          # reachable by everyone
        if p == Path("/"):
            break
        st = p.stat()
        if not st.st_mode & 0o001:
            os.chmod(p, st.st_mode | 0o005)


def ensure_course(s: HubSettings) -> Path:
    """The instructor's course folder: a copy of the course (sources, student copies, config), theirs alone."""
    course = Path(s.course_dir)
    pw = pwd.getpwnam(s.instructor)
    if not course.exists():
        src = Path(s.course_src)
        course.mkdir(parents=True)
        for folder in ("solutions", "notebooks"):
            shutil.copytree(src / folder, course / folder)
        shutil.copy2(src / "nbgrader_config.py", course / "nbgrader_config.py")
        (course / "build").mkdir()
        for root, dirs, files in os.walk(course):
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)
        os.chown(course, pw.pw_uid, pw.pw_gid)
    os.chmod(course, 0o700)
    return course


def release(s: HubSettings) -> str:
    """``nbgrader release_assignment`` as the instructor, from the student bundle's notebooks.

    The bundle's notebooks must be the course's student copies, byte for byte:
    the grader compares submissions with the course's ``notebooks/``.
    """
    src = Path(s.release_from) / s.assignment
    mine = Path(s.course_dir) / "notebooks" / s.assignment
    names = sorted(p.name for p in src.glob("*.ipynb"))
    if not names:
        raise HubError(f"no notebooks in {src}: run `make student-bundle` first")
    differ = [n for n in names if not (mine / n).is_file() or not filecmp.cmp(src / n, mine / n, shallow=False)]
    if differ:
        raise HubError(f"the bundle's {', '.join(differ)} differ from {mine}: rebuild the bundle (make student-bundle)")
    proc = run_as(s.instructor, [s.python, "-m", "nbgrader", "release_assignment", s.assignment, "--force",
                                 f"--CourseDirectory.release_directory={Path(s.release_from)}"],
                  env=s.user_env(s.instructor), cwd=s.course_dir)
    if proc.returncode != 0:
        raise HubError(f"nbgrader release_assignment failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stderr + proc.stdout


def setup(s: HubSettings, create_users: bool = False) -> HubSettings:
    if os.geteuid() != 0:
        raise HubError("run `setup` as root: it creates the exchange and the Hub starts each user's server as that user")
    ensure_users(s, create_users)
    if not s.course_dir:
        s.course_dir = str(Path(home_of(s.instructor)) / "rlhf-course")
    ensure_exchange(s)
    ensure_course(s)
    write_roles(s)
    s.save()
    release(s)
    return s
