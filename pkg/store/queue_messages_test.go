package store

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestQueueMessageRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, testKeyring(t))
		t0 := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
		sealed := bytes.Repeat([]byte{0, 1, 2, 0xff}, 5000)
		e := QueueEntry{ID: "a1", Node: "gw1", Sender: "a@example.com", Recipients: []string{"x@example.org"},
			State: "queued", NextAttempt: t0, Size: 42, LeaseNode: "gw1", LeaseUntil: t0.Add(time.Minute)}
		if err := s.PutQueueMessage(ctx, e, sealed); err != nil {
			t.Fatal(err)
		}
		got, err := s.QueueMessage(ctx, "a1")
		if err != nil || !bytes.Equal(got, sealed) {
			t.Fatalf("QueueMessage: %d bytes, %v", len(got), err)
		}
		ent, err := s.QueueEntry(ctx, "a1")
		if err != nil || !ent.Stored || ent.LeaseNode != "gw1" || !ent.LeaseUntil.Equal(t0.Add(time.Minute)) {
			t.Fatalf("entry: %+v %v", ent, err)
		}
		// A later put (attempts, state) keeps the message.
		if err := s.UpdateQueueEntry(ctx, "a1", func(e *QueueEntry) error { e.Attempts = 3; e.LeaseNode = ""; return nil }); err != nil {
			t.Fatal(err)
		}
		if got, err := s.QueueMessage(ctx, "a1"); err != nil || !bytes.Equal(got, sealed) {
			t.Fatalf("message after update: %d bytes, %v", len(got), err)
		}
		// An entry whose message is a spool file, and none at all.
		if err := s.PutQueueEntry(ctx, QueueEntry{ID: "f1", Node: "gw2", State: "queued"}); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"f1", "nope"} {
			if _, err := s.QueueMessage(ctx, id); !errors.Is(err, ErrNotFound) {
				t.Errorf("QueueMessage(%s) = %v, want ErrNotFound", id, err)
			}
		}
		if f1, _ := s.QueueEntry(ctx, "f1"); f1.Stored {
			t.Error("an entry without a message reads Stored")
		}
		for _, bad := range [][]byte{nil, {}} {
			if err := s.PutQueueMessage(ctx, QueueEntry{ID: "e1", State: "queued"}, bad); err == nil {
				t.Error("an empty message was stored")
			}
		}
		if err := s.DeleteQueueEntry(ctx, "a1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.QueueMessage(ctx, "a1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("message outlived its entry: %v", err)
		}
	})
}

// TestClaimQueueEntries: which entries a node may take, and that a lease
// keeps the others off until it runs out.
func TestClaimQueueEntries(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, testKeyring(t))
		now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
		msg := []byte("sealed")
		put := func(e QueueEntry, stored bool) {
			t.Helper()
			var err error
			if stored {
				err = s.PutQueueMessage(ctx, e, msg)
			} else {
				err = s.PutQueueEntry(ctx, e)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		put(QueueEntry{ID: "due", Node: "gw1", State: "queued", NextAttempt: now.Add(-time.Second)}, true)
		put(QueueEntry{ID: "later", Node: "gw1", State: "deferred", NextAttempt: now.Add(time.Minute)}, true)
		put(QueueEntry{ID: "held", Node: "gw1", State: "held"}, true)
		put(QueueEntry{ID: "spoolfile", Node: "gw1", State: "queued", NextAttempt: now.Add(-time.Second)}, false)
		put(QueueEntry{ID: "leased", Node: "gw1", State: "queued", NextAttempt: now.Add(-time.Second),
			LeaseNode: "gw1", LeaseUntil: now.Add(time.Second)}, true)
		put(QueueEntry{ID: "expired", Node: "gw1", State: "queued", NextAttempt: now.Add(-time.Second),
			LeaseNode: "dead", LeaseUntil: now.Add(-time.Second)}, true)

		ids := func(es []QueueEntry) []string {
			var out []string
			for _, e := range es {
				out = append(out, e.ID)
			}
			slices.Sort(out)
			return out
		}
		got, err := s.ClaimQueueEntries(ctx, "gw2", LaneOutbound, now, now.Add(time.Minute), 10)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"due", "expired"}; !slices.Equal(ids(got), want) {
			t.Fatalf("claimed %v, want %v", ids(got), want)
		}
		for _, e := range got {
			if e.LeaseNode != "gw2" || !e.LeaseUntil.Equal(now.Add(time.Minute)) || !e.Stored {
				t.Errorf("claimed entry %+v", e)
			}
		}
		if again, err := s.ClaimQueueEntries(ctx, "gw3", LaneOutbound, now, now.Add(time.Minute), 10); err != nil || len(again) != 0 {
			t.Fatalf("a second node claimed %v (%v) under live leases", ids(again), err)
		}
		// gw2 renews one of its two; the other lapses and gw3 takes it.
		if n, err := s.RenewLeases(ctx, "gw2", LaneOutbound, []string{"due", "gone"}, now.Add(3*time.Minute)); err != nil || n != 1 {
			t.Fatalf("RenewLeases = %d, %v; want 1", n, err)
		}
		if n, err := s.RenewLeases(ctx, "gw3", LaneOutbound, []string{"due"}, now.Add(3*time.Minute)); err != nil || n != 0 {
			t.Fatalf("a node renewed a lease it does not hold: %d, %v", n, err)
		}
		later := now.Add(2 * time.Minute)
		got, err = s.ClaimQueueEntries(ctx, "gw3", LaneOutbound, later, later.Add(time.Minute), 10)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"expired", "later", "leased"}; !slices.Equal(ids(got), want) {
			t.Fatalf("after the leases ran out gw3 claimed %v, want %v", ids(got), want)
		}
		if _, err := s.ClaimQueueEntries(ctx, "", LaneOutbound, now, now, 1); err == nil {
			t.Error("a claim without a node was accepted")
		}
	})
}

