package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// QueueEntry is the metadata of one queued message. The message itself is
// either in the spool files of the node that accepted it (Node; SQLite,
// and entries written before the message moved into the database) or,
// sealed, in the entry's row (Stored: PutQueueMessage), where any node can
// deliver it while it holds the entry's lease (ClaimQueueEntries). The
// store gives the gateway durable, shared bookkeeping: what is waiting,
// where, until when, and why. States are the gateway's vocabulary; the
// store only requires one.
type QueueEntry struct {
	ID          string // spool id, unique across nodes
	Node        string // the node that accepted the message (whose spool holds it unless Stored)
	Sender      string
	Recipients  []string
	State       string // e.g. "queued", "deferred", "held"
	Attempts    int
	NextAttempt time.Time // zero: not scheduled
	LastError   string
	HoldReason  string
	Size        int64
	CreatedAt   time.Time // set by the first put (now, when zero) and kept
	UpdatedAt   time.Time // set by every put
	// LeaseNode is the node working on the entry until LeaseUntil ("" and
	// zero: nobody). A put writes both as given.
	LeaseNode  string
	LeaseUntil time.Time
	// Stored says the sealed message is in the entry's row (read it with
	// QueueMessage). Read only: puts keep the message as it is.
	Stored bool
	// Lane is the queue the entry belongs to: LaneOutbound (also for "")
	// or LaneInbound. Claims, renewals and recovery stay in their lane.
	Lane string
}

// Queue lanes: the outbound queue (the organisation's mail leaving for the
// world) and the inbound one ([inbound]: mail for internal users, relayed
// to inbound.next_hop). They share the queue table and never each other's
// entries.
const (
	LaneOutbound = "outbound"
	LaneInbound  = "inbound"
)

// laneOf is e's lane, outbound when unset; an unknown lane is an error.
func laneOf(lane string) (string, error) {
	switch lane {
	case "", LaneOutbound:
		return LaneOutbound, nil
	case LaneInbound:
		return LaneInbound, nil
	}
	return "", fmt.Errorf("unknown queue lane %q (want %q or %q)", lane, LaneOutbound, LaneInbound)
}

// QueueFilter selects queue entries; zero fields match everything.
type QueueFilter struct {
	Node  string
	Lane  string // LaneOutbound or LaneInbound; "" matches both
	State string
	// DueBy keeps entries whose NextAttempt is set and not after it.
	DueBy time.Time
	// Limit caps the result (0: no cap).
	Limit int
}

// PutQueueEntry inserts or replaces (by ID) a queue entry.
func (s *Store) PutQueueEntry(ctx context.Context, e QueueEntry) error {
	return s.putQueueEntry(ctx, nil, e)
}

// putQueueEntry writes e inside tx, or on its own when tx is nil.
func (s *Store) putQueueEntry(ctx context.Context, tx *sql.Tx, e QueueEntry) error {
	if e.ID == "" {
		return errors.New("store: PutQueueEntry: empty id")
	}
	if e.State == "" {
		return fmt.Errorf("store: PutQueueEntry %s: empty state", e.ID)
	}
	lane, err := laneOf(e.Lane)
	if err != nil {
		return fmt.Errorf("store: PutQueueEntry %s: %w", e.ID, err)
	}
	rcpts := e.Recipients
	if rcpts == nil {
		rcpts = []string{}
	}
	rj, err := json.Marshal(rcpts)
	if err != nil {
		return fmt.Errorf("store: PutQueueEntry %s: %w", e.ID, err)
	}
	now := s.now()
	_, err = s.exec(ctx, tx, `INSERT INTO queue
		(id, node, sender, recipients, state, attempts, next_attempt, last_error, hold_reason, size, created_at, updated_at,
			lease_node, lease_until, lane)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
		ON CONFLICT (id) DO UPDATE SET
			node = excluded.node, sender = excluded.sender, recipients = excluded.recipients,
			state = excluded.state, attempts = excluded.attempts, next_attempt = excluded.next_attempt,
			last_error = excluded.last_error, hold_reason = excluded.hold_reason, size = excluded.size,
			updated_at = excluded.updated_at, lease_node = excluded.lease_node, lease_until = excluded.lease_until,
			lane = excluded.lane`,
		e.ID, e.Node, e.Sender, string(rj), e.State, int64(e.Attempts), dbTime(e.NextAttempt),
		e.LastError, e.HoldReason, e.Size, s.orNow(e.CreatedAt).UnixMicro(), now.UnixMicro(),
		e.LeaseNode, dbTime(e.LeaseUntil), lane)
	if err != nil {
		return fmt.Errorf("store: saving queue entry %s: %w", e.ID, err)
	}
	return nil
}

