package gateway

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

// clusterQueue is a queue keeping its messages in the store, as serve
// does with store.driver = "postgres".
func clusterQueue(t *testing.T, node string, relay Relay) *Queue {
	t.Helper()
	q, _ := testQueue(t, passAll{}, relay)
	q.Node, q.Messages = node, q.Store.(*store.Store)
	return q
}

// sharing makes b use a's store and keyring (nodes of one cluster share the
// database and the master key), each with a spool directory of its own.
func sharing(t *testing.T, a, b *Queue) {
	t.Helper()
	b.Store, b.Messages, b.Events = a.Store, a.Messages, a.Events
	sp, err := OpenSpool(filepath.Join(t.TempDir(), "spool-"+b.Node), a.Spool.kr)
	if err != nil {
		t.Fatal(err)
	}
	b.Spool = sp
}

func TestClusterQueueKeepsMessageInStore(t *testing.T) {
	relay := &recordingRelay{}
	q := clusterQueue(t, "gw-a", relay)
	ctx := context.Background()
	q.init()
	id := accept(t, q, "b@ext.test")
	if ids, _ := q.Spool.IDs(); len(ids) != 0 {
		t.Fatalf("spool files %v: the message belongs in the database", ids)
	}
	e, err := q.Store.QueueEntry(ctx, id)
	if err != nil || !e.Stored || e.LeaseNode != "gw-a" {
		t.Fatalf("entry %+v, %v", e, err)
	}
	sealed, err := q.Messages.QueueMessage(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), "SECRET BODY") || strings.Contains(string(sealed), "quarterly") || strings.Contains(string(sealed), "a@org.test") {
		t.Fatal("the stored message is readable without the master key")
	}
	if !strings.HasPrefix(string(sealed), spoolMagic) {
		t.Fatal("the stored message is not in the spool's format")
	}
	runQueue(t, q)
	waitFor(t, "delivery", queueEmpty(q))
	if d := relay.deliveries(); len(d) != 1 || d[0].QueueID != id || !strings.Contains(string(d[0].Data), "SECRET BODY") {
		t.Fatalf("deliveries %+v", d)
	}
}

// TestClusterDeadNodesMailDelivered: node a accepts and dies before it
// delivers (it never runs); once its leases run out node b delivers
// everything, each message once.
func TestClusterDeadNodesMailDelivered(t *testing.T) {
	relayA, relayB := &recordingRelay{}, &recordingRelay{}
	a := clusterQueue(t, "gw-a", relayA)
	a.Lease = 200 * time.Millisecond
	b := clusterQueue(t, "gw-b", relayB)
	b.Lease = 200 * time.Millisecond
	sharing(t, a, b)
	const n = 40
	want := map[string]bool{}
	for range n {
		want[accept(t, a, "x@ext.test")] = true
	}
	runQueue(t, b)
	waitFor(t, "node b delivering node a's mail", func() bool { return len(relayB.deliveries()) >= n })
	waitFor(t, "the queue empty", queueEmpty(b))
	got := map[string]int{}
	for _, d := range relayB.deliveries() {
		got[d.QueueID]++
	}
	for id := range want {
		if got[id] != 1 {
			t.Errorf("%s delivered %d times", id, got[id])
		}
	}
	if len(relayA.deliveries()) != 0 {
		t.Error("the dead node delivered")
	}
}

// TestClusterTamperedMessageHeld plays an attacker with write access to
// the database: a message altered in its row, or another message's row
// copied over it, fails authentication and is held, never sent.
func TestClusterTamperedMessageHeld(t *testing.T) {
	tamper := map[string]func(own, other []byte) []byte{
		"flipped byte": func(own, _ []byte) []byte {
			b := append([]byte(nil), own...)
			b[len(b)-20] ^= 1
			return b
		},
		"cut short":           func(own, _ []byte) []byte { return own[:len(own)-30] },
		"another message's":   func(_, other []byte) []byte { return other },
		"not a spool message": func(_, _ []byte) []byte { return []byte("From: evil@example.com\r\n\r\nhi\r\n") },
	}
	for name, fn := range tamper {
		t.Run(name, func(t *testing.T) {
			relay := &recordingRelay{}
			q := clusterQueue(t, "gw-a", relay)
			st := q.Messages.(*store.Store)
			ctx := context.Background()
			q.init()
			id, other := accept(t, q, "x@ext.test"), accept(t, q, "y@ext.test")
			for len(q.wake) > 0 {
				<-q.wake // delivered through claims below, after the tampering
			}
			own, _ := st.QueueMessage(ctx, id)
			theirs, _ := st.QueueMessage(ctx, other)
			e, _ := st.QueueEntry(ctx, id) // leased to gw-a since its accept
			if err := st.PutQueueMessage(ctx, e, fn(own, theirs)); err != nil {
				t.Fatal(err)
			}
			q.deliver(ctx, id)
			for _, d := range relay.deliveries() {
				if d.QueueID == id {
					t.Fatal("a tampered message was delivered")
				}
			}
			e, err := st.QueueEntry(ctx, id)
			if err != nil || e.State != StateHeld || !strings.Contains(e.HoldReason, "unreadable") {
				t.Fatalf("tampered entry: %+v, %v", e, err)
			}
		})
	}
}

