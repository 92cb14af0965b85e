"""Where the lab writes its outputs (checkpoints, results), whatever folder a notebook runs from.

A notebook that wrote to ``"../../build/..."`` wrote wherever its copy
happened to sit: a student who opened a copy elsewhere put tens of megabytes
outside the course.  :func:`output_dir` finds the folder from the course
itself instead:

1. ``$COURSE_OUTPUT_DIR`` when it is set (the grader's sandbox and
   ``course_lib.run_lab --out`` set it);
2. otherwise ``build/`` in the course's root: the folder that holds
   ``course_lib`` (this repository, or the student bundle), when it is a
   course folder (it has a ``pyproject.toml``) and can be written to;
3. otherwise (``course_lib`` installed read-only, e.g. in a shared
   JupyterHub environment) ``~/rlhf-course-build``.
"""
from __future__ import annotations

import os
from pathlib import Path

#: the environment variable that overrides where outputs go
ENV_VAR = "COURSE_OUTPUT_DIR"
#: the folder that holds ``course_lib`` (the course's root when ``course_lib`` is not installed elsewhere)
COURSE_ROOT = Path(__file__).resolve().parent.parent


def _writable(folder: Path) -> bool:
    """Whether ``folder``, or its nearest existing parent, can be written to."""
    while not folder.exists():
        if folder.parent == folder:
            return False
        folder = folder.parent
    return os.access(folder, os.W_OK | os.X_OK)


def output_root() -> Path:
    """The folder all of the lab's outputs go under (absolute; see the module's docstring)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser().resolve()
    if (COURSE_ROOT / "pyproject.toml").is_file() and _writable(COURSE_ROOT / "build"):
        return COURSE_ROOT / "build"
    return Path.home() / "rlhf-course-build"


def output_dir(name: str | os.PathLike) -> Path:
    """``output_root() / name``, e.g. ``output_dir("checkpoints/happy")``; not created here.

    ``name`` must be a relative path inside the output folder (no ``..``):
    anything else raises ``ValueError``.
    """
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ValueError(f"output name must be a relative path inside the output folder, got {str(name)!r}")
    return output_root() / rel
