package gateway

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/store"
)

// TestClusterInboundLane: node a's inbound queue accepts mail and dies
// before it delivers (it never runs). Node b runs both queues on the same
// database: its inbound queue delivers a's inbound mail once the leases
// run out, and its outbound queue, which would relay it to the internet,
// never gets one of them, though they are due and free as often as its
// own message.
func TestClusterInboundLane(t *testing.T) {
	inA, inB, outB := &recordingRelay{}, &recordingRelay{}, &recordingRelay{}
	a := clusterQueue(t, "gw-a", inA)
	a.Lane, a.Lease = store.LaneInbound, 200*time.Millisecond
	bOut := clusterQueue(t, "gw-b", outB)
	bOut.Lease = 200 * time.Millisecond
	bIn := clusterQueue(t, "gw-b", inB)
	bIn.Lane, bIn.Lease = store.LaneInbound, 200*time.Millisecond
	sharing(t, a, bOut)
	sharing(t, a, bIn)
	const n = 20
	want := map[string]bool{}
	for range n {
		want[accept(t, a, "user@org.test")] = true
	}
	own := accept(t, bOut, "x@ext.test")
	claims := &countingClaims{MessageStore: bOut.Messages}
	bOut.Messages = claims
	runQueue(t, bOut)
	// Node b's outbound queue alone first, until a's leases have run out
	// and it has claimed twice since: every inbound entry was due and
	// free for it.
	waitFor(t, "node a's leases running out", func() bool {
		es, err := a.Store.QueueEntries(context.Background(), store.QueueFilter{Lane: store.LaneInbound})
		if err != nil || len(es) != n {
			return false
		}
		for _, e := range es {
			if !e.LeaseUntil.Before(time.Now()) {
				return false
			}
		}
		return true
	})
	after := claims.n.Load()
	waitFor(t, "two claims of the outbound queue", func() bool { return claims.n.Load() >= after+2 })
	runQueue(t, bIn)
	waitFor(t, "node b's inbound queue delivering node a's inbound mail", func() bool { return len(inB.deliveries()) >= n })
	waitFor(t, "the queue empty", queueEmpty(bIn))
	got := map[string]int{}
	for _, d := range inB.deliveries() {
		got[d.QueueID]++
	}
	for id := range want {
		if got[id] != 1 {
			t.Errorf("inbound %s delivered %d times by node b's inbound queue", id, got[id])
		}
	}
	out := outB.deliveries()
	if len(out) != 1 || out[0].QueueID != own {
		ids := []string{}
		for _, d := range out {
			ids = append(ids, d.QueueID)
		}
		t.Errorf("node b's outbound relay got %v, want only its own %s", ids, own)
	}
	if len(inA.deliveries()) != 0 {
		t.Error("the dead node delivered")
	}
}

// TestKickOtherLaneRefused: an inbound message's id handed to the outbound
// queue (Kick: the portal wakes the queue by id) is not delivered by it,
// even when nobody holds its lease, which the outbound queue could take.
func TestKickOtherLaneRefused(t *testing.T) {
	outB, inB := &recordingRelay{}, &recordingRelay{}
	el := &eventLog{}
	bOut := clusterQueue(t, "gw-b", outB)
	bOut.Log = slog.New(slog.NewJSONHandler(el, nil))
	bIn := clusterQueue(t, "gw-b", inB)
	bIn.Lane = store.LaneInbound
	sharing(t, bOut, bIn)
	ctx := context.Background()
	// An inbound message waiting for its next attempt, lease free.
	env := &Envelope{ID: NewID(), From: "partner@ext.test", Recipients: toRecipients([]string{"user@org.test"}), Received: time.Now()}
	sealed, size, err := bIn.Spool.Seal(env, strings.NewReader(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	if err := bIn.Messages.PutQueueMessage(ctx, store.QueueEntry{ID: env.ID, Node: "gw-b", Lane: store.LaneInbound,
		Sender: env.From, Recipients: env.Addrs(), State: StateDeferred, NextAttempt: time.Now().Add(time.Hour),
		Size: size, CreatedAt: env.Received}, sealed); err != nil {
		t.Fatal(err)
	}
	runQueue(t, bOut)
	bOut.Kick(env.ID)
	waitFor(t, "the outbound queue refusing the inbound entry", func() bool {
		return strings.Contains(el.String(), "queue entry of the other lane not delivered")
	})
	if d := outB.deliveries(); len(d) != 0 {
		t.Fatalf("the outbound relay got the inbound message: %+v", d[0].Rcpts)
	}
	if e, err := bOut.Store.QueueEntry(ctx, env.ID); err != nil || e.LeaseNode != "" || e.State != StateDeferred {
		t.Errorf("the inbound entry after the refused kick: %+v, %v", e, err)
	}
}

// countingClaims counts the claims a queue has made (each counted once it
// has returned).
type countingClaims struct {
	MessageStore
	n atomic.Int64
}

func (c *countingClaims) ClaimQueueEntries(ctx context.Context, node, lane string, now, until time.Time, limit int) ([]store.QueueEntry, error) {
	defer c.n.Add(1)
	return c.MessageStore.ClaimQueueEntries(ctx, node, lane, now, until, limit)
}
