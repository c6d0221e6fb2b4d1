package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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

// TestPostgresReusesConnections: connections that concurrent statements
// opened are kept for the next ones. With database/sql's default of 2 idle
// connections the queue's workers closed and reopened most of theirs on
// every statement (a backend forked each time).
func TestPostgresReusesConnections(t *testing.T) {
	const concurrent = 16 // the queue's workers
	opts := freshPostgres(t)
	s := openWith(t, opts, testKeyring(t))
	db := opts.DSN[strings.LastIndex(opts.DSN, "/")+1 : strings.Index(opts.DSN, "?")]
	sessions := func() int {
		out, err := pgServer.Psql(db, "SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.Atoi(out)
		if err != nil {
			t.Fatalf("sessions: %q", out)
		}
		return n
	}
	// round holds concurrent connections at once, then hands them back.
	round := func() {
		ctx := context.Background()
		var conns []*sql.Conn
		for range concurrent {
			c, err := s.db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.PingContext(ctx); err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			c.Close()
		}
	}
	round()
	// pg_stat_database counts a session when it ends; psql's own count
	// once it has ended, so each call adds one to the next reading.
	before := sessions()
	for range 3 {
		round()
	}
	if opened := sessions() - before - 1; opened > 0 {
		t.Errorf("%d connections opened for 3 rounds of %d concurrent statements: the pool dropped the ones it had", opened, concurrent)
	}
}

// BenchmarkPostgresQueueEntryBurst16: one op is 16 goroutines (the
// queue's workers) reading a queue entry at once, then all idle again:
// the pattern that, with the pool keeping 2 idle connections, opened 14
// new ones per burst.
func BenchmarkPostgresQueueEntryBurst16(b *testing.B) {
	s := openWith(b, freshPostgres(b), testKeyring(b))
	ctx := context.Background()
	e := QueueEntry{ID: "bench-entry", Node: "n1", Sender: "a@x.test", Recipients: []string{"b@y.test"},
		State: "queued", NextAttempt: time.Now(), CreatedAt: time.Now()}
	if err := s.PutQueueEntry(ctx, e); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.QueueEntry(ctx, e.ID); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
	}
}
