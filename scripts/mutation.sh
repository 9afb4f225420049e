#!/usr/bin/env bash
# Mutation testing of the packages that define correctness (make mutation).
# gremlins changes one operator at a time (arithmetic, comparison boundary
# and negation, ++/--, sign) in code the package's own tests cover, runs that
# package's tests (-short: the 5 GiB kernel read is skipped and the kernel
# matrix is cut to its diagonal) and counts the mutant killed when a test
# fails. Results: $MUTATION_OUT/<pkg>.json and a table on stdout.
#
#   scripts/mutation.sh [pkg...]       default: the packages below
#   MUTATION_WORKERS=2 MUTATION_COEFFICIENT=3
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

GREMLINS_VERSION=v0.6.0
pkgs=("$@")
[[ ${#pkgs[@]} -gt 0 ]] || pkgs=(rafs rafsbuild packer checker blobcache rafsfs imagemount)
out=${MUTATION_OUT:-$PWD/mutation-out}
mkdir -p "$out"

gremlins=$(go env GOPATH)/bin/gremlins
if ! go version -m "$gremlins" 2>/dev/null | grep -q "github.com/go-gremlins/gremlins.*$GREMLINS_VERSION"; then
	go install "github.com/go-gremlins/gremlins/cmd/gremlins@$GREMLINS_VERSION"
fi

# -count=1: a cached coverage run would make gremlins time every mutant out.
export GOFLAGS="${GOFLAGS:-} -short -count=1"
for p in "${pkgs[@]}"; do
	echo "=== $p"
	start=$SECONDS
	(cd "$p" && "$gremlins" unleash --silent \
		--workers "${MUTATION_WORKERS:-2}" \
		--timeout-coefficient "${MUTATION_COEFFICIENT:-3}" \
		--output "$out/$p.json") || true
	echo "=== $p: $((SECONDS - start))s"
done
go run ./internal/mutationreport "$out" "${pkgs[@]}"
