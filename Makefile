# Build and check targets. CI (.ci/run) runs `make fmt-check vet test`.
GO ?= go

.PHONY: build test fmt-check vet demo fuzz bench bench-mount mutation

# CGO_ENABLED=0: net and os/user would otherwise link libc dynamically; the
# binary is meant to be one static file (TestStaticBinary checks it).
BIN ?= bin/nydusify
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/nydusify

# The test run ends with a summary listing every skipped test and why
# (internal/testsummary); CI passes TESTSUMMARY_FLAGS=-no-skip so a skipped
# test fails it there.
SHELL := bash
.SHELLFLAGS := -o pipefail -ec
TESTSUMMARY_FLAGS ?=
test:
	$(GO) test -count=1 -timeout 20m -json ./... | $(GO) run ./internal/testsummary $(TESTSUMMARY_FLAGS)

fmt-check:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# The main job on a bundled sample tree: build, inspect, verify (see scripts/demo.sh).
demo: build
	./scripts/demo.sh

# Run each fuzz target of the untrusted-input parsers for FUZZTIME. The rafs
# codec targets check encode/decode identity against the format's tables; the
# parser targets also bound what a hostile input may make them allocate.
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./rafs -run XXX -fuzz '^FuzzChunkInfoV1$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./rafs -run XXX -fuzz '^FuzzMetaHeaderCodec$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./rafs -run XXX -fuzz '^FuzzTOCEntry$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./rafs -run XXX -fuzz FuzzBootstrap -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./rafs -run XXX -fuzz FuzzBlobMeta -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./rafsbuild -run XXX -fuzz FuzzBuildLayer -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./tarstream -run XXX -fuzz FuzzOpen -fuzztime $(FUZZTIME) -fuzzminimizetime 200x

# Build throughput on the Go installation's tree: directory builds per compressor, and a gzip layer.
bench:
	$(GO) test ./rafsbuild -run XXX -bench 'Build(Dir|Layer)' -benchtime 3x

# Lazy FUSE mount (root): mount time, metadata walk and full reads vs the plain directory.
bench-mount:
	$(GO) run ./bench/mount

# Mutation testing (gremlins, installed on first use) of the packages that
# define correctness, one package at a time; see docs/mutation.md.
# MUTATION_PKGS="rafs checker" narrows it; results land in mutation-out/.
MUTATION_PKGS ?= rafs rafsbuild packer checker blobcache rafsfs imagemount
mutation:
	./scripts/mutation.sh $(MUTATION_PKGS)
