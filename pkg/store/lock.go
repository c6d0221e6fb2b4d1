package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"
)

// ErrLocked is returned by TryLock when another process holds the lock.
var ErrLocked = errors.New("store: locked by another process")

// TryLock takes the named exclusive lock for everyone using this database
// and returns its release, or ErrLocked at once if another holds it. On
// PostgreSQL it is a session advisory lock on a connection of its own,
// so it spans gateway nodes and ends with the connection if the process
// dies; on SQLite (one machine, one data_dir) it returns a no-op release
// and the caller's file lock in data_dir does the work.
func (s *Store) TryLock(ctx context.Context, name string) (release func(), err error) {
	if s.d != postgresDialect {
		return func() {}, nil
	}
	key := advisoryKey(name)
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: lock %s: %w", name, err)
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Close()
		return nil, fmt.Errorf("store: lock %s: %w", name, err)
	}
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("%w: %s", ErrLocked, name)
	}
	return func() {
		// Unlock explicitly: Conn.Close returns the connection to the
		// pool, where its session, and so the lock, would live on.
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key)
		conn.Close()
	}, nil
}

// advisoryKey is the PostgreSQL advisory lock key of a named lock.
func advisoryKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("sealgate:" + name))
	return int64(h.Sum64())
}

// HeldLock is a named lock taken by TryLockHeld, for a holder that keeps
// it for long (a webhook sender): Alive tells it whether it still has it.
type HeldLock struct {
	conn *sql.Conn // nil on SQLite
	key  int64
	once sync.Once
}

// TryLockHeld is TryLock for a long-held lock. On PostgreSQL the lock lives
// as long as its connection's session: if the connection breaks (a database
// restart, a network cut), the server frees the lock and another node may
// take it, which Alive then reports.
func (s *Store) TryLockHeld(ctx context.Context, name string) (*HeldLock, error) {
	if s.d != postgresDialect {
		return &HeldLock{}, nil
	}
	key := advisoryKey(name)
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: lock %s: %w", name, err)
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Close()
		return nil, fmt.Errorf("store: lock %s: %w", name, err)
	}
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("%w: %s", ErrLocked, name)
	}
	return &HeldLock{conn: conn, key: key}, nil
}

// Alive returns nil while the lock is held: on PostgreSQL its session
// still holds the advisory lock (asked on the lock's own connection, so a
// broken connection is an error, never a silent new session).
func (l *HeldLock) Alive(ctx context.Context) error {
	if l.conn == nil {
		return nil
	}
	var held bool
	err := l.conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
		AND granted AND objsubid = 1 AND classid::bigint = $1 AND objid::bigint = $2)`,
		int64(uint64(l.key)>>32), int64(uint64(l.key)&0xffffffff)).Scan(&held)
	if err != nil {
		return fmt.Errorf("store: checking a held lock: %w", err)
	}
	if !held {
		return fmt.Errorf("%w: the lock is no longer held by this session", ErrLocked)
	}
	return nil
}

// Release frees the lock; calling it again does nothing.
func (l *HeldLock) Release() {
	l.once.Do(func() {
		if l.conn == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = l.conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, l.key)
		l.conn.Close()
	})
}
