package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// MaxQueueMessage caps the sealed message one queue row takes (PostgreSQL's
// bytea limit is 1 GB; this leaves room and refuses nonsense early).
const MaxQueueMessage = 512 << 20

// PutQueueMessage writes entry e and its sealed message in one transaction:
// when it returns nil both are committed, and the gateway may answer 250.
// The store does not look into sealed (the gateway seals it with the
// spool's format and keyring); the entry's Stored reads true afterwards.
func (s *Store) PutQueueMessage(ctx context.Context, e QueueEntry, sealed []byte) error {
	if err := checkQueueMessage(e, sealed); err != nil {
		return err
	}
	return s.tx(ctx, func(tx *sql.Tx) error { return s.putQueueMessage(ctx, tx, e, sealed) })
}

func checkQueueMessage(e QueueEntry, sealed []byte) error {
	if len(sealed) == 0 {
		return fmt.Errorf("store: PutQueueMessage %s: empty message", e.ID)
	}
	if len(sealed) > MaxQueueMessage {
		return fmt.Errorf("store: PutQueueMessage %s: message of %d bytes exceeds %d", e.ID, len(sealed), MaxQueueMessage)
	}
	return nil
}

func (s *Store) putQueueMessage(ctx context.Context, tx *sql.Tx, e QueueEntry, sealed []byte) error {
	if err := s.putQueueEntry(ctx, tx, e); err != nil {
		return err
	}
	if _, err := s.exec(ctx, tx, `UPDATE queue SET message = $2 WHERE id = $1`, e.ID, sealed); err != nil {
		return fmt.Errorf("store: saving queued message %s: %w", e.ID, err)
	}
	return nil
}

// QueueMessage returns the sealed message of entry id, or ErrNotFound when
// there is no such entry or its message is not in the store (a spool file).
func (s *Store) QueueMessage(ctx context.Context, id string) ([]byte, error) {
	var b []byte
	err := s.queryRow(ctx, nil, `SELECT message FROM queue WHERE id = $1`, id).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) || err == nil && b == nil {
		return nil, fmt.Errorf("store: queued message %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: reading queued message %s: %w", id, err)
	}
	return b, nil
}

// ClaimQueueEntries gives node the lease, until until, on up to limit
// entries of lane whose message is in the store, that are due at now and
// whose lease is free or has run out (its node died or stalls), and returns
// them. Entries of the other lane are never returned: each lane has its
// own queue and relay.
// On PostgreSQL rows another node is claiming at the same moment are
// skipped (FOR UPDATE SKIP LOCKED), so two nodes never get the same entry
// from one round, and a row claimed and committed meanwhile is re-checked
// and left alone.
func (s *Store) ClaimQueueEntries(ctx context.Context, node, lane string, now, until time.Time, limit int) ([]QueueEntry, error) {
	if node == "" {
		return nil, errors.New("store: ClaimQueueEntries: empty node")
	}
	lane, err := laneOf(lane)
	if err != nil {
		return nil, fmt.Errorf("store: ClaimQueueEntries: %w", err)
	}
	if limit <= 0 {
		limit = 100
	}
	// The candidates are picked once (a materialised CTE): as a plain
	// IN (subquery) PostgreSQL may run the locking subquery again per
	// row it joins, and a claim then took more than limit rows.
	q := `WITH picked AS MATERIALIZED (
		SELECT id FROM queue WHERE lane = $5 AND message IS NOT NULL AND next_attempt IS NOT NULL AND next_attempt <= $3
			AND (lease_until IS NULL OR lease_until < $3)
		ORDER BY next_attempt, id LIMIT $4` + s.d.skipLocked + `)
		UPDATE queue SET lease_node = $1, lease_until = $2 WHERE id IN (SELECT id FROM picked)
		AND lane = $5 AND (lease_until IS NULL OR lease_until < $3)
		RETURNING ` + queueColumns
	var out []QueueEntry
	err = s.tx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, q, node, until.UnixMicro(), now.UnixMicro(), int64(limit), lane)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanQueueEntry(rows)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("store: claiming queue entries for %s: %w", node, err)
	}
	return out, nil
}

