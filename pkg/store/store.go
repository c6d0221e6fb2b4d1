// Package store persists sealgate's state: our users' certificates and
// their private keys, recipients' certificates, PDF passwords, queue
// metadata and the audit log.
//
// The embedded default is a SQLite file under data_dir (modernc.org/sqlite,
// pure Go, WAL); several gateway nodes share a PostgreSQL database instead.
// Both run the very same SQL: statements use $1-style placeholders (which
// SQLite accepts too), portable types (TEXT, BIGINT, a BLOB/BYTEA token in
// the schema) and INSERT ... ON CONFLICT upserts. Times are stored as Unix
// microseconds in BIGINT columns and come back in UTC.
//
// Secrets (private keys, PDF passwords) are passed in plain and sealed with
// the secret.Keyring inside the store, with additional data that binds each
// value to its row: a sealed key copied into another row does not open.
// Callers never handle ciphertext.
//
// E-mail addresses are matched case-insensitively (they are lower-cased for
// lookup); the spelling a caller stored is what it gets back.
//
// Consumers should declare the few methods they use as an interface in
// their own package; *Store satisfies it.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sealgate/sealgate/pkg/secret"

	// The pure-Go SQLite database/sql driver, registered as "sqlite".
	"modernc.org/sqlite"
)

// ErrNotFound is returned (wrapped) when a lookup or delete finds no row.
var ErrNotFound = errors.New("store: not found")

// ErrConflict is returned (wrapped) when a write would destroy data that
// must not be overwritten, such as a different private key under an id
// already in use.
var ErrConflict = errors.New("store: conflict")

// Options selects and locates the database.
type Options struct {
	// Driver is "sqlite" (default when empty) or "postgres".
	Driver string
	// Path is the SQLite file, usually <data_dir>/sealgate.db. It is
	// created 0600 (its directory 0700) if absent, and tightened to 0600
	// if it exists with looser permissions.
	Path string
	// DSN is the PostgreSQL connection string (store.dsn), e.g.
	// "postgres://sealgate@db/sealgate?sslmode=verify-full".
	DSN string
	// Keyring seals secrets at rest. Required: without it the store
	// would have to keep secrets in plain, so Open refuses.
	Keyring *secret.Keyring
}

// Store is the database handle. It is safe for concurrent use.
type Store struct {
	db *sql.DB
	d  *dialect
	kr *secret.Keyring
	// now is the clock, replaceable in tests.
	now func() time.Time
	// stmts holds prepared statements by query text, for the writes that
	// run once per message or per issued certificate: parsing the same
	// SQL again cost modernc's SQLite ~4% of a rollout's CPU.
	stmts sync.Map
}

// Open connects to the database and brings its schema up to date. Opening
// an up-to-date database changes nothing.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Keyring == nil {
		return nil, errors.New("store: no keyring: secrets would be stored in plain; load the master key (pki.master_key_file) first")
	}
	var (
		db  *sql.DB
		d   *dialect
		err error
	)
	switch opts.Driver {
	case "", "sqlite":
		db, err = openSQLite(opts.Path)
		d = sqliteDialect
	case "postgres":
		db, err = openPostgres(opts.DSN)
		d = postgresDialect
	default:
		return nil, fmt.Errorf("store: unknown driver %q (store.driver must be sqlite or postgres)", opts.Driver)
	}
	if err != nil {
		return nil, err
	}
	if err := ping(ctx, db, d); err != nil {
		db.Close()
		if d == postgresDialect {
			return nil, fmt.Errorf("store: connecting to PostgreSQL (store.dsn): %w", err)
		}
		return nil, fmt.Errorf("store: opening SQLite database %s: %w", opts.Path, err)
	}
	s := &Store{db: db, d: d, kr: opts.Keyring, now: time.Now}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the database.
func (s *Store) Close() error {
	s.stmts.Range(func(_, v any) bool { v.(*sql.Stmt).Close(); return true })
	return s.db.Close()
}

// prepared returns the statement for query, preparing it on first use.
func (s *Store) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	if v, ok := s.stmts.Load(query); ok {
		return v.(*sql.Stmt), nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if v, loaded := s.stmts.LoadOrStore(query, st); loaded {
		st.Close()
		return v.(*sql.Stmt), nil
	}
	return st, nil
}

// stmt is the prepared statement for query, bound to tx when tx is set.
func (s *Store) stmt(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	st, err := s.prepared(ctx, query)
	if err != nil || tx == nil {
		return st, err
	}
	return tx.StmtContext(ctx, st), nil
}

// exec runs a prepared statement inside tx, or on its own when tx is nil.
func (s *Store) exec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	st, err := s.stmt(ctx, tx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// queryRow runs a prepared single-row query inside tx, or on its own when
// tx is nil.
func (s *Store) queryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	st, err := s.stmt(ctx, tx, query)
	if err != nil {
		// Unprepared, so that the error surfaces at Scan like any other.
		if tx != nil {
			return tx.QueryRowContext(ctx, query, args...)
		}
		return s.db.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// query runs a prepared query.
func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// ping checks the connection. On SQLite, opening a connection runs the
// pragmas, and switching a new file to WAL can meet another process's
// lock with SQLITE_BUSY without the busy timeout applying (seen with
// several gateways starting on one fresh data_dir): that is retried for
// as long as the busy timeout would have waited.
func ping(ctx context.Context, db *sql.DB, d *dialect) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := db.PingContext(ctx)
		var se *sqlite.Error
		if err == nil || d != sqliteDialect || !errors.As(err, &se) || se.Code()&0xff != sqliteBusy || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// sqliteBusy is SQLITE_BUSY, the primary result code.
const sqliteBusy = 5

// sqlitePragmas: WAL lets readers run beside the one writer; busy_timeout
// makes a writer wait for the lock instead of failing at once; synchronous
// FULL because the queue's "accepted" must survive a power cut; _txlock
// immediate takes the write lock at BEGIN, so a read-then-write
// transaction cannot deadlock with another one on lock upgrade.
const sqlitePragmas = "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)&_txlock=immediate"

func openSQLite(path string) (*sql.DB, error) {
	if path == "" {
		return nil, errors.New("store: no SQLite path (it is <data_dir>/sealgate.db; set data_dir)")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("store: SQLite path %q contains '?' or '#'; choose a data_dir without them", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: creating the directory of %s: %w", path, err)
	}
	// Create the file ourselves so it is 0600 from the first byte; SQLite
	// gives the -wal and -shm files the same mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	st, err := f.Stat()
	if err == nil && st.Mode().Perm()&0o077 != 0 {
		err = f.Chmod(0o600)
	}
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("store: making %s private (0600): %w", path, err)
	}
	db, err := sql.Open("sqlite", path+"?"+sqlitePragmas)
	if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	return db, nil
}

// tx runs fn in a transaction, committing when it returns nil.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// normEmail is the lookup form of an address.
func normEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// dbTime stores a time as Unix microseconds; the zero time is NULL.
func dbTime(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func goTime(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}

// orNow is t, or the store's clock when t is zero.
func (s *Store) orNow(t time.Time) time.Time {
	if t.IsZero() {
		return s.now()
	}
	return t
}

// rowsAffected turns "deleted nothing" into ErrNotFound.
func rowsAffected(res sql.Result, what string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return nil
}

// Ping checks that the database answers, for health endpoints.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("store: %s does not answer: %w", s.d.name, err)
	}
	return nil
}
