package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// AuditEvent is one entry of the audit log: who did what to what. Detail
// is free text for people; it must never carry a secret (callers write it,
// the store cannot tell).
type AuditEvent struct {
	Time    time.Time // now, when zero
	Actor   string    // e.g. "cli:root", "rollout", "portal"
	Action  string    // e.g. "cert.issue", "cert.revoke", "pdfpw.set"
	Subject string    // e.g. an address or a serial
	Detail  string
}

// Audit appends an event to the audit log.
func (s *Store) Audit(ctx context.Context, e AuditEvent) error {
	if e.Action == "" {
		return errors.New("store: Audit: empty action")
	}
	return s.insertAudit(ctx, nil, e)
}

// insertAudit writes e inside tx, or on its own when tx is nil.
func (s *Store) insertAudit(ctx context.Context, tx *sql.Tx, e AuditEvent) error {
	_, err := s.exec(ctx, tx, `INSERT INTO audit_log (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)`,
		s.orNow(e.Time).UnixMicro(), e.Actor, e.Action, e.Subject, e.Detail)
	if err != nil {
		return fmt.Errorf("store: writing audit event %s on %s: %w", e.Action, e.Subject, err)
	}
	return nil
}

// AuditEvents returns the events at or after since, oldest first (in
// insertion order among equal times). The zero since returns everything.
func (s *Store) AuditEvents(ctx context.Context, since time.Time) ([]AuditEvent, error) {
	from := int64(-1 << 63)
	if !since.IsZero() {
		from = since.UnixMicro()
	}
	rows, err := s.db.QueryContext(ctx, `SELECT at, actor, action, subject, detail FROM audit_log WHERE at >= $1 ORDER BY at, id`, from)
	if err != nil {
		return nil, fmt.Errorf("store: reading audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditEvent
	for rows.Next() {
		var (
			e  AuditEvent
			at int64
		)
		if err := rows.Scan(&at, &e.Actor, &e.Action, &e.Subject, &e.Detail); err != nil {
			return nil, fmt.Errorf("store: reading audit log: %w", err)
		}
		e.Time = time.UnixMicro(at).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: reading audit log: %w", err)
	}
	return out, nil
}