// TestClusterRecoverMovesSpoolFiles: a node that kept its messages in
// spool files (before this version, or before it joined the cluster) moves
// them into the database at start; a file cut short before its 250 goes.
func TestClusterRecoverMovesSpoolFiles(t *testing.T) {
	relay := &recordingRelay{}
	q := clusterQueue(t, "gw-a", relay)
	ctx := context.Background()
	q.init()
	write := func(withEntry bool) string {
		env := &Envelope{ID: NewID(), From: "a@org.test", Recipients: toRecipients([]string{"x@ext.test"})}
		if _, err := q.Spool.Write(env, strings.NewReader(testMsg)); err != nil {
			t.Fatal(err)
		}
		if withEntry {
			if err := q.Store.PutQueueEntry(ctx, store.QueueEntry{ID: env.ID, Node: q.Node, State: StateQueued,
				NextAttempt: time.Now(), Recipients: env.Addrs(), Attempts: 2}); err != nil {
				t.Fatal(err)
			}
		}
		return env.ID
	}
	withEntry, orphan, torn := write(true), write(false), write(false)
	p := q.Spool.path(torn)
	b, _ := os.ReadFile(p)
	if err := os.WriteFile(p, b[:len(b)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := q.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if ids, _ := q.Spool.IDs(); len(ids) != 0 {
		t.Fatalf("spool files left: %v", ids)
	}
	for _, id := range []string{withEntry, orphan} {
		e, err := q.Store.QueueEntry(ctx, id)
		if err != nil || !e.Stored {
			t.Fatalf("%s after recovery: %+v, %v", id, e, err)
		}
	}
	if e, _ := q.Store.QueueEntry(ctx, withEntry); e.Attempts != 2 {
		t.Errorf("the moved entry lost its attempts: %+v", e)
	}
	if _, err := q.Store.QueueEntry(ctx, torn); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a torn file without entry was queued: %v", err)
	}
	runQueue(t, q)
	waitFor(t, "the moved messages delivered", queueEmpty(q))
	if len(relay.deliveries()) != 2 {
		t.Fatalf("deliveries: %d, want 2", len(relay.deliveries()))
	}
}

// TestClusterDeleteAnywhere: an operator on node b deletes a message node
// a accepted; it is gone for every node at once.
func TestClusterDeleteAnywhere(t *testing.T) {
	relayA := &recordingRelay{}
	a := clusterQueue(t, "gw-a", relayA)
	b := clusterQueue(t, "gw-b", &recordingRelay{})
	sharing(t, a, b)
	ctx := context.Background()
	a.init()
	id := accept(t, a, "x@ext.test")
	if err := Delete(ctx, b.Store, b.Spool, b.Node, b.Events, id, "an operator on gw-b"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Store.QueueEntry(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("entry after delete: %v", err)
	}
	a.deliver(ctx, id) // its worker, woken by the accept
	if len(relayA.deliveries()) != 0 {
		t.Fatal("a deleted message was delivered")
	}
}

// TestClusterLostLeaseOutcomeStands: a node that stalled past its lease
// while another took the message over does not overwrite what that node
// decided.
func TestClusterLostLeaseOutcomeStands(t *testing.T) {
	a := clusterQueue(t, "gw-a", &recordingRelay{})
	ctx := context.Background()
	a.init()
	id := accept(t, a, "x@ext.test")
	if err := a.Store.UpdateQueueEntry(ctx, id, func(e *store.QueueEntry) error {
		e.LeaseNode, e.State, e.Attempts = "gw-b", StateDeferred, 5
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	a.updateEntry(ctx, id, func(e *store.QueueEntry) { e.State, e.Attempts = StateHeld, 1 })
	e, _ := a.Store.QueueEntry(ctx, id)
	if e.State != StateDeferred || e.Attempts != 5 || e.LeaseNode != "gw-b" {
		t.Fatalf("the stalled node overwrote the entry: %+v", e)
	}
	// And with the lease still its own, the update goes through and
	// frees the lease.
	if err := a.Store.UpdateQueueEntry(ctx, id, func(e *store.QueueEntry) error { e.LeaseNode = "gw-a"; return nil }); err != nil {
		t.Fatal(err)
	}
	a.updateEntry(ctx, id, func(e *store.QueueEntry) { e.State = StateHeld })
	if e, _ := a.Store.QueueEntry(ctx, id); e.State != StateHeld || e.LeaseNode != "" || !e.LeaseUntil.IsZero() {
		t.Fatalf("own update: %+v", e)
	}
}

// TestStaleSealed: `key rotate --finish` must not delete a master key that
// a message in the database still needs.
func TestStaleSealed(t *testing.T) {
	oldKey, newKey := make([]byte, 32), make([]byte, 32)
	newKey[0] = 1
	krOld, err := secret.NewKeyring(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	krBoth, err := secret.NewKeyring(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	seal := func(kr *secret.Keyring) []byte {
		sp, err := OpenSpool(t.TempDir(), kr)
		if err != nil {
			t.Fatal(err)
		}
		b, _, err := sp.Seal(&Envelope{ID: NewID()}, strings.NewReader(testMsg))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name      string
		sealed    []byte
		stale     bool
		corrupted bool
	}{
		{"under the old key", seal(krOld), true, false},
		{"under the new key", seal(krBoth), false, false},
		{"only its head", seal(krOld)[:200], true, false},
		{"not a sealed message", []byte("From: x\r\n\r\nhello"), false, true},
		{"cut inside the key", seal(krOld)[:20], false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stale, err := StaleSealed(tc.sealed, krBoth.NeedsReseal)
			if tc.corrupted != errors.Is(err, ErrSpoolCorrupt) || stale != tc.stale {
				t.Fatalf("StaleSealed = %v, %v; want stale %v, corrupt %v", stale, err, tc.stale, tc.corrupted)
			}
		})
	}
}

// TestClusterKickTakesFreeLease: a message made due by the portal and
// kicked on this node is delivered here at once if no node holds it, and
// left alone while another node's lease is live.
func TestClusterKickTakesFreeLease(t *testing.T) {
	for _, tc := range []struct {
		name      string
		leaseNode string
		leaseFor  time.Duration
		delivered bool
	}{
		{"free", "", 0, true},
		{"another node's lease ran out", "gw-b", -time.Second, true},
		{"another node's live lease", "gw-b", time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			relay := &recordingRelay{}
			q := clusterQueue(t, "gw-a", relay)
			ctx := context.Background()
			q.init()
			id := accept(t, q, "x@ext.test")
			<-q.wake
			q.fresh.Delete(id)
			if err := q.Store.UpdateQueueEntry(ctx, id, func(e *store.QueueEntry) error {
				e.State, e.LeaseNode, e.LeaseUntil = StateDeferred, tc.leaseNode, time.Time{}
				if tc.leaseNode != "" {
					e.LeaseUntil = time.Now().Add(tc.leaseFor)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			q.deliver(ctx, id) // what Kick's wake leads to
			if got := len(relay.deliveries()) == 1; got != tc.delivered {
				t.Fatalf("delivered: %v, want %v", got, tc.delivered)
			}
		})
	}
}

// TestClusterOutcomeOfDeletedMessage: an outcome for a message an operator
// deleted meanwhile is dropped at once, not retried as if the database
// were down.
func TestClusterOutcomeOfDeletedMessage(t *testing.T) {
	q, el := testQueue(t, passAll{}, &recordingRelay{})
	q.Node, q.Messages = "gw-a", q.Store.(*store.Store)
	q.init()
	id := accept(t, q, "x@ext.test")
	if err := q.Store.DeleteQueueEntry(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	q.updateEntry(ctx, id, func(e *store.QueueEntry) { e.State = StateDeferred })
	q.finish(ctx, id, true)
	if strings.Contains(el.String(), "retrying") {
		t.Fatalf("a deleted message's outcome was retried:\n%s", el.String())
	}
}

// FuzzOpenSealed: a queued message read from the database is outside
// input (whoever can write the database). Whatever the bytes, OpenSealed
// and reading never panic, and anything but the genuine bytes of this id
// yields ErrSpoolCorrupt rather than a message.
func FuzzOpenSealed(f *testing.F) {
	kr, err := secret.NewKeyring(make([]byte, 32))
	if err != nil {
		f.Fatal(err)
	}
	sp, err := OpenSpool(f.TempDir(), kr)
	if err != nil {
		f.Fatal(err)
	}
	const id = "1a2b3c"
	genuine, _, err := sp.Seal(&Envelope{ID: id, From: "a@org.test"}, strings.NewReader(testMsg))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(genuine)
	f.Add(genuine[:len(genuine)/2])
	f.Add([]byte(spoolMagic + "\xff\xff\xff\xff"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := sp.OpenSealed(id, b)
		if err != nil {
			return
		}
		defer m.Close()
		body, err := io.ReadAll(m)
		if err != nil {
			if !errors.Is(err, ErrSpoolCorrupt) {
				t.Fatalf("read error %v is not ErrSpoolCorrupt", err)
			}
			return
		}
		if string(body) != testMsg || m.Envelope.ID != id {
			t.Fatalf("bytes other than the sealed message opened to %q", body)
		}
	})
}
