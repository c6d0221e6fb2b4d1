package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DeliveryEvent is one recipient's outcome for one message, as kept for
// the events API and webhooks. It holds addresses, outcomes and reasons;
// callers must never put a body, subject, password or key into it.
type DeliveryEvent struct {
	// ID orders events: assigned by the database on insert, increasing in
	// commit order on both SQLite and PostgreSQL (see insertDeliveryEvent),
	// so a reader that remembers the last ID it saw misses nothing.
	ID        int64
	Time      time.Time // now, when zero
	Node      string
	QueueID   string
	MessageID string
	Sender    string
	Recipient string
	Outcome   string
	Method    string
	Signed    bool
	Rule      string
	Attempt   int
	Reason    string
	// TLS is the next hop's TLS as a JSON object ("" when unknown or not
	// applicable); the store keeps it as given.
	TLS string
	// Received is when the gateway took the message (zero: unknown).
	Received time.Time
}

// EventFilter selects delivery events; zero fields match everything.
type EventFilter struct {
	After     int64     // only events with a greater ID (the cursor)
	Since     time.Time // at or after
	Until     time.Time // before
	Recipient string    // case-insensitive
	QueueID   string
	Outcomes  []string
	Limit     int // 0: no cap
}

// deliveryEventsLock serialises the transactions that insert delivery
// events on PostgreSQL. An identity column hands out numbers at insert
// time, not at commit: without the lock a transaction could take id 10,
// commit after another's id 11, and a reader that saw 11 first would skip
// 10 for good. Holding a transaction-scoped advisory lock from before the
// insert until the commit makes id order the commit order. SQLite has one
// writer at a time already. The key is an arbitrary constant reserved for
// this purpose.
const deliveryEventsLock = `SELECT pg_advisory_xact_lock(727465013)`

// RecordDelivery appends a delivery event and returns its ID.
func (s *Store) RecordDelivery(ctx context.Context, e DeliveryEvent) (int64, error) {
	var id int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		id, err = s.insertDeliveryEvent(ctx, tx, e)
		return err
	})
	return id, err
}

func (s *Store) insertDeliveryEvent(ctx context.Context, tx *sql.Tx, e DeliveryEvent) (int64, error) {
	if e.QueueID == "" || e.Recipient == "" || e.Outcome == "" {
		return 0, fmt.Errorf("store: RecordDelivery: queue id, recipient and outcome are required (got %q, %q, %q)", e.QueueID, e.Recipient, e.Outcome)
	}
	if s.d == postgresDialect {
		if _, err := tx.ExecContext(ctx, deliveryEventsLock); err != nil {
			return 0, fmt.Errorf("store: recording delivery event: %w", err)
		}
	}
	signed := 0
	if e.Signed {
		signed = 1
	}
	var id int64
	err := s.queryRow(ctx, tx, `INSERT INTO delivery_events (at, node, queue_id, message_id, sender, recipient, recipient_key,
		outcome, method, signed, rule, attempt, reason, tls, received_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id`,
		s.orNow(e.Time).UnixMicro(), e.Node, e.QueueID, e.MessageID, e.Sender, e.Recipient, normEmail(e.Recipient),
		e.Outcome, e.Method, signed, e.Rule, e.Attempt, e.Reason, e.TLS, dbTime(e.Received)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("store: recording delivery event %s for %s: %w", e.Outcome, e.QueueID, err)
	}
	return id, nil
}

