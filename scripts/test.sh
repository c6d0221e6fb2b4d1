#!/usr/bin/env bash
# The one test command (README, .ci/run): installs missing peers, checks
# formatting and static analysis, then runs every test with the race detector,
# and the tests the race detector cannot run (//go:build !race) without it.
# Under CI=true (.ci/run sets it) a skipped test fails the run: tests skip
# only when a peer is missing, and a missing peer must never turn CI green.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-peers.sh

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# go test -json is rendered back to go test's usual output by testreport,
# which then lists skipped tests (and fails on them under CI=true).
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/testreport" ./internal/tools/testreport
judge=()
if [ "${CI:-}" = "true" ]; then judge+=(-fail-on-skip); fi

go test -race -timeout 20m -json "$@" ./... | "$bin/testreport" "${judge[@]}"
# "Zero allocations per decision" (docs/architecture.md) is measurable only
# without the race detector, which allocates on its own.
go test -count=1 -json -run '^TestDecideDoesNotAllocate$' ./pkg/policy |
	"$bin/testreport" "${judge[@]}" -require TestDecideDoesNotAllocate
