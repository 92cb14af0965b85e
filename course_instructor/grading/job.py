"""One student's ``nbgrader autograde``, with the sandboxed execution step (a trusted subprocess).

``python -m course_instructor.grading.job <nbgrader autograde arguments>`` runs
nbgrader's own autograde command in this process with one change: nbgrader's
``Execute`` preprocessor is replaced by :class:`~.preprocessors.SandboxedExecute`.
Options of that step are passed as ``--SandboxedExecute.<name>=<value>``.
:mod:`.autograde` starts one such process per student, each with its own copy
of the gradebook and its own output folder.
"""
from __future__ import annotations

import sys

from nbconvert.preprocessors import ClearMetadataPreprocessor
from traitlets.config import Config

from nbgrader.apps.nbgraderapp import NbGraderApp
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, IgnorePattern, LimitOutput,
                                    SaveAutoGrades)

from .preprocessors import SandboxedExecute


def config() -> Config:
    c = Config()
    # nbgrader 0.9.6's default list, with Execute replaced
    c.Autograde.autograde_preprocessors = [SandboxedExecute, IgnorePattern, ClearMetadataPreprocessor,
                                           LimitOutput, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
    return c


def main(argv: list[str] | None = None) -> None:
    NbGraderApp.launch_instance(argv=["autograde", *(sys.argv[1:] if argv is None else argv)], config=config())


if __name__ == "__main__":
    main()
