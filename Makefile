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
# the venv's stamp records a hash of the files that define it
STAMP    := $(VENV)/.stamp-$(shell cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)

.PHONY: help venv run test lab assets release grade formgrader bench clean

help:
	@echo "make run        execute the lab notebooks (PROFILE=cpu|gpu) into build/"
	@echo "make test       run the test suite"
	@echo "make lab        open JupyterLab on the student notebooks"
	@echo "make release    regenerate notebooks/ from solutions/ (nbgrader)"
	@echo "make grade      autograde submitted/ into grades.csv and feedback/"
	@echo "make formgrader JupyterLab with nbgrader's formgrader for manual grading"
	@echo "make assets     rebuild bundled models/data from $(SHARED) (ASSET=name|all)"
	@echo "make bench      run the benchmarks"

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
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

assets: $(STAMP)
	$(BIN)/python -m course_lib.builders --data-dir $(SHARED) --asset $(ASSET)

release: $(STAMP)
	$(BIN)/python -m course_lib.grading release

grade: $(STAMP)
	$(BIN)/python -m course_lib.grading autograde --submissions submitted

formgrader: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.default_url=/formgrader

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_rollout.py

clean:
	rm -rf build
