# Make fragment for grpc-go's interop client and server (interop/grpc/), the
# peers of tests/interop/test_grpc_*.py. Included from the Makefile.
#
# `make grpc-interop-build` builds $(GRPC_INTEROP_BIN)/server and /client from
# the pinned go.mod/go.sum with the Go caches inside the workspace (.cache/go),
# like interop/interop.mk. It needs `go` and, on a cold module cache, the Go
# module proxy.

GRPC_INTEROP_DIR  := $(abspath $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST)))))
GRPC_INTEROP_ROOT := $(abspath $(GRPC_INTEROP_DIR)/../..)
GRPC_INTEROP_BIN  ?= $(GRPC_INTEROP_ROOT)/.cache/interop-grpc/bin

ifeq ($(origin INTEROP_GO),undefined)
INTEROP_GO := $(or $(shell command -v go 2>/dev/null),$(wildcard /usr/local/go/bin/go))
endif

GRPC_INTEROP_GOENV := GOMODCACHE=$(GRPC_INTEROP_ROOT)/.cache/go/mod \
	GOCACHE=$(GRPC_INTEROP_ROOT)/.cache/go/build \
	GOFLAGS=-modcacherw GOTOOLCHAIN=local

GRPC_INTEROP_COMMON_SRCS := $(GRPC_INTEROP_DIR)/go.mod $(GRPC_INTEROP_DIR)/go.sum \
	$(shell find $(GRPC_INTEROP_DIR)/internal -name '*.go' 2>/dev/null)

.PHONY: grpc-interop-build grpc-interop-clean

grpc-interop-build: $(GRPC_INTEROP_BIN)/server $(GRPC_INTEROP_BIN)/client

$(GRPC_INTEROP_BIN)/%: $(GRPC_INTEROP_DIR)/cmd/%/main.go $(GRPC_INTEROP_COMMON_SRCS)
	@if [ -z "$(INTEROP_GO)" ] || ! "$(INTEROP_GO)" version >/dev/null 2>&1; then \
	  echo "grpc.mk: ERROR: the Go toolchain was not found (looked for 'go' on PATH and /usr/local/go/bin/go; set INTEROP_GO=/path/to/go)" >&2; \
	  exit 1; \
	fi
	@mkdir -p $(GRPC_INTEROP_BIN)
	cd $(GRPC_INTEROP_DIR) && $(GRPC_INTEROP_GOENV) $(INTEROP_GO) build -o $@ ./cmd/$*

grpc-interop-clean:
	rm -f $(GRPC_INTEROP_BIN)/server $(GRPC_INTEROP_BIN)/client
