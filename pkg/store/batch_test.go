package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestGroupCommit: concurrent writers through one GroupCommit each get
// their own result, and every write is in the database when its call
// returns (reads go to the database directly, not to the committer).
func TestGroupCommit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := b.open(t, testKeyring(t))
		g := NewGroupCommit(s)
		g.MaxRows = 8 // several transactions for 40 writers
		const n = 40
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprintf("m%02d", i)
				if err := g.PutQueueEntry(ctx, QueueEntry{ID: id, Node: "n1", Sender: "a@x.test",
					Recipients: []string{"b@y.test"}, State: "queued", Size: int64(i)}); err != nil {
					errs[i] = err
					return
				}
				if _, err := s.QueueEntry(ctx, id); err != nil {
					errs[i] = fmt.Errorf("entry not there after PutQueueEntry returned: %w", err)
					return
				}
				if err := g.Audit(ctx, AuditEvent{Actor: "gateway", Action: "delivery.delivered", Subject: id}); err != nil {
					errs[i] = err
					return
				}
				if i%2 == 0 {
					errs[i] = g.DeleteQueueEntry(ctx, id)
				}
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("writer %d: %v", i, err)
			}
		}
		left, err := s.QueueEntries(ctx, QueueFilter{Node: "n1"})
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != n/2 {
			t.Errorf("%d entries left, want %d", len(left), n/2)
		}
		for _, e := range left {
			var i int
			if _, err := fmt.Sscanf(e.ID, "m%d", &i); err != nil || i%2 == 0 || e.Size != int64(i) {
				t.Errorf("unexpected entry left: %+v", e)
			}
		}
		evs, err := s.AuditEvents(ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != n {
			t.Errorf("%d audit events, want %d", len(evs), n)
		}

		// A failing write in a batch does not fail the others, and
		// errors keep the plain methods' meaning.
		var wg2 sync.WaitGroup
		var missingErr, putErr, badAudit error
		wg2.Add(3)
		go func() { defer wg2.Done(); missingErr = g.DeleteQueueEntry(ctx, "nope") }()
		go func() {
			defer wg2.Done()
			putErr = g.PutQueueEntry(ctx, QueueEntry{ID: "z1", Node: "n1", State: "held"})
		}()
		go func() { defer wg2.Done(); badAudit = g.Audit(ctx, AuditEvent{Actor: "x"}) }()
		wg2.Wait()
		if !errors.Is(missingErr, ErrNotFound) {
			t.Errorf("delete of a missing entry: %v, want ErrNotFound", missingErr)
		}
		if putErr != nil {
			t.Errorf("put beside failing writes: %v", putErr)
		}
		if badAudit == nil {
			t.Error("audit without action accepted")
		}
		if err := g.PutQueueEntry(ctx, QueueEntry{ID: "z2"}); err == nil {
			t.Error("entry without state accepted")
		}

		// After Close the calls still work, one transaction each.
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		if err := g.PutQueueEntry(ctx, QueueEntry{ID: "late", Node: "n1", State: "queued"}); err != nil {
			t.Fatalf("put after Close: %v", err)
		}
		if _, err := s.QueueEntry(ctx, "late"); err != nil {
			t.Errorf("entry written after Close missing: %v", err)
		}
	})
}

// BenchmarkGroupCommitPut: 20 concurrent writers (the bench's sessions)
// putting queue entries through one GroupCommit, versus the plain store
// (one commit, one fsync, each).
func BenchmarkGroupCommitPut(b *testing.B) {
	for _, mode := range []string{"plain", "group"} {
		b.Run(mode, func(b *testing.B) {
			s := sqliteBackend().open(b, testKeyring(b))
			g := NewGroupCommit(s)
			defer g.Close()
			put := s.PutQueueEntry
			if mode == "group" {
				put = g.PutQueueEntry
			}
			var mu sync.Mutex
			next := 0
			b.SetParallelism(10) // 20 writers on 2 CPUs
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					mu.Lock()
					next++
					id := fmt.Sprintf("m%d", next)
					mu.Unlock()
					if err := put(context.Background(), QueueEntry{ID: id, Node: "n1", State: "queued",
						Recipients: []string{"b@y.test"}}); err != nil {
						// Fatal would end only this goroutine (FailNow off the
						// benchmark's goroutine): report and stop this worker.
						b.Errorf("put %s: %v", id, err)
						return
					}
				}
			})
		})
	}
}

// TestGroupCommitCloseWhileWriting: writes racing Close all return, and
// every write reported done is in the database (the serve shutdown case).
func TestGroupCommitCloseWhileWriting(t *testing.T) {
	ctx := context.Background()
	s := sqliteBackend().open(t, testKeyring(t))
	g := NewGroupCommit(s)
	const n = 30
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = g.PutQueueEntry(ctx, QueueEntry{ID: fmt.Sprintf("c%02d", i), Node: "n1", State: "queued"})
		}()
		if i == n/2 {
			wg.Add(1)
			go func() { defer wg.Done(); g.Close() }()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("writers or Close hang")
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
			continue
		}
		if _, err := s.QueueEntry(ctx, fmt.Sprintf("c%02d", i)); err != nil {
			t.Errorf("writer %d reported success but: %v", i, err)
		}
	}
}

