package store

import (
	"context"
	"errors"
	"testing"
)

// TestWebhookCursor: a new endpoint starts at the newest event, the cursor
// moves only from where the sender read it (a second node's stale
// advance is refused, never a step back), and failures are counted until
// the next success clears them.
func TestWebhookCursor(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		kr := testKeyring(t)
		opts := b.fresh(t)
		s1, s2 := openWith(t, opts, kr), openWith(t, opts, kr)
		record := func() int64 {
			id, err := s1.RecordDelivery(ctx, DeliveryEvent{QueueID: "q", Recipient: "b@ext.test", Outcome: "delivered"})
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
		if _, err := s1.WebhookCursor(ctx, "siem"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("cursor before start: %v", err)
		}
		c, err := s1.StartWebhookCursor(ctx, "empty", "gw1")
		if err != nil || c.LastID != 0 {
			t.Fatalf("cursor on an empty table: %+v %v", c, err)
		}
		record()
		newest := record()
		c, err = s1.StartWebhookCursor(ctx, "siem", "gw1")
		if err != nil || c.LastID != newest || c.Failures != 0 || c.Node != "gw1" {
			t.Fatalf("new cursor %+v (%v), want it at the newest event %d", c, err, newest)
		}
		next := record()
		// The other node starting the same endpoint finds it where it is.
		if c2, err := s2.StartWebhookCursor(ctx, "siem", "gw2"); err != nil || c2.LastID != newest || c2.Node != "gw1" {
			t.Fatalf("second start moved the cursor: %+v %v", c2, err)
		}
		if err := s1.WebhookAttemptFailed(ctx, "siem", "HTTP 503", "gw1"); err != nil {
			t.Fatal(err)
		}
		if err := s1.WebhookAttemptFailed(ctx, "siem", "connection refused", "gw1"); err != nil {
			t.Fatal(err)
		}
		c, _ = s1.WebhookCursor(ctx, "siem")
		if c.Failures != 2 || c.LastError != "connection refused" || c.FailingSince.IsZero() || c.AttemptAt.Before(c.FailingSince) {
			t.Fatalf("after two failures: %+v", c)
		}
		if err := s1.AdvanceWebhookCursor(ctx, "siem", newest, next, "gw1"); err != nil {
			t.Fatal(err)
		}
		// A node that read the cursor before that advance cannot move it.
		if err := s2.AdvanceWebhookCursor(ctx, "siem", newest, next, "gw2"); !errors.Is(err, ErrConflict) {
			t.Fatalf("stale advance: %v, want ErrConflict", err)
		}
		if err := s2.AdvanceWebhookCursor(ctx, "siem", next, newest, "gw2"); err == nil {
			t.Fatal("a cursor moved backwards")
		}
		c, _ = s2.WebhookCursor(ctx, "siem")
		if c.LastID != next || c.Failures != 0 || c.LastError != "" || !c.FailingSince.IsZero() || c.Node != "gw1" {
			t.Fatalf("after success: %+v", c)
		}
		list, err := s2.WebhookCursors(ctx)
		if err != nil || len(list) != 2 || list[0].Name != "empty" || list[1].Name != "siem" {
			t.Fatalf("cursors: %+v %v", list, err)
		}
		lo, hi, err := s1.DeliveryEventIDRange(ctx)
		if err != nil || lo >= hi || hi != next {
			t.Fatalf("id range %d..%d (%v), want ..%d", lo, hi, err, next)
		}
	})
}

// TestHeldLockAcrossNodes: one node holds the lock, the other cannot take
// it; when the holder's session is killed (as a database restart or a cut
// connection would), Alive says so and the other node takes over.
func TestHeldLockAcrossNodes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		kr := testKeyring(t)
		opts := b.fresh(t)
		s1, s2 := openWith(t, opts, kr), openWith(t, opts, kr)
		l1, err := s1.TryLockHeld(ctx, "webhook:siem")
		if err != nil {
			t.Fatal(err)
		}
		defer l1.Release()
		if err := l1.Alive(ctx); err != nil {
			t.Fatalf("fresh lock not alive: %v", err)
		}
		if b.name != "postgres" {
			return // SQLite: one data_dir, one process; the lock is the caller's file lock
		}
		if _, err := s2.TryLockHeld(ctx, "webhook:siem"); !errors.Is(err, ErrLocked) {
			t.Fatalf("second node took a held lock: %v", err)
		}
		// TryLock and TryLockHeld share their keys.
		if _, err := s2.TryLock(ctx, "webhook:siem"); !errors.Is(err, ErrLocked) {
			t.Fatalf("TryLock took a held lock: %v", err)
		}
		other, err := s2.TryLockHeld(ctx, "webhook:other")
		if err != nil {
			t.Fatalf("another name: %v", err)
		}
		other.Release()
		var pid int
		if err := l1.conn.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		// With a timeout pg_terminate_backend waits until the session is
		// gone; without one it only signals it, and the checks below race.
		if _, err := s2.db.ExecContext(ctx, `SELECT pg_terminate_backend($1, 10000)`, pid); err != nil {
			t.Fatal(err)
		}
		if err := l1.Alive(ctx); err == nil {
			t.Fatal("a lock whose session was killed is still alive")
		}
		l2, err := s2.TryLockHeld(ctx, "webhook:siem")
		if err != nil {
			t.Fatalf("the lock of a dead session was not freed: %v", err)
		}
		if err := l2.Alive(ctx); err != nil {
			t.Fatal(err)
		}
		l2.Release()
		l2.Release()
	})
}

// TestHeldLockKeys: Alive finds the lock for keys of either sign (the
// 64-bit key is split into two unsigned 32-bit halves in pg_locks).
func TestHeldLockKeys(t *testing.T) {
	// Advisory locks are PostgreSQL's: no SQLite run (it would be a skip).
	func(t *testing.T, b backend) {
		ctx := context.Background()
		s := openWith(t, b.fresh(t), testKeyring(t))
		signs := map[bool]bool{}
		for _, name := range []string{"webhook:siem", "webhook:soc", "webhook:audit"} {
			l, err := s.TryLockHeld(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			signs[l.key < 0] = true
			if err := l.Alive(ctx); err != nil {
				t.Errorf("%s (key %d): %v", name, l.key, err)
			}
			l.Release()
		}
		if len(signs) != 2 {
			t.Fatalf("the names tried give keys of one sign only: %v", signs)
		}
	}(t, backend{"postgres", freshPostgres})
}
