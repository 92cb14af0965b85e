#!/usr/bin/env bash
# The course's environment on the cluster's shared file system, from the repository's pins.
# Run once (on a login node with network access): bash deploy/slurm/setup-env.sh /shared/rlhf-course
set -euo pipefail
COURSE="${1:?usage: setup-env.sh COURSE_DIR (a clone of the course on the shared file system)}"
cd "$COURSE"
python3.11 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q --no-deps -e .
command -v bwrap >/dev/null || echo "bubblewrap is missing on this node: ask for it on every compute node" >&2