// TestGroupCommitPKIWrites: keys, certificates and their audit events
// written through a lingering GroupCommit by concurrent workers are all in
// the database when the calls return; a different key under an id in use
// is refused without failing the writes committed with it; a certificate
// that cannot be saved takes its audit event down with it.
func TestGroupCommitPKIWrites(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := b.open(t, testKeyring(t))
		g := NewGroupCommit(s)
		g.Linger = 20 * time.Millisecond // long enough to batch the workers
		defer g.Close()
		const n = 24
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				email := fmt.Sprintf("u%02d@example.org", i)
				keyID := "user/" + email + "/1"
				key := []byte("pkcs8-" + email)
				if err := g.PutKey(ctx, keyID, key); err != nil {
					errs[i] = err
					return
				}
				if err := g.PutKey(ctx, keyID, key); err != nil { // the same key again: no-op
					errs[i] = fmt.Errorf("same key again: %w", err)
					return
				}
				c := Certificate{Serial: fmt.Sprintf("%02x", i+1), Email: email, Addresses: []string{email}, DER: []byte("der"),
					KeyID: keyID, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), State: CertActive}
				errs[i] = g.RecordCertificate(ctx, c, AuditEvent{Actor: "test", Action: "certificate.issue", Subject: email, Detail: "serial=" + c.Serial})
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("worker %d: %v", i, err)
			}
		}
		ids, err := s.KeyIDs(ctx, "user/")
		if err != nil || len(ids) != n {
			t.Fatalf("KeyIDs = %d ids, %v; want %d", len(ids), err, n)
		}
		if got, err := s.Key(ctx, "user/u03@example.org/1"); err != nil || string(got) != "pkcs8-u03@example.org" {
			t.Errorf("Key = %q, %v", got, err)
		}
		certs, err := s.Certificates(ctx, "")
		if err != nil || len(certs) != n {
			t.Fatalf("Certificates = %d, %v; want %d", len(certs), err, n)
		}
		events, err := s.AuditEvents(ctx, time.Time{})
		if err != nil || len(events) != n {
			t.Fatalf("AuditEvents = %d, %v; want %d", len(events), err, n)
		}

		// A conflicting key fails alone; a write batched with it commits.
		var conflict, other error
		wg.Add(2)
		go func() { defer wg.Done(); conflict = g.PutKey(ctx, "user/u03@example.org/1", []byte("another key")) }()
		go func() { defer wg.Done(); other = g.PutKey(ctx, "user/new@example.org/1", []byte("new key")) }()
		wg.Wait()
		if !errors.Is(conflict, ErrConflict) {
			t.Errorf("different key under a used id: %v, want ErrConflict", conflict)
		}
		if other != nil {
			t.Errorf("key batched with the conflict: %v", other)
		}
		if got, _ := s.Key(ctx, "user/u03@example.org/1"); string(got) != "pkcs8-u03@example.org" {
			t.Errorf("the stored key was overwritten: %q", got)
		}

		// An invalid certificate: neither it nor its event is written.
		err = g.RecordCertificate(ctx, Certificate{Serial: "ff", Email: "x@example.org", DER: []byte("der"), State: "bogus"},
			AuditEvent{Actor: "test", Action: "certificate.issue", Subject: "x@example.org"})
		if err == nil {
			t.Fatal("a certificate in an unknown state was recorded")
		}
		if events, _ := s.AuditEvents(ctx, time.Time{}); len(events) != n {
			t.Errorf("%d audit events after the failed record, want %d", len(events), n)
		}
	})
}

// TestTryLock: the named lock excludes a second holder through another
// handle on the same database (another node) until it is released; on
// SQLite it is a no-op (data_dir's file lock does the work).
func TestTryLock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		opts, kr := b.fresh(t), testKeyring(t)
		s := openWith(t, opts, kr)
		release, err := s.TryLock(ctx, "pki")
		if err != nil {
			t.Fatal(err)
		}
		other := openWith(t, opts, kr)
		_, err = other.TryLock(ctx, "pki")
		if b.name == "sqlite" {
			if err != nil {
				t.Fatalf("SQLite: %v, want the no-op lock", err)
			}
			release()
			return
		}
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("second holder: %v, want ErrLocked", err)
		}
		if r2, err := other.TryLock(ctx, "another"); err != nil {
			t.Fatalf("a different name: %v", err)
		} else {
			r2()
		}
		release()
		r3, err := other.TryLock(ctx, "pki")
		if err != nil {
			t.Fatalf("after release: %v", err)
		}
		r3()
	})
}
