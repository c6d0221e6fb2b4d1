package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// WebhookCursor is where one webhook endpoint stands in the delivery
// events: every event up to LastID that its filter selects has been
// answered with a 2xx. The rest is for people (sealgate webhooks status).
type WebhookCursor struct {
	Name         string
	LastID       int64
	UpdatedAt    time.Time // when LastID last moved (or the cursor was created)
	AttemptAt    time.Time // the last failed attempt (zero: none since the last success)
	FailingSince time.Time // the first failure since the last success (zero: healthy)
	Failures     int64     // failed attempts since the last success
	LastError    string    // why the last attempt failed; never a secret or a URL's credentials
	Node         string    // the gateway node that last wrote this row
}

const webhookCursorColumns = `name, last_id, updated_at, attempt_at, failing_since, failures, last_error, node`

// StartWebhookCursor returns the named endpoint's cursor, creating it at
// the newest delivery event if there is none: a new endpoint gets the
// events from now on, not the whole retention period at once. Two nodes
// starting together create it once.
func (s *Store) StartWebhookCursor(ctx context.Context, name, node string) (WebhookCursor, error) {
	if name == "" {
		return WebhookCursor{}, errors.New("store: StartWebhookCursor: empty name")
	}
	// The newest committed id is a safe start on both databases: ids are
	// handed out in commit order (insertDeliveryEvent), so whatever
	// commits later gets a greater one.
	_, err := s.db.ExecContext(ctx, `INSERT INTO webhook_cursors (`+webhookCursorColumns+`)
		SELECT $1, COALESCE(MAX(id), 0), $2, NULL, NULL, 0, '', $3 FROM delivery_events WHERE 1 = 1
		ON CONFLICT (name) DO NOTHING`, name, s.now().UnixMicro(), node)
	if err != nil {
		return WebhookCursor{}, fmt.Errorf("store: creating webhook cursor %s: %w", name, err)
	}
	return s.WebhookCursor(ctx, name)
}

// WebhookCursor returns the named endpoint's cursor, or ErrNotFound.
func (s *Store) WebhookCursor(ctx context.Context, name string) (WebhookCursor, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+webhookCursorColumns+` FROM webhook_cursors WHERE name = $1`, name)
	c, err := scanWebhookCursor(row.Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("%w: webhook cursor %s", ErrNotFound, name)
	}
	return c, err
}

// WebhookCursors lists every endpoint's cursor by name, including those of
// endpoints no longer configured.
func (s *Store) WebhookCursors(ctx context.Context) ([]WebhookCursor, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+webhookCursorColumns+` FROM webhook_cursors ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: listing webhook cursors: %w", err)
	}
	defer rows.Close()
	var out []WebhookCursor
	for rows.Next() {
		c, err := scanWebhookCursor(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: listing webhook cursors: %w", err)
	}
	return out, nil
}

// AdvanceWebhookCursor moves the named cursor from from to to (to > from)
// and clears its failures. It is a compare and set: if the cursor is no
// longer at from (another node advanced it) nothing changes and the error
// wraps ErrConflict, so a sender that lost its lock can never move a
// cursor backwards or skip what the other sent.
func (s *Store) AdvanceWebhookCursor(ctx context.Context, name string, from, to int64, node string) error {
	if to <= from {
		return fmt.Errorf("store: webhook cursor %s: advancing from %d to %d", name, from, to)
	}
	res, err := s.exec(ctx, nil, `UPDATE webhook_cursors SET last_id = $1, updated_at = $2, attempt_at = NULL, failing_since = NULL,
		failures = 0, last_error = '', node = $3 WHERE name = $4 AND last_id = $5`, to, s.now().UnixMicro(), node, name, from)
	if err != nil {
		return fmt.Errorf("store: advancing webhook cursor %s: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: advancing webhook cursor %s: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: webhook cursor %s is no longer at %d", ErrConflict, name, from)
	}
	return nil
}

// WebhookAttemptFailed records a failed delivery attempt for the named
// endpoint. reason must carry no secret: the caller strips URLs.
func (s *Store) WebhookAttemptFailed(ctx context.Context, name, reason, node string) error {
	now := s.now().UnixMicro()
	_, err := s.exec(ctx, nil, `UPDATE webhook_cursors SET attempt_at = $1, failing_since = COALESCE(failing_since, $1),
		failures = failures + 1, last_error = $2, node = $3 WHERE name = $4`, now, reason, node, name)
	if err != nil {
		return fmt.Errorf("store: webhook %s attempt: %w", name, err)
	}
	return nil
}

// DeliveryEventIDRange returns the smallest and greatest id of the stored
// delivery events (0, 0 when there are none).
func (s *Store) DeliveryEventIDRange(ctx context.Context) (oldest, newest int64, err error) {
	var lo, hi sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MIN(id), MAX(id) FROM delivery_events`).Scan(&lo, &hi); err != nil {
		return 0, 0, fmt.Errorf("store: delivery event ids: %w", err)
	}
	return lo.Int64, hi.Int64, nil
}

func scanWebhookCursor(scan func(...any) error) (WebhookCursor, error) {
	var (
		c                WebhookCursor
		updated          int64
		attempt, failing sql.NullInt64
	)
	if err := scan(&c.Name, &c.LastID, &updated, &attempt, &failing, &c.Failures, &c.LastError, &c.Node); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return c, err
		}
		return c, fmt.Errorf("store: reading webhook cursor: %w", err)
	}
	c.UpdatedAt = time.UnixMicro(updated).UTC()
	c.AttemptAt = goTime(attempt)
	c.FailingSince = goTime(failing)
	return c, nil
}
