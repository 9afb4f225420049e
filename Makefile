# Build and check targets. CI (.ci/run) runs `make fmt-check vet tidy-check lint test race`.
GO ?= go

.PHONY: build test fmt-check vet tidy-check lint lint-tool race demo fuzz bench bench-mount bench-s3 mutation

# CGO_ENABLED=0: net and os/user would otherwise link libc dynamically; the
# binary is meant to be one static file (TestStaticBinary checks it).
BIN ?= bin/nydusify
build:
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -o $(BIN) ./cmd/nydusify

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

# go.mod and go.sum are exactly what `go mod tidy` would write.
tidy-check:
	$(GO) mod tidy -diff

# staticcheck at a pinned version, built by the go command on first use.
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK = $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
lint:
	$(STATICCHECK) ./...

# Fetch and build staticcheck only (CI retries this network step on its own).
lint-tool:
	$(STATICCHECK) -version

# The race detector on the packages that run goroutines: chunk cache, FUSE
# mount, layer conversion pipeline, build workers, stream decoders, backends.
# -short skips the one test that converts the whole Go tree.
RACE_PKGS ?= ./blobcache ./imagemount ./rafsfs ./converter ./rafsbuild ./tarstream ./backend
race:
	$(GO) test -race -short -count=1 -timeout 20m $(RACE_PKGS)

# The main job on a generated sample tree: build, inspect, verify (see scripts/demo.sh).
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
	$(GO) test ./rafs -run XXX -fuzz '^FuzzBootstrap$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./rafs -run XXX -fuzz '^FuzzV5Bootstrap$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./rafs -run XXX -fuzz FuzzBlobMeta -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./rafsbuild -run XXX -fuzz '^FuzzBuildLayer$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./rafsbuild -run XXX -fuzz FuzzBuildLayerEntries -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./rafsbuild -run XXX -fuzz FuzzRestoreLayer -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./tarstream -run XXX -fuzz FuzzOpen -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./tarstream -run XXX -fuzz FuzzGzipFraming -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./layout -run XXX -fuzz FuzzOpenFS -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./layout -run XXX -fuzz FuzzOpenManifest -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./packer -run XXX -fuzz FuzzRewriteConfig -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./imagemount -run XXX -fuzz FuzzParseConfig -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./zran -run XXX -fuzz FuzzDecode -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./zran -run XXX -fuzz FuzzParseContextTable -fuzztime $(FUZZTIME) -fuzzminimizetime 200x

# Build throughput on the Go installation's tree: directory builds per compressor, and a gzip layer;
# the zran index of that layer against klauspost's gzip reader alone (ratio, best of 5).
bench:
	$(GO) test ./rafsbuild -run XXX -bench 'Build(Dir|Layer)' -benchtime 3x
	$(GO) test ./zran -run XXX -bench IndexVsKlauspost -benchtime 5x

# Upload of a 1 GiB blob to a real MinIO: PushBlob against `s3cmd put`, best of 3 each.
bench-s3:
	$(GO) test ./backend -run XXX -bench S3Push -benchtime 3x -timeout 30m

# Lazy FUSE mount (root): mount time, metadata walk and full reads vs the plain directory.
bench-mount:
	$(GO) run ./bench/mount

# Mutation testing (gremlins, installed on first use) of the packages that
# define correctness, one package at a time, and prints the score table.
# MUTATION_PKGS="rafs checker" narrows it; results land in mutation-out/.
MUTATION_PKGS ?= rafs rafsbuild packer checker blobcache rafsfs imagemount
mutation:
	./scripts/mutation.sh $(MUTATION_PKGS)
