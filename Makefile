# Two commands for everyone: `make run` (the lab, executed) and `make test`.
# Both create .venv on first use, and again only when requirements.txt or
# pyproject.toml change.

PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
PROFILE  ?= cpu
ASSET    ?= all
SHARED   ?= ../shared/data
PYTEST_ARGS ?=
# pytest-xdist workers of `make test` (tests sharing the graded courses stay in one worker)
TEST_JOBS ?= $(shell nproc 2>/dev/null || echo 1)
# students graded at once by `make grade` (default: the number of cores)
JOBS     ?= $(shell nproc 2>/dev/null || echo 1)
GPU_CHECK_STEPS ?= 10
GPU_CHECK_OUT   ?= build/gpu-check.json
# where `make student-bundle` writes student/ and student.tar.gz
DIST     ?= dist
# glibc's malloc hands every tensor above 32 MB (a batch's logits over GPT-2's 50,257 tokens is
# about 200 MB) back to the kernel when it is freed and faults it in again, zeroed, at the next
# step: a third of the lab's time went to the kernel.  Keep freed memory in the process instead.
# Measured on notebook 2: 102 s -> 71 s, system time 42 s -> 3 s.  course_lib/run_lab.py sets the
# same values (MALLOC_ENV) for its kernels when they are unset.
export MALLOC_MMAP_MAX_ ?= 0
export MALLOC_TRIM_THRESHOLD_ ?= 68719476736
# the venv's stamp records a hash of the files that define it
STAMP    := $(VENV)/.stamp-$(shell cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)
# `make modern-trl`: today's trl in a second environment (Part 5)
MODERN   := .venv-modern
MODERN_STAMP := $(MODERN)/.stamp-$(shell cat requirements-modern.txt | sha256sum | cut -c1-16)

# `make hub` (as root): the class on JupyterHub (course_instructor/hub/; README, "A term on JupyterHub")
HUB_INSTRUCTOR ?= instructor
HUB_STUDENTS   ?=
HUB_IP         ?= 127.0.0.1
HUB_PORT       ?= 8000
HUB_STATE      ?= /srv/rlhf-hub
HUB_EXCHANGE   ?= /srv/nbgrader/exchange
HUB_AUTH       ?= pam
# e.g. --create-users, --python /opt/rlhf-students/bin/python, --course-dir /home/prof/rlhf-2027
HUB_SETUP_ARGS ?=
HUB      := $(BIN)/python -m course_instructor.hub --state-dir $(HUB_STATE)

.PHONY: help venv run test test-fast gpu-check lab assets release student-bundle grade formgrader bench clean \
        hub hub-collect hub-feedback modern-trl

help:
	@echo "make run        execute the lab notebooks (PROFILE=cpu|gpu) into build/"
	@echo "make test       run the test suite"
	@echo "make test-fast  the unit tests only (no notebook runs, grading runs or browser): a few minutes"
	@echo "make gpu-check  on a GPU with the Hub: train the gpu profile $(GPU_CHECK_STEPS) steps, report to $(GPU_CHECK_OUT)"
	@echo "make lab        open JupyterLab on the student notebooks"
	@echo "make release    regenerate notebooks/ from solutions/ (nbgrader)"
	@echo "make student-bundle  write what students get into $(DIST)/student/ and $(DIST)/student.tar.gz (checked)"
	@echo "make grade      autograde submitted/ in sandboxes into grades.csv and feedback/ (JOBS=N)"
	@echo "make formgrader JupyterLab with nbgrader's formgrader for manual grading"
	@echo "make hub        (root) the class on JupyterHub: HUB_INSTRUCTOR=prof HUB_STUDENTS=\"alice bob\""
	@echo "make hub-collect / hub-feedback  (root) collect submissions / release feedback through the exchange"
	@echo "make assets     rebuild bundled models/data from $(SHARED) (ASSET=name|all)"
	@echo "make bench      run the benchmarks"
	@echo "make modern-trl today's trl in .venv-modern: a few GRPO steps through GRPOTrainer, checked against the course's"

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@rm -f $(VENV)/.stamp-*
	@touch $@
	@echo "venv ready: $(VENV)"

run: $(STAMP)
	$(BIN)/python -m course_lib.run_lab --profile $(PROFILE) --out build

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadgroup $(PYTEST_ARGS)

# for your own iterations: everything but the tests marked slow (notebooks, trainings, graded courses)
# and browser
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadgroup -m "not slow and not browser" $(PYTEST_ARGS)

# For a GPU owner: the gpu profile's training on the real Hub models for GPU_CHECK_STEPS steps;
# seconds per step, peak GPU memory and mean reward in GPU_CHECK_OUT. Without a GPU it says so
# and fails (status 1 from the module) before downloading anything.
gpu-check: $(STAMP)
	$(BIN)/python -m course_lib.gpu_check --steps $(GPU_CHECK_STEPS) --out $(GPU_CHECK_OUT)

lab: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

assets: $(STAMP)
	$(BIN)/python -m course_instructor.builders --data-dir $(SHARED) --asset $(ASSET)

