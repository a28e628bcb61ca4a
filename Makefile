# cairn — make demo, make test, make bench. See README.md.
GO        ?= go
export PATH := $(PATH):/usr/local/go/bin
BIN       := bin/cairn
# A static binary (no cgo: copy it to any Linux machine) without urfave/cli's
# man-page generator: both shorten every command's start, which is a
# visible part of a small incremental backup (see docs/performance.md).
BUILDFLAGS := -tags urfave_cli_no_docs -trimpath
FUZZTIME  ?= 5s
TESTFLAGS ?= -count=1 -timeout 20m

.PHONY: all build deps test test-go fuzz vet demo bench clean

all: build

build:
	CGO_ENABLED=0 $(GO) build $(BUILDFLAGS) -o $(BIN) ./cmd/cairn
	CGO_ENABLED=0 $(GO) build $(BUILDFLAGS) -o bin/cairn-lab ./cmd/cairn-lab

deps:
	@bash scripts/install-deps.sh

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

# The whole suite: real tools, real mounts, real servers. Needs root for
# loop and FUSE mounts (tests skip locally without it; CI=true fails them).
test: deps vet test-go fuzz

test-go:
	$(GO) test $(TESTFLAGS) ./...

fuzz:
	FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

demo: deps build
	@bash scripts/demo.sh

bench: build
	@bash scripts/install-deps.sh bench
	@bash scripts/bench.sh

clean:
	rm -rf bin demo
