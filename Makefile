.PHONY: build test bench soak-cluster run deb

build:
	go build -o bin/sealgate ./cmd/sealgate

# Installs missing Debian peers, then gofmt, go vet, staticcheck and go test -race.
test:
	scripts/test.sh

# Benchmarks (figures quoted in closing notes come from here).
bench:
	go test -run '^$$' -bench . -benchmem ./...

# The cluster test with 10,000 messages per phase (the suite sends the issue's 2,000).
soak-cluster:
	SEALGATE_CLUSTER_MESSAGES=10000 go test -count=1 -v -run TestClusterTwoNodesOnePostgres -timeout 60m ./pkg/gateway/e2e/

run: build
	bin/sealgate serve --config config.example.toml

# The Debian package (dist/sealgate_<version>_<arch>.deb): binary, conffile,
# hardened systemd unit, sealgate user. See README "Install on Debian".
deb:
	scripts/build-deb.sh
