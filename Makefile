# Build and check targets. CI (.ci/run) runs `make fmt-check vet test`.
GO ?= go

.PHONY: build test fmt-check vet

build:
	$(GO) build -o bin/nydusify ./cmd/nydusify

test:
	$(GO) test -count=1 -timeout 20m ./...

fmt-check:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
