"""Collecting from nbgrader's exchange with times and owners the students cannot forge.

``nbgrader submit`` runs in the student's own server, as the student: the
inbound folder's name ``<student>+<assignment>+<time>+<random>`` and its
``timestamp.txt`` are written by the student's process, and the student owns
that folder afterwards (nbgrader leaves it 0777).  A student can therefore
rename it, rewrite ``timestamp.txt``, or create a folder named after a
classmate; ``nbgrader collect`` only *warns* when the owner differs from the
name.  What the student cannot set is what the kernel records:

* the folder's **owner** (uid): only root can change it;
* the **status-change time** (ctime) of the folder and of every file in it:
  set by the kernel to the current time at any change (write, rename, chmod,
  utime) and never settable by a user.  The newest ctime of a submission is
  therefore no earlier than its last change.

:func:`collect` runs ``nbgrader collect`` (as the instructor), then, for every
student, takes the newest of *their own* inbound folders (owner = the
student), compares the collected copy with it (and recopies it if nbgrader
picked a forged folder), and removes the student's ``timestamp.txt`` from the
collected copy; the time taken is the newest ctime, which the grader reads from
``build/exchange-times.json``.  What it decided is in ``build/exchange-times.json``
(``claimed``: the student's timestamp.txt; ``exchange``: the time used;
``forged``: folders named after a student but owned by someone else).
"""
from __future__ import annotations

import datetime as dt
import filecmp
import json
import os
import pwd
import shutil
import stat
from pathlib import Path

from ..grading.render import protect_feedback
from .settings import HubError, HubSettings, run_as

TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"


def newest_ctime(folder: Path) -> float:
    times = [folder.lstat().st_ctime]
    for root, dirs, files in os.walk(folder):
        times += [os.lstat(os.path.join(root, n)).st_ctime for n in [*dirs, *files]]
    return max(times)


def format_time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime(TIME_FORMAT)


def inbound_submissions(inbound: Path, assignment: str) -> dict[str, list[dict]]:
    """``{student: [{folder, owner, ctime, claimed}, ...]}`` by the name's student, newest ctime first."""
    found: dict[str, list[dict]] = {}
    for d in sorted(inbound.iterdir()) if inbound.is_dir() else []:
        parts = d.name.split("+")
        if len(parts) < 3 or parts[1] != assignment or not d.is_dir() or d.is_symlink():
            continue
        try:
            owner = pwd.getpwuid(d.lstat().st_uid).pw_name
        except KeyError:
            owner = f"uid {d.lstat().st_uid}"
        claimed = _read_small(d / "timestamp.txt")
        found.setdefault(parts[0], []).append({"folder": d.name, "owner": owner, "ctime": newest_ctime(d),
                                               "claimed": claimed})
    for recs in found.values():
        recs.sort(key=lambda r: r["ctime"], reverse=True)
    return found


def _is_plain(p: Path) -> bool:
    """A regular file, not a link (the student's folder may hold links to anything, FIFOs, devices)."""
    try:
        return stat.S_ISREG(p.lstat().st_mode)
    except OSError:
        return False


def _read_small(p: Path, limit: int = 200) -> str:
    if not _is_plain(p):
        return ""
    fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        return fh.read(limit).decode("utf-8", "replace").strip()


def _plain_files(folder: Path, skip=()) -> list[str]:
    out = []
    for root, dirs, files in os.walk(folder):          # os.walk does not follow links to folders
        for n in files:
            p = Path(root) / n
            if n not in skip and _is_plain(p):
                out.append(str(p.relative_to(folder)))
    return sorted(out)


