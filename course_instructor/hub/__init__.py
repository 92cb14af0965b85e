"""A term on JupyterHub: one machine, local Unix users, nbgrader's exchange (``make hub``).

``python -m course_instructor.hub`` (run as root: the Hub starts each user's
server as that user):

``setup``   prepare the class: check (or, with ``--create-users``, create) the
            instructor's and the students' Unix accounts, make their homes
            private (0700), create nbgrader's exchange (``/srv/nbgrader/exchange``,
            mode 1777 as nbgrader documents: ``chmod ugo+rw``; the sticky bit
            keeps users from deleting each other's top-level entries), copy the
            course into the instructor's home (``~/rlhf-course``: solutions,
            notebooks, ``nbgrader_config.py``; the gradebook will be
            ``~/rlhf-course/build/gradebook.db``), write the two roles'
            Jupyter configuration (:mod:`.roles`) and the Hub's settings, and
            release the assignment into the exchange *as the instructor*, from
            the student bundle's notebooks (``make student-bundle``).
``serve``   run JupyterHub (``course_instructor/hub/jupyterhub_config.py``) with
            configurable-http-proxy from npm, LocalProcessSpawner, the chosen
            authenticator.
``collect`` as the instructor: ``nbgrader collect``, then the submission times and
            owners checked against the exchange (:mod:`.exchange`).
``feedback`` as the instructor: ``nbgrader generate_feedback`` and ``release_feedback``.

What the Hub protects and what it does not is in the README (*A term on JupyterHub*).
"""
from .settings import HubSettings

__all__ = ["HubSettings"]