// DeliveryEvents returns the events f selects, in ID order (oldest first).
func (s *Store) DeliveryEvents(ctx context.Context, f EventFilter) ([]DeliveryEvent, error) {
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	where = append(where, "id > "+arg(f.After))
	if !f.Since.IsZero() {
		where = append(where, "at >= "+arg(f.Since.UnixMicro()))
	}
	if !f.Until.IsZero() {
		where = append(where, "at < "+arg(f.Until.UnixMicro()))
	}
	if f.Recipient != "" {
		where = append(where, "recipient_key = "+arg(normEmail(f.Recipient)))
	}
	if f.QueueID != "" {
		where = append(where, "queue_id = "+arg(f.QueueID))
	}
	if len(f.Outcomes) > 0 {
		var in []string
		for _, o := range f.Outcomes {
			in = append(in, arg(o))
		}
		where = append(where, "outcome IN ("+strings.Join(in, ", ")+")")
	}
	q := `SELECT id, at, node, queue_id, message_id, sender, recipient, outcome, method, signed, rule, attempt, reason, tls, received_at
		FROM delivery_events WHERE ` + strings.Join(where, " AND ") + ` ORDER BY id`
	if f.Limit > 0 {
		q += " LIMIT " + arg(f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: reading delivery events: %w", err)
	}
	defer rows.Close()
	var out []DeliveryEvent
	for rows.Next() {
		var (
			e        DeliveryEvent
			at       int64
			signed   int64
			received sql.NullInt64
		)
		if err := rows.Scan(&e.ID, &at, &e.Node, &e.QueueID, &e.MessageID, &e.Sender, &e.Recipient, &e.Outcome, &e.Method,
			&signed, &e.Rule, &e.Attempt, &e.Reason, &e.TLS, &received); err != nil {
			return nil, fmt.Errorf("store: reading delivery events: %w", err)
		}
		e.Time = time.UnixMicro(at).UTC()
		e.Signed = signed != 0
		e.Received = goTime(received)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: reading delivery events: %w", err)
	}
	return out, nil
}

// PruneDeliveryEvents deletes the events older than before and returns how
// many went.
func (s *Store) PruneDeliveryEvents(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM delivery_events WHERE at < $1`, before.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("store: pruning delivery events: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// APIToken is a bearer token for the HTTP API. The token itself is shown
// once when created and never stored: Hash is its SHA-256 (hex).
type APIToken struct {
	Name       string
	Hash       string
	Scopes     []string
	CreatedAt  time.Time
	RevokedAt  time.Time // zero: valid
	LastUsedAt time.Time // zero: never used
}

// CreateAPIToken stores a new token. A name in use, even by a revoked
// token, is ErrConflict: the audit trail keeps naming one token.
func (s *Store) CreateAPIToken(ctx context.Context, t APIToken) error {
	if t.Name == "" || len(t.Hash) != 64 || len(t.Scopes) == 0 {
		return errors.New("store: CreateAPIToken: name, a SHA-256 hash and at least one scope are required")
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM api_tokens WHERE name = $1`, t.Name).Scan(&n); err != nil {
			return fmt.Errorf("store: creating api token %s: %w", t.Name, err)
		}
		if n > 0 {
			return fmt.Errorf("%w: an api token named %q exists (revoked tokens keep their name)", ErrConflict, t.Name)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO api_tokens (name, hash, scopes, created_at) VALUES ($1, $2, $3, $4)`,
			t.Name, t.Hash, strings.Join(t.Scopes, ","), s.orNow(t.CreatedAt).UnixMicro()); err != nil {
			return fmt.Errorf("store: creating api token %s: %w", t.Name, err)
		}
		return s.insertAudit(ctx, tx, AuditEvent{Actor: "cli", Action: "api.token.create", Subject: t.Name,
			Detail: "scopes " + strings.Join(t.Scopes, ",")})
	})
}

// APITokenByHash returns the token with this hash (revoked ones too: the
// caller checks RevokedAt), or ErrNotFound.
func (s *Store) APITokenByHash(ctx context.Context, hash string) (APIToken, error) {
	row := s.queryRow(ctx, nil, `SELECT name, hash, scopes, created_at, revoked_at, last_used_at FROM api_tokens WHERE hash = $1`, hash)
	t, err := scanAPIToken(row.Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return APIToken{}, fmt.Errorf("%w: api token", ErrNotFound)
	}
	return t, err
}

// APITokens lists every token (without secrets: there are none), by name.
func (s *Store) APITokens(ctx context.Context) ([]APIToken, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, hash, scopes, created_at, revoked_at, last_used_at FROM api_tokens ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: listing api tokens: %w", err)
	}
	defer rows.Close()
	var out []APIToken
	for rows.Next() {
		t, err := scanAPIToken(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: listing api tokens: %w", err)
	}
	return out, nil
}

// RevokeAPIToken marks the named token revoked (ErrNotFound if there is
// none that is valid).
func (s *Store) RevokeAPIToken(ctx context.Context, name string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL`, s.now().UnixMicro(), name)
		if err != nil {
			return fmt.Errorf("store: revoking api token %s: %w", name, err)
		}
		if err := rowsAffected(res, "store: valid api token "+name); err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, AuditEvent{Actor: "cli", Action: "api.token.revoke", Subject: name})
	})
}

// TouchAPIToken records that the token was used at, at most once a minute
// per token (a busy poller does not write on every request).
func (s *Store) TouchAPIToken(ctx context.Context, name string, at time.Time) error {
	_, err := s.exec(ctx, nil, `UPDATE api_tokens SET last_used_at = $1 WHERE name = $2 AND (last_used_at IS NULL OR last_used_at < $3)`,
		at.UnixMicro(), name, at.Add(-time.Minute).UnixMicro())
	if err != nil {
		return fmt.Errorf("store: api token %s last use: %w", name, err)
	}
	return nil
}

func scanAPIToken(scan func(...any) error) (APIToken, error) {
	var (
		t                APIToken
		scopes           string
		created          int64
		revoked, touched sql.NullInt64
	)
	if err := scan(&t.Name, &t.Hash, &scopes, &created, &revoked, &touched); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return t, err
		}
		return t, fmt.Errorf("store: reading api token: %w", err)
	}
	t.Scopes = strings.Split(scopes, ",")
	t.CreatedAt = time.UnixMicro(created).UTC()
	t.RevokedAt = goTime(revoked)
	t.LastUsedAt = goTime(touched)
	return t, nil
}
