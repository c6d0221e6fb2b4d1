#!/usr/bin/env bash
# The one test command (README, .ci/run): installs missing peers, checks
# formatting and static analysis, then runs every test with the race detector.
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
go test -race -timeout 20m "$@" ./...
