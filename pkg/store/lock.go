package store

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
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
	h := fnv.New64a()
	h.Write([]byte("sealgate:" + name))
	key := int64(h.Sum64())
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
