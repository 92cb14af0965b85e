"""course_instructor.grading.sandbox and .runner: what a notebook executed for grading can and cannot do.

Each test starts real sandboxes (bubblewrap; `.ci/run` installs it) with small
notebooks; a kernel start costs a few seconds.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from course_instructor.grading import sandbox
from course_instructor.grading.course import GradingError

REPO = Path(__file__).resolve().parent.parent


def _nb(*sources: str) -> dict:
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "language": "python",
                                                                           "display_name": "Python 3"}},
            "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": s, "outputs": [],
                       "execution_count": None} for i, s in enumerate(sources)]}


def _text(cell: dict) -> str:
    return "".join(o.get("text", "") + f"{o.get('ename', '')}: {o.get('evalue', '')}" * (o["output_type"] == "error")
                   for o in cell["outputs"])


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    secret = tmp_path_factory.mktemp("host") / "secret.txt"
    secret.write_text("instructor only")
    nb = _nb(
        "import os, resource; print(os.getuid(), os.getcwd(), resource.getrlimit(resource.RLIMIT_NPROC)[0], "
        "resource.getrlimit(resource.RLIMIT_AS)[0])",
        f"print(os.path.exists({str(secret)!r}), os.path.exists({str(REPO / 'solutions')!r}), "
        f"os.path.exists({str(REPO / 'course_lib' / 'padding.py')!r}))",
        f"open({str(REPO / 'course_lib' / 'x.py')!r}, 'w')",
        "import socket; socket.create_connection(('10.1.2.3', 80), timeout=2)",
        "open('scratch.txt', 'w').write('mine'); print(open('scratch.txt').read())",
        "print('x' * 3_000_000)",
        "import course_lib.padding, torch; print(course_lib.padding.left_pad([torch.tensor([1])], 0)[0].tolist())",
        "import importlib.util as u; print([m for m in ('course_instructor', 'course_instructor.reference') "
        "if u.find_spec(m.split('.')[0]) is not None])",
    )
    limits = sandbox.Limits(cell_timeout=60, wall_seconds=300, cell_output_bytes=1_000_000)
    run = sandbox.execute_notebook(nb, limits=limits, slot=3)
    return run, limits


def test_the_notebook_runs_unprivileged_with_limits(probe):
    run, limits = probe
    assert run.status == "ok", run.log_tail
    uid, cwd, nproc, memory = _text(run.notebook["cells"][0]).split()
    assert cwd == f"{sandbox.HOME}/course/assignment"
    assert int(memory) == limits.memory_bytes
    if os.geteuid() == 0:
        assert (int(uid) - sandbox.DEFAULT_UID_BASE) % 64 == 3 and int(nproc) == limits.processes  # slot 3 (or its lease)
    else:
        assert int(uid) == os.geteuid()


def test_the_host_is_invisible_and_course_lib_read_only(probe):
    cells = probe[0].notebook["cells"]
    assert _text(cells[1]).split() == ["False", "False", "True"]   # no host file, no solutions, course_lib yes
    assert "Read-only file system" in _text(cells[2])
    assert not (REPO / "course_lib" / "x.py").exists()


def test_there_is_no_network(probe):
    assert "Network is unreachable" in _text(probe[0].notebook["cells"][3])


def test_scratch_is_writable_and_output_is_cut(probe):
    run = probe[0]
    cells = run.notebook["cells"]
    assert _text(cells[4]).strip() == "mine"
    assert run.truncated_cells == [5] and "output cut by the grader" in _text(cells[5])
    assert len(_text(cells[5])) < 1_100_000
    assert _text(cells[6]).strip() == "[[1]]"                      # the library works as usual
    assert _text(cells[7]).strip() == "[]"                         # the instructor's package is not there


def test_a_notebook_that_runs_too_long_is_stopped():
    run = sandbox.execute_notebook(_nb("import time; time.sleep(600)"),
                                   limits=sandbox.Limits(cell_timeout=600, wall_seconds=20))
    assert run.status.startswith("timeout") and run.notebook is None and run.seconds < 90


def test_without_bubblewrap_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install bubblewrap.*--no-sandbox"):
        sandbox.check_sandbox()
    assert issubclass(sandbox.SandboxUnavailable, GradingError)


def test_make_grade_stops_without_bubblewrap(tmp_path, monkeypatch, capsys):
    from course_instructor import grading

    shutil.copy2(REPO / "nbgrader_config.py", tmp_path)
    shutil.copytree(REPO / "solutions", tmp_path / "solutions")
    (tmp_path / "submitted" / "alice" / grading.ASSIGNMENT).mkdir(parents=True)
    (tmp_path / "submitted" / "alice" / grading.ASSIGNMENT / "1_reward_and_data.ipynb").write_text("{}")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert grading.main(["autograde", "--course-dir", str(tmp_path), "--submissions", "submitted"]) == 2
    err = capsys.readouterr().err
    assert "bubblewrap" in err and "--no-sandbox" in err and "only for trusted submissions" in err
    assert not (tmp_path / "build" / "gradebook.db").exists()       # stopped before touching anything


def test_the_sandbox_command_binds_no_course_folder_writable():
    cmd = sandbox.sandbox_command(["true"], slot=0, limits=sandbox.Limits(), env={})
    binds = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--bind"]
    assert binds == []                                              # nothing of the host is writable
    ro = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--ro-bind"]
    assert str(REPO / "course_lib") in ro and str(REPO) not in ro
    assert "--unshare-net" in cmd and "--unshare-pid" in cmd and "--die-with-parent" in cmd


def test_a_failure_before_the_sandbox_starts_lets_its_uid_lease_go(monkeypatch):
    seen = []

    def broken(inner, **kw):
        seen.append(kw["uid"])
        raise RuntimeError("bwrap went missing")

    leases = []  # kept alive here, so only an explicit release can free the lock (not garbage collection)

    class Recorded(sandbox._UidLease):
        def __init__(self, *a):
            super().__init__(*a)
            leases.append(self)

    monkeypatch.setattr(sandbox, "sandbox_command", broken)
    monkeypatch.setattr(sandbox, "_UidLease", Recorded)
    with pytest.raises(RuntimeError, match="bwrap went missing"):
        sandbox.execute_notebook(_nb("1"), limits=sandbox.Limits(), slot=5)
    assert len(leases) == (1 if os.geteuid() == 0 else 0)
    if os.geteuid() == 0:  # the same uid is free again (a leaked lease would push the next one 64 further on)
        with sandbox._UidLease(sandbox.DEFAULT_UID_BASE, 5) as uid:
            assert uid == seen[0]
    else:
        assert seen == [None]
