package store

import (
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// One PostgreSQL server serves the whole package (initdb costs about a
// second); every test gets its own database on it.
var (
	pgOnce   sync.Once
	pgServer *testpeer.Postgres
	pgErr    error
)

func init() {
	backendsExtra = append(backendsExtra, backend{"postgres", freshPostgres})
}

func freshPostgres(t testing.TB) Options {
	t.Helper()
	pgOnce.Do(func() { pgServer, pgErr = testpeer.StartPostgresServer() })
	if errors.Is(pgErr, testpeer.ErrNoPostgres) {
		if testpeer.InCI() {
			t.Fatalf("peer PostgreSQL: %v", pgErr)
		}
		t.Skipf("peer PostgreSQL: %v; `make test` installs it", pgErr)
	}
	if pgErr != nil {
		t.Fatalf("starting PostgreSQL: %v", pgErr)
	}
	return Options{Driver: "postgres", DSN: pgServer.NewDatabase(t)}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pgServer != nil {
		pgServer.Stop()
	}
	os.Exit(code)
}