// RenewLeases extends node's leases on the entries ids of lane to until and
// returns how many it still held (an entry whose lease another node took
// over, that is gone, or that is of the other lane, is not renewed).
func (s *Store) RenewLeases(ctx context.Context, node, lane string, ids []string, until time.Time) (int, error) {
	lane, err := laneOf(lane)
	if err != nil {
		return 0, fmt.Errorf("store: RenewLeases: %w", err)
	}
	n := 0
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), 500)]
		ids = ids[len(chunk):]
		args := []any{node, until.UnixMicro(), lane}
		ph := make([]string, len(chunk))
		for i, id := range chunk {
			args = append(args, id)
			ph[i] = fmt.Sprintf("$%d", i+4)
		}
		res, err := s.db.ExecContext(ctx, `UPDATE queue SET lease_until = $2 WHERE lease_node = $1 AND lane = $3 AND id IN (`+
			strings.Join(ph, ", ")+`)`, args...)
		if err != nil {
			return n, fmt.Errorf("store: renewing the leases of %s: %w", node, err)
		}
		k, err := res.RowsAffected()
		if err != nil {
			return n, fmt.Errorf("store: renewing the leases of %s: %w", node, err)
		}
		n += int(k)
	}
	return n, nil
}

// ReleaseLeases frees every lease node holds in lane, for a node's queue
// starting again after a crash: what it was working on is due for anyone
// at once instead of after the lease timeout. Only that queue of node
// itself may call it (the node's other queue may be running).
func (s *Store) ReleaseLeases(ctx context.Context, node, lane string) (int, error) {
	lane, err := laneOf(lane)
	if err != nil {
		return 0, fmt.Errorf("store: ReleaseLeases: %w", err)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE queue SET lease_node = '', lease_until = NULL WHERE lease_node = $1 AND lane = $2`, node, lane)
	if err != nil {
		return 0, fmt.Errorf("store: releasing the leases of %s: %w", node, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: releasing the leases of %s: %w", node, err)
	}
	return int(n), nil
}

// QueueMessageHeads calls fn with the id and the first bytes (at most 4200:
// enough for the spool format's magic and wrapped message key) of every
// message stored in the queue, for `key rotate`, which must know whether
// any is still wrapped under an old master key.
func (s *Store) QueueMessageHeads(ctx context.Context, fn func(id string, head []byte) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT id, substr(message, 1, 4200) FROM queue WHERE message IS NOT NULL ORDER BY id`)
	if err != nil {
		return fmt.Errorf("store: reading queued messages: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id   string
			head []byte
		)
		if err := rows.Scan(&id, &head); err != nil {
			return fmt.Errorf("store: reading queued messages: %w", err)
		}
		if err := fn(id, head); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: reading queued messages: %w", err)
	}
	return nil
}

// ReplaceQueueMessageHeader swaps the first oldLen bytes of queued message
// id for header when they still equal old (key rotation rewraps a message
// key; the sealed content after it is not touched and not sent over the
// wire). It reports false when the message is gone (delivered) or its
// header changed meanwhile. Only PostgreSQL keeps messages in the store.
func (s *Store) ReplaceQueueMessageHeader(ctx context.Context, id string, old, header []byte) (bool, error) {
	if s.d.name != "postgres" {
		return false, errors.New("store: queued messages are kept in the store only on PostgreSQL")
	}
	res, err := s.db.ExecContext(ctx, `UPDATE queue SET message = $1::bytea || substr(message, $2)
		WHERE id = $3 AND message IS NOT NULL AND substr(message, 1, $4) = $5::bytea`,
		header, len(old)+1, id, len(old), old)
	if err != nil {
		return false, fmt.Errorf("store: resealing queued message %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: resealing queued message %s: %w", id, err)
	}
	return n == 1, nil
}
