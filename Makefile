# Every target does its own set-up: a fresh machine needs only python3 (and Go for the interop tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed
GEN_STAMP := gen/.stamp
PROTOS := $(shell find protos -name '*.proto' | sort)

export PYTHONPATH := $(CURDIR)

.PHONY: demo test lint typecheck unit bench gen clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(RUNTIME_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(RUNTIME_STAMP)

$(GEN_STAMP): $(PROTOS) $(wildcard kitex_grpc/codegen/*.py) $(RUNTIME_STAMP)
	rm -rf gen
	$(VENV)/bin/kitex-grpc gen $(PROTOS) -o gen
	touch $@

gen: $(GEN_STAMP)

## demo: create the venv, install, generate code, run the echo example over every transport
demo: $(RUNTIME_STAMP) $(GEN_STAMP)
	$(PY) examples/echo/demo.py

## test: install dev dependencies, lint, type-check, run the whole suite
test: $(DEV_STAMP) $(GEN_STAMP) lint typecheck unit

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check kitex_grpc tests examples bench
	$(VENV)/bin/ruff format --check kitex_grpc

typecheck: $(DEV_STAMP) $(GEN_STAMP)
	$(VENV)/bin/mypy --strict kitex_grpc
	$(VENV)/bin/mypy --strict gen examples

unit: $(DEV_STAMP) $(GEN_STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

## bench: benchmarks against the baselines; writes bench/results/latest.json
bench: $(DEV_STAMP) $(GEN_STAMP)
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) gen .pytest_cache .mypy_cache .ruff_cache

-include interop/interop.mk