def _same_tree(a: Path, b: Path, skip=("timestamp.txt", "submission_secret.txt")) -> bool:
    names = _plain_files(a, skip)
    if names != _plain_files(b, skip):
        return False
    return all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def _copy_plain(src: Path, dest: Path) -> None:
    """Only the regular files of ``src`` (links, FIFOs and devices are left behind)."""
    for rel in _plain_files(src):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(src / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fin, open(dest / rel, "wb") as fout:
            shutil.copyfileobj(fin, fout)


def collect(s: HubSettings) -> dict:
    """``nbgrader collect`` as the instructor, then owners and times from the exchange; returns the record."""
    env = s.user_env(s.instructor)
    proc = run_as(s.instructor, [s.python, "-m", "nbgrader", "collect", s.assignment, "--update"],
                  env=env, cwd=s.course_dir)
    if proc.returncode != 0:
        raise HubError(f"nbgrader collect failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    course = Path(s.course_dir)
    inbound = Path(s.exchange) / s.course_id / "inbound"
    record = {"collected": {}, "forged": [], "nbgrader_log": (proc.stderr + proc.stdout)[-4000:]}
    pw = pwd.getpwnam(s.instructor)
    for student, recs in sorted(inbound_submissions(inbound, s.assignment).items()):
        own = [r for r in recs if r["owner"] == student]
        record["forged"] += [r["folder"] for r in recs if r["owner"] != student]
        if not (course / "submitted" / student).exists() and not own:
            continue
        dest = course / "submitted" / student / s.assignment
        if not own:
            if dest.exists():            # only forged folders: nothing of this student is graded
                shutil.rmtree(dest)
            continue
        best = own[0]
        src = inbound / best["folder"]
        if not dest.is_dir() or not _same_tree(src, dest):
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            _copy_plain(src, dest)
        when = format_time(best["ctime"])
        # the student's own timestamp.txt (nbgrader submit writes it as the student) stays out of what is
        # graded; the grader takes the time from build/exchange-times.json (autograde.exchange_times)
        (dest / "timestamp.txt").unlink(missing_ok=True)
        # nbgrader's key to the student's feedback: kept aside, out of what the grader sees (it is
        # not a notebook, and would be flagged as an unexpected file)
        secret = dest / "submission_secret.txt"
        if secret.is_file():
            keep = course / "build" / "exchange-secrets" / f"{student}.txt"
            keep.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(keep.parent, 0o700)
            os.replace(secret, keep)
            os.chown(keep.parent, pw.pw_uid, pw.pw_gid)
            os.chown(keep, pw.pw_uid, pw.pw_gid)
        for root, dirs, files in os.walk(dest.parent):
            for name in [*dirs, *files]:
                os.lchown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)
        os.chown(dest.parent, pw.pw_uid, pw.pw_gid)
        record["collected"][student] = {"folder": best["folder"], "claimed": best["claimed"], "exchange": when}
    out = course / "build" / "exchange-times.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
    os.chown(out, pw.pw_uid, pw.pw_gid)
    return record


def release_feedback(s: HubSettings) -> str:
    """``nbgrader generate_feedback`` and ``release_feedback`` as the instructor."""
    env = s.user_env(s.instructor)
    course = Path(s.course_dir)
    pw = pwd.getpwnam(s.instructor)
    out = ""
    proc = run_as(s.instructor, [s.python, "-m", "nbgrader", "generate_feedback", s.assignment, "--force"],
                  env=env, cwd=s.course_dir, timeout=600)
    out += proc.stderr + proc.stdout
    protect_feedback(course / "feedback")     # a Content-Security-Policy in every page (grading/render.py)
    if proc.returncode != 0:
        raise HubError(f"nbgrader generate_feedback failed:\n{out[-3000:]}")
    for secret in sorted((course / "build" / "exchange-secrets").glob("*.txt")):
        folder = course / "feedback" / secret.stem / s.assignment
        if folder.is_dir():
            shutil.copyfile(secret, folder / "submission_secret.txt")
            os.chown(folder / "submission_secret.txt", pw.pw_uid, pw.pw_gid)
    for cmd in (["release_feedback", s.assignment],):
        proc = run_as(s.instructor, [s.python, "-m", "nbgrader", *cmd], env=env, cwd=s.course_dir, timeout=600)
        out += proc.stderr + proc.stdout
        if proc.returncode != 0:
            raise HubError(f"nbgrader {cmd[0]} failed:\n{out[-3000:]}")
    return out