const queueColumns = `id, node, sender, recipients, state, attempts, next_attempt, last_error, hold_reason, size, created_at, updated_at,
	lease_node, lease_until, CASE WHEN message IS NULL THEN 0 ELSE 1 END, lane`

// QueueEntry returns one entry, or ErrNotFound.
func (s *Store) QueueEntry(ctx context.Context, id string) (QueueEntry, error) {
	e, err := scanQueueEntry(s.queryRow(ctx, nil, `SELECT `+queueColumns+` FROM queue WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return QueueEntry{}, fmt.Errorf("store: queue entry %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return QueueEntry{}, fmt.Errorf("store: reading queue entry %s: %w", id, err)
	}
	return e, nil
}

// UpdateQueueEntry reads entry id, lets fn change it, and writes it back,
// all in one transaction, so that two nodes or goroutines updating the
// same entry (attempts, state) do not lose each other's changes. fn's
// error aborts the update and is returned as is. ErrNotFound if absent.
func (s *Store) UpdateQueueEntry(ctx context.Context, id string, fn func(*QueueEntry) error) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		e, err := scanQueueEntry(tx.QueryRowContext(ctx, `SELECT `+queueColumns+` FROM queue WHERE id = $1`+s.d.forUpdate, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: queue entry %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("store: reading queue entry %s: %w", id, err)
		}
		lane := e.Lane
		if err := fn(&e); err != nil {
			return err
		}
		if e.ID != id {
			return fmt.Errorf("store: UpdateQueueEntry %s: the id cannot change (got %s)", id, e.ID)
		}
		if e.Lane != lane {
			return fmt.Errorf("store: UpdateQueueEntry %s: the lane cannot change (%s to %s)", id, lane, e.Lane)
		}
		return s.putQueueEntry(ctx, tx, e)
	})
}

// QueueEntries lists entries matching f, the earliest due first (entries
// without NextAttempt last), then oldest first.
func (s *Store) QueueEntries(ctx context.Context, f QueueFilter) ([]QueueEntry, error) {
	q := `SELECT ` + queueColumns + ` FROM queue WHERE 1 = 1`
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.Node != "" {
		q += ` AND node = ` + arg(f.Node)
	}
	if f.Lane != "" {
		lane, err := laneOf(f.Lane)
		if err != nil {
			return nil, fmt.Errorf("store: listing queue: %w", err)
		}
		q += ` AND lane = ` + arg(lane)
	}
	if f.State != "" {
		q += ` AND state = ` + arg(f.State)
	}
	if !f.DueBy.IsZero() {
		q += ` AND next_attempt IS NOT NULL AND next_attempt <= ` + arg(f.DueBy.UnixMicro())
	}
	q += ` ORDER BY CASE WHEN next_attempt IS NULL THEN 1 ELSE 0 END, next_attempt, created_at, id`
	if f.Limit > 0 {
		q += ` LIMIT ` + arg(int64(f.Limit))
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: listing queue: %w", err)
	}
	defer rows.Close()
	var out []QueueEntry
	for rows.Next() {
		e, err := scanQueueEntry(rows)
		if err != nil {
			return nil, fmt.Errorf("store: listing queue: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: listing queue: %w", err)
	}
	return out, nil
}

// DeleteQueueEntry removes an entry (delivered or bounced); ErrNotFound if
// there was none.
func (s *Store) DeleteQueueEntry(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM queue WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("store: deleting queue entry %s: %w", id, err)
	}
	return rowsAffected(res, "store: queue entry "+id)
}

func scanQueueEntry(r scanner) (QueueEntry, error) {
	var (
		e                    QueueEntry
		rcpts                string
		attempts             int64
		next, leaseUntil     sql.NullInt64
		createdAt, updatedAt int64
		stored               int64
	)
	if err := r.Scan(&e.ID, &e.Node, &e.Sender, &rcpts, &e.State, &attempts, &next, &e.LastError,
		&e.HoldReason, &e.Size, &createdAt, &updatedAt, &e.LeaseNode, &leaseUntil, &stored, &e.Lane); err != nil {
		return QueueEntry{}, err
	}
	if err := json.Unmarshal([]byte(rcpts), &e.Recipients); err != nil {
		return QueueEntry{}, fmt.Errorf("queue entry %s: recipients column: %w", e.ID, err)
	}
	e.Attempts = int(attempts)
	e.NextAttempt = goTime(next)
	e.CreatedAt = time.UnixMicro(createdAt).UTC()
	e.UpdatedAt = time.UnixMicro(updatedAt).UTC()
	e.LeaseUntil = goTime(leaseUntil)
	e.Stored = stored != 0
	return e, nil
}