// TestClaimQueueEntriesRace: nodes claiming at once never get the same
// entry, and together they get every one.
func TestClaimQueueEntriesRace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, testKeyring(t))
		now := time.Now()
		const entries, nodes = 300, 4
		for i := range entries {
			if err := s.PutQueueMessage(ctx, QueueEntry{ID: fmt.Sprintf("m%03d", i), Node: "gw1", State: "queued",
				NextAttempt: now.Add(-time.Second)}, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		var (
			mu    sync.Mutex
			owner = map[string]string{}
			wg    sync.WaitGroup
			errs  = make(chan error, nodes)
		)
		for n := range nodes {
			node := fmt.Sprintf("node%d", n)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					got, err := s.ClaimQueueEntries(ctx, node, LaneOutbound, now, now.Add(time.Hour), 7)
					if err != nil {
						errs <- err
						return
					}
					if len(got) == 0 {
						return
					}
					mu.Lock()
					for _, e := range got {
						if prev, ok := owner[e.ID]; ok {
							errs <- fmt.Errorf("%s claimed by %s and %s", e.ID, prev, node)
						}
						owner[e.ID] = node
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if len(owner) != entries {
			t.Errorf("%d of %d entries claimed", len(owner), entries)
		}
	})
}

func TestGroupCommitQueueMessage(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, testKeyring(t))
		g := NewGroupCommit(s)
		defer g.Close()
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- g.PutQueueMessage(ctx, QueueEntry{ID: fmt.Sprintf("g%02d", i), Node: "gw1", State: "queued"},
					[]byte(fmt.Sprintf("message %d", i)))
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		for i := range 50 {
			got, err := s.QueueMessage(ctx, fmt.Sprintf("g%02d", i))
			if err != nil || string(got) != fmt.Sprintf("message %d", i) {
				t.Errorf("g%02d: %q %v", i, got, err)
			}
		}
		if err := g.PutQueueMessage(ctx, QueueEntry{ID: "g99", State: "queued"}, nil); err == nil {
			t.Error("group commit stored an empty message")
		}
	})
}

func TestQueueMessageHeads(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, testKeyring(t))
		big := bytes.Repeat([]byte("0123456789"), 1000)
		if err := s.PutQueueMessage(ctx, QueueEntry{ID: "b", State: "queued"}, big); err != nil {
			t.Fatal(err)
		}
		if err := s.PutQueueMessage(ctx, QueueEntry{ID: "a", State: "queued"}, []byte("short")); err != nil {
			t.Fatal(err)
		}
		if err := s.PutQueueEntry(ctx, QueueEntry{ID: "file", State: "queued"}); err != nil {
			t.Fatal(err)
		}
		var got []string
		err := s.QueueMessageHeads(ctx, func(id string, head []byte) error {
			got = append(got, fmt.Sprintf("%s:%d", id, len(head)))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"a:5", "b:4200"}; !slices.Equal(got, want) {
			t.Fatalf("heads %v, want %v", got, want)
		}
	})
}
