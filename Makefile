# Every target does its own set-up: a fresh machine needs only python3 (and Go for the interop and etcd tests).
# Python packages come from uv.lock and nothing else; `make lock` is the one target that changes it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# uv, pinned, in a bootstrap venv of its own: the one package installed from PyPI by name rather than from the lock.
UV_VERSION := 0.13.9
BOOTSTRAP := .cache/bootstrap
UV := $(BOOTSTRAP)/bin/uv
SYNC_STAMP := $(VENV)/.synced
GEN_STAMP := gen/.stamp
PROTOS := $(shell find protos -name '*.proto' | sort)
# The modules mypyc compiles (kitex_grpc/compiled.py); an install rebuilds them when they change.
COMPILED_SOURCES := $(shell $(PYTHON) -c 'import runpy; m = runpy.run_path("kitex_grpc/compiled.py"); print(*map(m["source_path"], m["COMPILED_MODULES"]))')
# Extensions left beside the sources by an editable install; removed first, so none outlives a rebuild.
CLEAN_COMPILED = find kitex_grpc -name '*.so' -delete; rm -f kitex_grpc__mypyc.*.so
# The versions the suite is also run on: the lowest that pyproject.toml allows for the runtime dependencies.
LOWEST := requirements/lowest-direct.txt
LOWEST_VENV := .cache/venv-lowest
LATEST_VENV := .cache/venv-latest
SHOW_VERSIONS := -c 'import importlib.metadata as m; print("==> runtime versions:", ", ".join(n + " " + m.version(n) for n in ("grpcio", "protobuf", "h2", "thriftpy2", "librt", "opentelemetry-sdk", "uvloop")))'
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON := $(PYTHON)
export UV_NO_PROGRESS := 1
export PYTHONPATH := $(CURDIR)

.PHONY: demo test test-lowest test-latest lint typecheck unit unit-pure smoke-pure bench fuzz gen compiled \
	clean-compiled clean lock dist wheel-pure wheel-test etcd bench-ghz bench-large

$(UV):
	@echo "==> bootstrap: uv $(UV_VERSION) in $(BOOTSTRAP)"
	@$(PYTHON) -m venv $(BOOTSTRAP)
	@$(BOOTSTRAP)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)

# Two steps: the locked build tools (setuptools, mypy) first, then kitex-grpc built in place with them.
$(SYNC_STAMP): uv.lock pyproject.toml setup.py build_backend/kitex_grpc_build.py kitex_grpc/compiled.py \
		$(COMPILED_SOURCES) | $(UV)
	@echo "==> $(VENV): installing the locked dependencies (uv.lock)"
	@$(UV) sync -q --frozen --all-extras --no-install-project
	@echo "==> $(VENV): building kitex-grpc in place (mypyc compiles kitex_grpc/compiled.py's modules)"
	@$(CLEAN_COMPILED)
	@$(UV) sync -q --frozen --all-extras --reinstall-package kitex-grpc
	@$(PY) -m kitex_grpc.compiled
	@touch $@

## compiled: rebuild the mypyc extensions (KITEX_GRPC_PURE_PYTHON=1 builds none: plain Python)
compiled: $(SYNC_STAMP)

clean-compiled:
	$(CLEAN_COMPILED)
	rm -f $(SYNC_STAMP)

