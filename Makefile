# Every target does its own set-up: a fresh machine needs only python3 (and Go for the interop tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed
GEN_STAMP := gen/.stamp
PROTOS := $(shell find protos -name '*.proto' | sort)
# The modules mypyc compiles (kitex_grpc/compiled.py); an install rebuilds them when they change.
COMPILED_SOURCES := $(shell $(PYTHON) -c 'import runpy; m = runpy.run_path("kitex_grpc/compiled.py"); print(*map(m["source_path"], m["COMPILED_MODULES"]))')
# Extensions left beside the sources by an editable install; removed first, so none outlives a rebuild.
CLEAN_COMPILED = find kitex_grpc -name '*.so' -delete; rm -f kitex_grpc__mypyc.*.so

export PYTHONPATH := $(CURDIR)

.PHONY: demo test lint typecheck unit unit-pure bench gen compiled clean-compiled clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(RUNTIME_STAMP): pyproject.toml setup.py kitex_grpc/compiled.py $(COMPILED_SOURCES) | $(PY)
	$(CLEAN_COMPILED)
	$(PY) -m pip install -q -e .
	touch $@

$(DEV_STAMP): pyproject.toml setup.py kitex_grpc/compiled.py $(COMPILED_SOURCES) | $(PY)
	$(CLEAN_COMPILED)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(RUNTIME_STAMP)

## compiled: rebuild the mypyc extensions (KITEX_GRPC_PURE_PYTHON=1 builds none: plain Python)
compiled: $(RUNTIME_STAMP)

clean-compiled:
	$(CLEAN_COMPILED)
	rm -f $(RUNTIME_STAMP) $(DEV_STAMP)

$(GEN_STAMP): $(PROTOS) $(wildcard kitex_grpc/codegen/*.py) $(RUNTIME_STAMP)
	rm -rf gen
	$(VENV)/bin/kitex-grpc gen $(PROTOS) -o gen
	touch $@

gen: $(GEN_STAMP)

## demo: create the venv, install, generate code, run the echo example over every transport
demo: $(RUNTIME_STAMP) $(GEN_STAMP)
	$(PY) examples/echo/demo.py

## test: install dev dependencies, lint, type-check, run the whole suite
test: $(DEV_STAMP) $(GEN_STAMP) lint typecheck unit unit-pure

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check kitex_grpc tests examples bench
	$(VENV)/bin/ruff format --check kitex_grpc

typecheck: $(DEV_STAMP) $(GEN_STAMP)
	$(VENV)/bin/mypy --strict kitex_grpc
	$(VENV)/bin/mypy --strict gen examples

unit: $(DEV_STAMP) $(GEN_STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The same suite on the plain-Python build that installs without a C compiler (tests/conftest.py).
unit-pure: $(DEV_STAMP) $(GEN_STAMP)
	KITEX_GRPC_PURE_PYTHON=1 $(PY) -m pytest -q $(PYTEST_ARGS)

## bench: benchmarks against the baselines; writes bench/results/latest.json
bench: $(DEV_STAMP) $(GEN_STAMP)
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	$(CLEAN_COMPILED)
	rm -rf $(VENV) gen build .pytest_cache .mypy_cache .ruff_cache

-include interop/interop.mk
-include interop/grpc/grpc.mk
