package store

import (
	"database/sql"
	"errors"
	"fmt"

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
	return db, nil
}
