"""The instructor's side of the course: nothing here ships to students.

``course_lib`` is what students import (its copy goes into the student bundle,
``make student-bundle``).  This package holds what must stay with the
instructor because it answers graded exercises or grades them:

``grading``    release, the sandboxed autograder, reports (``python -m course_instructor.grading``)
``builders``   rebuilding the bundled models and data from ../shared/data (``make assets``)
``ppo``        the course's whole PPO step in one file, checked equal to trl 0.11's
``reference``  reference implementations of the graded exercises (used by tests and builders)
"""
