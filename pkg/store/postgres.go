package store

import (
	"database/sql"
	"errors"
	"fmt"
	"time"

	// The pgx database/sql driver, registered as "pgx".
	_ "github.com/jackc/pgx/v5/stdlib"
)

// openPostgres opens a pool on dsn. Nothing is sent until the first
// statement (the migration), whose error then names the problem.
func openPostgres(dsn string) (*sql.DB, error) {
	if dsn == "" {
		return nil, errors.New("store: driver postgres needs store.dsn (e.g. postgres://sealgate@db.example/sealgate?sslmode=verify-full)")
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		// pgx may echo the DSN, which can hold a password: do not wrap it.
		return nil, fmt.Errorf("store: store.dsn is not a valid PostgreSQL connection string")
	}
	// database/sql keeps 2 idle connections by default: the queue's 16
	// workers, the SMTP sessions' commits and the lease renewals then
	// closed the others after each statement and opened new ones, so
	// that most statements paid a connection (a backend forked, its
	// catalog caches and prepared statements built again, TLS with
	// sslmode=require): 0.7 new sessions per message and PostgreSQL
	// spending ~30 ms of CPU per message in the cluster test. Idle
	// connections stay up to postgresMaxIdle, closed after a quiet spell.
	db.SetMaxIdleConns(postgresMaxIdle)
	db.SetConnMaxIdleTime(postgresMaxIdleTime)
	return db, nil
}

const (
	// postgresMaxIdle covers a node's steady concurrency: 16 queue
	// workers, the committer, lease renewals and a few SMTP sessions.
	postgresMaxIdle = 32
	// postgresMaxIdleTime frees a burst's extra connections for other
	// nodes (max_connections is shared).
	postgresMaxIdleTime = 2 * time.Minute
)