release: $(STAMP)
	$(BIN)/python -m course_instructor.grading release

# What students get: notebooks/, the student edition of course_lib (with its assets), the pins, a
# Makefile with `make lab` and a README.  Refused (nothing written) if it would hold a solution, a
# hidden test, an instructor file or a graded function (course_instructor/bundle.py).
student-bundle: $(STAMP)
	$(BIN)/python -m course_instructor.bundle --out $(DIST)

grade: $(STAMP)
	$(BIN)/python -m course_instructor.grading autograde --submissions submitted --jobs $(JOBS)

# nbgrader 0.9 ships the formgrader twice: a server extension (pages under /formgrader) and a
# JupyterLab extension (menu Nbgrader > Formgrader, a tab showing those pages). pip enables both
# inside the venv; enabling them again here is idempotent and touches only the venv (--sys-prefix).
# course_instructor.grading.formgrader_csp serves the Formgrader's pages under a strict
# Content-Security-Policy (student content renders there, in your logged-in session).
# JupyterLab opens with the Formgrader tab (/lab?formgrader=true: a route of nbgrader's extension;
# --ServerApp.default_url is overridden by JupyterLab's own). nbgrader runs `alembic` from PATH
# when it creates build/gradebook.db, hence the venv's bin on PATH. As root (containers) Jupyter
# refuses to start without --allow-root.
formgrader: $(STAMP)
	@mkdir -p build
	@$(BIN)/jupyter server extension enable --sys-prefix nbgrader.server_extensions.formgrader >/dev/null 2>&1 \
		|| { echo "could not enable nbgrader's formgrader server extension" >&2; exit 1; }
	@$(BIN)/jupyter labextension enable --level=sys_prefix @jupyter/nbgrader >/dev/null 2>&1 \
		|| { echo "could not enable nbgrader's JupyterLab extension" >&2; exit 1; }
	@$(BIN)/jupyter server extension enable --sys-prefix course_instructor.grading.formgrader_csp >/dev/null 2>&1 \
		|| { echo "could not enable the Formgrader's Content-Security-Policy (course_instructor.grading.formgrader_csp)" >&2; exit 1; }
	@echo "Formgrader: JupyterLab opens on its Formgrader tab (also: menu Nbgrader > Formgrader, or <server URL>/formgrader)."
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/jupyter lab --LabApp.default_url='/lab?formgrader=true' \
		$(if $(filter 0,$(shell id -u)),--allow-root)

# The class on JupyterHub, on this machine (needs root, Node.js and `npm install -g configurable-http-proxy`):
# set up (accounts checked, exchange, the instructor's course folder, roles, the assignment released from the
# student bundle), then the Hub in the foreground (Ctrl+C stops it and every user's server).
hub: student-bundle
	@test "$$(id -u)" -eq 0 || { echo "make hub runs as root (sudo make hub ...): the Hub starts each user's server as that user" >&2; exit 1; }
	@test -n "$(HUB_STUDENTS)" || { echo 'name the class: make hub HUB_INSTRUCTOR=prof HUB_STUDENTS="alice bob ..."' >&2; exit 1; }
	@command -v configurable-http-proxy >/dev/null || { echo "npm install -g configurable-http-proxy first (Node.js >= 18)" >&2; exit 1; }
	$(HUB) setup --instructor $(HUB_INSTRUCTOR) --students "$(HUB_STUDENTS)" --exchange $(HUB_EXCHANGE) \
		--release-from $(abspath $(DIST))/student/notebooks --student-lib $(abspath $(DIST))/student \
		--ip $(HUB_IP) --port $(HUB_PORT) --authenticator $(HUB_AUTH) $(HUB_SETUP_ARGS)
	$(HUB) serve

hub-collect: $(STAMP)
	$(HUB) collect

hub-feedback: $(STAMP)
	$(HUB) feedback

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_rollout.py
	$(BIN)/python benchmarks/bench_grading.py --jobs $(JOBS)

# Part 5: a current trl (requirements-modern.txt) beside the lab's trl 0.11.4, the same torch.  The run
# is offline: a few GRPO steps through trl's GRPOTrainer on the bundled models, trl's advantages and
# loss checked against course_instructor/grpo.py, and which classifier logit trl reads
# (course_instructor/modern_trl.py; report in build/modern-trl.json).
$(MODERN_STAMP): requirements-modern.txt
	@test -x $(MODERN)/bin/python || $(PYTHON) -m venv $(MODERN)
	$(MODERN)/bin/python -m pip install -q -r requirements-modern.txt
	@rm -f $(MODERN)/.stamp-*
	@touch $@

modern-trl: $(MODERN_STAMP)
	@mkdir -p build
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1 \
		$(MODERN)/bin/python -m course_instructor.modern_trl > build/modern-trl.log 2>&1 \
		|| { tail -n 40 build/modern-trl.log; exit 1; }
	@tail -n 1 build/modern-trl.log

clean:
	rm -rf build
