# almost-bayesian: `make run` then `make test` is the whole quick start.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is needed (torch 2.14.1 wheels)"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision come from the machine's local wheels where pip has them, else from PyPI.
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	@touch $@

venv: $(STAMP) ## create the environment (pinned dependencies) if missing

run: $(STAMP) ## run the default job (python launch.py $(ARGS)) and print λ, α, d_s, the verdicts
	$(PY) launch.py $(ARGS)

MARK ?= not slow
WORKERS ?= 2

# Two pytest runs: the suite on $(WORKERS) workers (a file per worker at a time; most tests wait on
# subprocesses and use one core), then the tests marked `alone`, which measure load or wall time.
# pytest's exit 5 (no test selected) is not a failure of the second run.
test: $(STAMP) ## run the fast suite on 2 workers (make test MARK=slow: the slow suite; WORKERS=1: one process)
	$(PY) -m pytest -m "($(MARK)) and not alone" -n $(WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)
	$(PY) -m pytest -m "($(MARK)) and alone" $(PYTEST_ARGS) || test $$? -eq 5

lint: $(STAMP) ## ruff lint and format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP) ## benchmark vs the straightforward baseline: table + bench/results/<time>.json (~1.5 h; ARGS="--quick": ~20 min)
	$(PY) -m bench $(ARGS)

SWEEP ?=
RESULTS ?= results

figures: $(STAMP) ## tables, checks and figures for every sweep in ./mlflow.db under results/ (SWEEP=<id> for one)
	$(PY) -m analysis --out $(RESULTS) $(if $(SWEEP),--sweep $(SWEEP)) $(ARGS)

ui: $(STAMP) ## serve the MLflow UI for the default store ./mlflow.db on 127.0.0.1:5000
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db \
		--default-artifact-root file://$(CURDIR)/mlartifacts --host 127.0.0.1 --port 5000

lock: $(STAMP) ## rewrite requirements.lock from the current environment
	{ head -2 requirements.lock; $(PY) -m pip freeze --exclude-editable | grep -v '^-e'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean: ## remove run outputs (keeps the environment and the MLflow store)
	rm -rf outputs multirun .pytest_cache

.PHONY: help venv run test lint bench figures ui lock clean
