"""course_lib.paths: outputs go under the course's folder (or $COURSE_OUTPUT_DIR), never beside the notebook."""
import os
from pathlib import Path

import pytest

from course_lib import paths


def test_outputs_go_under_the_course_root_whatever_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    root = Path(__file__).resolve().parent.parent  # this repository holds course_lib
    assert paths.COURSE_ROOT == root
    assert paths.output_dir("checkpoints/happy") == root / "build" / "checkpoints" / "happy"
    assert not (tmp_path / "checkpoints").exists()


def test_the_environment_variable_wins(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path / "out"))
    assert paths.output_dir("checkpoints/pessimistic") == tmp_path / "out" / "checkpoints" / "pessimistic"


def test_a_read_only_course_falls_back_to_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.ENV_VAR, raising=False)
    monkeypatch.setattr(paths, "COURSE_ROOT", tmp_path / "site-packages")  # no pyproject.toml: not a course folder
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.output_dir("x") == tmp_path / "home" / "rlhf-course-build" / "x"
    course = tmp_path / "course"
    course.mkdir()
    (course / "pyproject.toml").write_text("")
    monkeypatch.setattr(paths, "COURSE_ROOT", course)
    assert paths.output_dir("x") == course / "build" / "x"
    if os.geteuid() != 0:  # root can write anywhere
        course.chmod(0o555)
        try:
            assert paths.output_dir("x") == tmp_path / "home" / "rlhf-course-build" / "x"
        finally:
            course.chmod(0o755)


@pytest.mark.parametrize("bad", ["../outside", "/abs/path", "a/../../b", ""])
def test_names_must_stay_inside_the_output_folder(bad):
    with pytest.raises(ValueError, match="relative path inside"):
        paths.output_dir(bad)


def test_no_notebook_writes_relative_to_its_own_folder():
    root = Path(__file__).resolve().parent.parent
    for nb in sorted((root / "solutions").rglob("*.ipynb")):
        text = nb.read_text()
        assert "../build" not in text and "..\\\\build" not in text, f"{nb.name} writes relative to its folder"


def test_the_grading_sandbox_sends_outputs_to_its_writable_home():
    from course_instructor.grading import sandbox

    env = sandbox.sandbox_env()
    assert env[paths.ENV_VAR] == f"{sandbox.HOME}/build"
