package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// EmbeddedCA is the embedded CA the store's certificates come from: the
// SHA-256 of its root certificate (hex) and the node that recorded it.
type EmbeddedCA struct {
	RootSHA256 string
	Node       string
	RecordedAt time.Time
}

// RecordedEmbeddedCA returns the embedded CA recorded by the first node,
// or ErrNotFound.
func (s *Store) RecordedEmbeddedCA(ctx context.Context) (EmbeddedCA, error) {
	var e EmbeddedCA
	var at int64
	err := s.queryRow(ctx, nil, `SELECT root_sha256, node, recorded_at FROM embedded_ca WHERE id = 1`).Scan(&e.RootSHA256, &e.Node, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return EmbeddedCA{}, ErrNotFound
	}
	if err != nil {
		return EmbeddedCA{}, fmt.Errorf("store: reading the embedded CA: %w", err)
	}
	e.RecordedAt = time.UnixMicro(at).UTC()
	return e, nil
}

// RecordEmbeddedCA records e unless a CA is recorded already, and returns
// the one recorded (e, or the earlier one: the caller compares).
func (s *Store) RecordEmbeddedCA(ctx context.Context, e EmbeddedCA) (EmbeddedCA, error) {
	if e.RootSHA256 == "" {
		return EmbeddedCA{}, errors.New("store: RecordEmbeddedCA: the root's SHA-256 is required")
	}
	if _, err := s.exec(ctx, nil, `INSERT INTO embedded_ca (id, root_sha256, node, recorded_at) VALUES (1, $1, $2, $3)
		ON CONFLICT (id) DO NOTHING`, e.RootSHA256, e.Node, s.orNow(e.RecordedAt).UnixMicro()); err != nil {
		return EmbeddedCA{}, fmt.Errorf("store: recording the embedded CA: %w", err)
	}
	return s.RecordedEmbeddedCA(ctx)
}
