# Build and check targets. CI (.ci/run) runs `make fmt-check vet test`.
GO ?= go

.PHONY: build test fmt-check vet demo fuzz bench bench-mount

build:
	$(GO) build -o bin/nydusify ./cmd/nydusify

test:
	$(GO) test -count=1 -timeout 20m ./...

fmt-check:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# The main job on a bundled sample tree: build, inspect, verify (see scripts/demo.sh).
demo: build
	./scripts/demo.sh

# Run each fuzz target of the untrusted-input parsers for FUZZTIME.
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./rafs -run XXX -fuzz FuzzBootstrap -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./rafs -run XXX -fuzz FuzzBlobMeta -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./rafsbuild -run XXX -fuzz '^FuzzBuildLayer$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./rafsbuild -run XXX -fuzz FuzzBuildLayerEntries -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./tarstream -run XXX -fuzz FuzzOpen -fuzztime $(FUZZTIME) -fuzzminimizetime 200x
	$(GO) test ./tarstream -run XXX -fuzz FuzzGzipFraming -fuzztime $(FUZZTIME) -fuzzminimizetime 200x

# Build throughput on the Go installation's tree: directory builds per compressor, and a gzip layer.
bench:
	$(GO) test ./rafsbuild -run XXX -bench 'Build(Dir|Layer)' -benchtime 3x

# Lazy FUSE mount (root): mount time, metadata walk and full reads vs the plain directory.
bench-mount:
	$(GO) run ./bench/mount