$(GEN_STAMP): $(PROTOS) $(wildcard kitex_grpc/codegen/*.py) $(SYNC_STAMP)
	@echo "==> gen/: kitex-grpc gen for $(words $(PROTOS)) .proto files"
	@rm -rf gen
	@$(VENV)/bin/kitex-grpc gen $(PROTOS) -o gen >/dev/null
	@touch $@

gen: $(GEN_STAMP)

## demo: create the venv, install, generate code, run the echo example over every transport
demo: $(SYNC_STAMP) $(GEN_STAMP)
	@$(PY) examples/echo/demo.py

## test: install from the lock, lint, type-check, run the whole suite once on the build installed (compiled
## where a C compiler is), a short smoke of the plain-Python build, and both wheels in fresh venvs
test: $(SYNC_STAMP) $(GEN_STAMP) lint typecheck etcd unit smoke-pure wheel-test

lint: $(SYNC_STAMP)
	$(VENV)/bin/ruff check kitex_grpc tests examples bench build_backend
	$(VENV)/bin/ruff format --check kitex_grpc build_backend

typecheck: $(SYNC_STAMP) $(GEN_STAMP)
	$(VENV)/bin/mypy --strict kitex_grpc
	$(VENV)/bin/mypy --strict gen examples build_backend

unit: $(SYNC_STAMP) $(GEN_STAMP)
	$(PY) -m pytest -q -m 'not wheel' $(PYTEST_ARGS)

# The same suite on the plain-Python build that installs without a C compiler (tests/conftest.py).
unit-pure: $(SYNC_STAMP) $(GEN_STAMP)
	KITEX_GRPC_PURE_PYTHON=1 $(PY) -m pytest -q -m 'not wheel' $(PYTEST_ARGS)

# The other build, briefly (`make test`): the plain-Python one takes the interpreted paths where the
# compiled one has its own (the Thrift body's typed reader and writer against the walk and thriftpy2's
# reader); these run them, through the codec and through a TTHeader server and client.
SMOKE_PURE := tests/ttheader/test_codec_and_wire.py tests/ttheader/test_thrift_bounds.py \
	tests/ttheader/test_required_fields.py tests/ttheader/test_transport.py tests/ttheader/test_server_bad_input.py
smoke-pure: $(SYNC_STAMP) $(GEN_STAMP)
	KITEX_GRPC_PURE_PYTHON=1 $(PY) -m pytest -q -m 'not wheel' $(SMOKE_PURE) $(PYTEST_ARGS)

## wheel-test: build both wheels (compiled, pure Python), install each into a fresh venv outside the tree,
## call every transport with it
wheel-test: $(SYNC_STAMP)
	$(PY) -m pytest -q -m wheel $(PYTEST_ARGS)

## dist: an sdist and a (compiled, where a C compiler is at hand) wheel in dist/, built with the locked tools
dist: $(SYNC_STAMP)
	@rm -rf dist
	$(UV) build -q --no-build-isolation --python $(PY) --out-dir dist

## wheel-pure: the pure-Python wheel (py3-none-any: any platform, no C compiler, no mypy) in dist/
wheel-pure: $(SYNC_STAMP)
	KITEX_GRPC_PURE_PYTHON=1 $(UV) build -q --wheel --no-build-isolation --python $(PY) --out-dir dist

## test-lowest: the suite on the lowest versions pyproject.toml allows for the runtime dependencies
$(LOWEST_VENV)/.synced: $(LOWEST) | $(UV)
	@echo "==> $(LOWEST_VENV): installing $(LOWEST)"
	@rm -rf $(LOWEST_VENV)
	@$(UV) venv -q $(LOWEST_VENV)
	@VIRTUAL_ENV=$(LOWEST_VENV) $(UV) pip sync -q $(LOWEST)
	@touch $@

# kitex-grpc is built in place there too (compiled: librt's lower bound matters only to the compiled build),
# and gen/ is generated by that venv's grpcio-tools, whose code needs no newer protobuf than it has. Both
# stamps are dropped afterwards, so the next locked target rebuilds the extensions and regenerates gen/.
test-lowest: $(LOWEST_VENV)/.synced etcd
	@rm -f $(SYNC_STAMP) $(GEN_STAMP)
	@$(CLEAN_COMPILED)
	@VIRTUAL_ENV=$(LOWEST_VENV) $(UV) pip install -q --no-deps --no-build-isolation --reinstall -e .
	@$(LOWEST_VENV)/bin/python $(SHOW_VERSIONS)
	@$(LOWEST_VENV)/bin/python -m kitex_grpc.compiled
	@rm -rf gen
	@$(LOWEST_VENV)/bin/kitex-grpc gen $(PROTOS) -o gen >/dev/null
	$(LOWEST_VENV)/bin/python -m pytest -q -m 'not wheel' $(PYTEST_ARGS)
	@rm -rf gen

## test-latest (not in CI): the newest release of everything in a scratch venv, to see a breaking release early
test-latest: $(GEN_STAMP) etcd | $(UV)
	@rm -rf $(LATEST_VENV)
	@$(UV) venv -q $(LATEST_VENV)
	@$(UV) pip compile -q --upgrade --all-extras --group dev pyproject.toml -o $(LATEST_VENV)/requirements.txt
	@VIRTUAL_ENV=$(LATEST_VENV) $(UV) pip sync -q $(LATEST_VENV)/requirements.txt
	@$(LATEST_VENV)/bin/python $(SHOW_VERSIONS)
	$(LATEST_VENV)/bin/ruff check kitex_grpc tests examples bench
	$(LATEST_VENV)/bin/mypy --strict --cache-dir $(LATEST_VENV)/.mypy_cache kitex_grpc
	$(LATEST_VENV)/bin/mypy --strict --cache-dir $(LATEST_VENV)/.mypy_cache gen examples
	KITEX_GRPC_PURE_PYTHON=1 $(LATEST_VENV)/bin/python -m pytest -q -p no:cacheprovider -m 'not wheel' $(PYTEST_ARGS)

## lock: re-resolve uv.lock to the newest versions allowed, and requirements/lowest-direct.txt to the lowest
lock: | $(UV)
	$(UV) lock --upgrade
	$(PYTHON) requirements/compile_lowest.py $(UV) $(LOWEST)

## etcd: the etcd server for the discovery tests, built once from the Go module proxy (pinned in interop/etcd)
etcd:
	@if [ -n "$(INTEROP_GO)" ]; then $(MAKE) -s etcd-build; \
	elif command -v etcd >/dev/null; then echo "==> etcd: no Go here, the tests use $$(command -v etcd)"; \
	else echo "==> etcd: neither Go nor etcd here: the etcd tests will skip (and fail under CI=true)"; fi

## bench: benchmarks against the baselines; writes bench/results/latest.json
bench: $(SYNC_STAMP) $(GEN_STAMP)
	$(PY) bench/run.py $(BENCH_ARGS)

## bench-large: 64 KiB, 1 MiB and 16 MiB messages (unary, pipelined bidi, a 1 GiB server stream) against a raw-socket floor
bench-large: $(SYNC_STAMP) $(GEN_STAMP)
	$(PY) -m bench.large $(BENCH_ARGS)

## bench-ghz: ghz (Go, pinned in interop/ghz) against both gRPC server transports, grpc.aio and grpclib
bench-ghz: $(SYNC_STAMP) $(GEN_STAMP) ghz-build
	$(PY) -m bench.ghz $(BENCH_ARGS)

## fuzz: the live-server fuzz suite as a long campaign (tests/fuzz; CI runs it with a few hundred inputs)
FUZZ_EXAMPLES ?= 20000
fuzz: $(SYNC_STAMP) $(GEN_STAMP)
	KITEX_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -m fuzz -o timeout=0 tests/fuzz $(PYTEST_ARGS)

clean:
	$(CLEAN_COMPILED)
	rm -rf $(VENV) gen build dist .pytest_cache .mypy_cache .ruff_cache $(LOWEST_VENV) $(LATEST_VENV)

-include interop/interop.mk
-include interop/grpc/grpc.mk
