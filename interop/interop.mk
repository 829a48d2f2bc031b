# Make fragment for the Go (Kitex) interop binaries. Include it from the
# repository's Makefile:
#
#     include interop/interop.mk
#
# `make interop-build` builds $(INTEROP_BIN)/server and $(INTEROP_BIN)/client
# with the Go caches kept inside the workspace (.cache/go). It does nothing
# when no Go source (cmd/, kitex_gen/, internal/), go.mod or go.sum under
# interop/ changed since the last build. It needs `go` (on PATH or at /usr/local/go/bin/go, or INTEROP_GO=...)
# and, on a cold module cache, the Go module proxy.

INTEROP_DIR  := $(abspath $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST)))))
INTEROP_ROOT := $(abspath $(INTEROP_DIR)/..)
INTEROP_BIN  ?= $(INTEROP_ROOT)/.cache/interop/bin

ifeq ($(origin INTEROP_GO),undefined)
INTEROP_GO := $(or $(shell command -v go 2>/dev/null),$(wildcard /usr/local/go/bin/go))
endif

INTEROP_GOENV := GOMODCACHE=$(INTEROP_ROOT)/.cache/go/mod \
	GOCACHE=$(INTEROP_ROOT)/.cache/go/build \
	GOFLAGS=-modcacherw GOTOOLCHAIN=local

INTEROP_COMMON_SRCS := $(INTEROP_DIR)/go.mod $(INTEROP_DIR)/go.sum \
	$(shell find $(INTEROP_DIR)/kitex_gen $(INTEROP_DIR)/internal -name '*.go' 2>/dev/null)

.PHONY: interop-build interop-clean

interop-build: $(INTEROP_BIN)/server $(INTEROP_BIN)/client $(INTEROP_BIN)/load \
	$(INTEROP_BIN)/streamserver $(INTEROP_BIN)/streamclient \
	$(INTEROP_BIN)/ttstream-server $(INTEROP_BIN)/ttstream-client

$(INTEROP_BIN)/%: $(INTEROP_DIR)/cmd/%/main.go $(INTEROP_COMMON_SRCS)
	@if [ -z "$(INTEROP_GO)" ] || ! "$(INTEROP_GO)" version >/dev/null 2>&1; then \
	  echo "interop.mk: ERROR: the Go toolchain was not found (looked for 'go' on PATH and /usr/local/go/bin/go; set INTEROP_GO=/path/to/go)" >&2; \
	  exit 1; \
	fi
	@mkdir -p $(INTEROP_BIN)
	cd $(INTEROP_DIR) && $(INTEROP_GOENV) $(INTEROP_GO) build -o $@ ./cmd/$*

interop-clean:
	rm -f $(INTEROP_BIN)/server $(INTEROP_BIN)/client $(INTEROP_BIN)/load $(INTEROP_BIN)/streamserver $(INTEROP_BIN)/streamclient \
		$(INTEROP_BIN)/ttstream-server $(INTEROP_BIN)/ttstream-client

# Go programs the tests run, built once from the Go module proxy at the versions pinned in
# interop/<name>/go.mod, into .cache/bin/<name>: etcd for the discovery tests (tests/discovery/helpers.py
# looks there first, then on PATH), h2spec for the HTTP/2 conformance test (tests/h2/test_h2spec.py) and
# ghz, the gRPC load tester, for the benchmark bench/ghz.py (tests/bench/test_ghz.py).
GO_TOOLS_BIN := $(INTEROP_ROOT)/.cache/bin
GO_TOOL_PACKAGE_etcd := go.etcd.io/etcd/server/v3
GO_TOOL_PACKAGE_h2spec := github.com/summerwind/h2spec/cmd/h2spec
GO_TOOL_PACKAGE_ghz := github.com/bojand/ghz/cmd/ghz

.PHONY: etcd-build h2spec-build ghz-build

etcd-build: $(GO_TOOLS_BIN)/etcd
h2spec-build: $(GO_TOOLS_BIN)/h2spec
ghz-build: $(GO_TOOLS_BIN)/ghz

$(GO_TOOLS_BIN)/%: $(INTEROP_DIR)/%/go.mod $(INTEROP_DIR)/%/go.sum
	@if [ -z "$(INTEROP_GO)" ] || ! "$(INTEROP_GO)" version >/dev/null 2>&1; then \
	  echo "interop.mk: ERROR: building $* needs the Go toolchain (set INTEROP_GO=/path/to/go)" >&2; \
	  exit 1; \
	fi
	@echo "==> building $* ($(GO_TOOL_PACKAGE_$*) as pinned in interop/$*/go.mod) into $@ (once)"
	@mkdir -p $(dir $@)
	@cd $(INTEROP_DIR)/$* && $(INTEROP_GOENV) $(INTEROP_GO) build -o $@ $(GO_TOOL_PACKAGE_$*)
