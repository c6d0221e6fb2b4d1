package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// QueueStat summarises the queue entries in one state: what the metrics
// read at every scrape, so it is one grouped query, not a listing.
type QueueStat struct {
	State  string
	Count  int64
	Bytes  int64     // sum of the entries' sizes
	Oldest time.Time // CreatedAt of the oldest entry
}

// QueueStats counts the queue entries by state; node "" counts every
// node's entries, otherwise only those whose spool is on node. States
// without entries are absent.
func (s *Store) QueueStats(ctx context.Context, node string) ([]QueueStat, error) {
	q := `SELECT state, COUNT(*), COALESCE(SUM(size), 0), MIN(created_at) FROM queue`
	var args []any
	if node != "" {
		q += ` WHERE node = $1`
		args = append(args, node)
	}
	q += ` GROUP BY state ORDER BY state`
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: queue statistics: %w", err)
	}
	defer rows.Close()
	var out []QueueStat
	for rows.Next() {
		var (
			st     QueueStat
			oldest int64
		)
		if err := rows.Scan(&st.State, &st.Count, &st.Bytes, &oldest); err != nil {
			return nil, fmt.Errorf("store: queue statistics: %w", err)
		}
		st.Oldest = time.UnixMicro(oldest).UTC()
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: queue statistics: %w", err)
	}
	return out, nil
}

// CertificateExpiry is the soonest NotAfter among our users' active
// certificates that are still valid at now, and how many such
// certificates there are; soonest is zero when there is none.
func (s *Store) CertificateExpiry(ctx context.Context, now time.Time) (soonest time.Time, active int64, err error) {
	var first sql.NullInt64
	err = s.queryRow(ctx, nil, `SELECT MIN(not_after), COUNT(*) FROM certificates
		WHERE state = $1 AND not_before <= $2 AND not_after > $2`, CertActive, now.UnixMicro()).Scan(&first, &active)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("store: certificate expiry: %w", err)
	}
	return goTime(first), active, nil
}
