package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestDeliveryEventsCursorAcrossNodes plays the SOC's poller against two
// gateway nodes writing at once through their group committers: paging
// with the last ID seen, it must get every event exactly once, in
// increasing ID order. On PostgreSQL this fails without the advisory lock
// in insertDeliveryEvent (a later-committed smaller ID is skipped).
func TestDeliveryEventsCursorAcrossNodes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		kr := testKeyring(t)
		opts := b.fresh(t)
		nodes := []*Store{openWith(t, opts, kr), openWith(t, opts, kr)}
		const writers, perWriter = 8, 150
		var wg sync.WaitGroup
		for w := range writers {
			gc := NewGroupCommit(nodes[w%2])
			defer gc.Close()
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWriter {
					if _, err := gc.RecordDelivery(ctx, DeliveryEvent{Node: fmt.Sprint(w % 2), QueueID: fmt.Sprintf("q%d-%d", w, i),
						Sender: "a@org.test", Recipient: "b@ext.test", Outcome: "delivered"}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()

		seen := map[string]bool{}
		var cursor int64
		poll := func() {
			evs, err := nodes[0].DeliveryEvents(ctx, EventFilter{After: cursor, Limit: 37})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				if e.ID <= cursor {
					t.Fatalf("event %d after cursor %d", e.ID, cursor)
				}
				if seen[e.QueueID] {
					t.Fatalf("event %s (id %d) seen twice", e.QueueID, e.ID)
				}
				seen[e.QueueID] = true
				cursor = e.ID
			}
		}
	writing:
		for {
			select {
			case <-done:
				break writing
			default:
				poll()
			}
		}
		for range writers * perWriter / 37 {
			poll()
		}
		if len(seen) != writers*perWriter {
			t.Fatalf("the poller saw %d of %d events", len(seen), writers*perWriter)
		}
	})
}

func TestDeliveryEventsFilterAndPrune(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := b.open(t, testKeyring(t))
		t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		in := []DeliveryEvent{
			{Time: t0, QueueID: "q1", MessageID: "<m1@org.test>", Sender: "a@org.test", Recipient: "B@Ext.test", Outcome: "accepted"},
			{Time: t0.Add(time.Second), QueueID: "q1", Sender: "a@org.test", Recipient: "b@ext.test", Outcome: "delivered", Method: "smime",
				Signed: true, Rule: "default", Attempt: 1, TLS: `{"version":"TLS 1.3","verified":true}`, Received: t0},
			{Time: t0.Add(2 * time.Second), QueueID: "q2", Sender: "a@org.test", Recipient: "c@ext.test", Outcome: "held", Reason: "no certificate"},
			{Time: t0.Add(48 * time.Hour), QueueID: "q3", Sender: "a@org.test", Recipient: "c@ext.test", Outcome: "bounced"},
		}
		for _, e := range in {
			if _, err := s.RecordDelivery(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.RecordDelivery(ctx, DeliveryEvent{QueueID: "q9"}); err == nil {
			t.Fatal("an event without recipient and outcome was stored")
		}
		ids := func(f EventFilter) string {
			evs, err := s.DeliveryEvents(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, e := range evs {
				out = append(out, e.QueueID+":"+e.Outcome)
			}
			return fmt.Sprint(out)
		}
		for _, tc := range []struct {
			name string
			f    EventFilter
			want string
		}{
			{"all", EventFilter{}, "[q1:accepted q1:delivered q2:held q3:bounced]"},
			{"recipient any case", EventFilter{Recipient: "b@EXT.test"}, "[q1:accepted q1:delivered]"},
			{"queue id", EventFilter{QueueID: "q2"}, "[q2:held]"},
			{"outcomes", EventFilter{Outcomes: []string{"held", "bounced"}}, "[q2:held q3:bounced]"},
			{"time range", EventFilter{Since: t0.Add(time.Second), Until: t0.Add(time.Hour)}, "[q1:delivered q2:held]"},
			{"limit", EventFilter{Limit: 1}, "[q1:accepted]"},
		} {
			if got := ids(tc.f); got != tc.want {
				t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
			}
		}
		evs, _ := s.DeliveryEvents(ctx, EventFilter{QueueID: "q1", Outcomes: []string{"delivered"}})
		if len(evs) != 1 {
			t.Fatalf("%d events", len(evs))
		}
		got := evs[0]
		if got.Method != "smime" || !got.Signed || got.Rule != "default" || got.Attempt != 1 || !got.Received.Equal(t0) ||
			got.TLS != `{"version":"TLS 1.3","verified":true}` || !got.Time.Equal(t0.Add(time.Second)) {
			t.Fatalf("read back %+v", got)
		}
		n, err := s.PruneDeliveryEvents(ctx, t0.Add(time.Hour))
		if err != nil || n != 3 {
			t.Fatalf("pruned %d, %v", n, err)
		}
		if got := ids(EventFilter{}); got != "[q3:bounced]" {
			t.Fatalf("after pruning: %s", got)
		}
	})
}

func TestAPITokens(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := b.open(t, testKeyring(t))
		hash := func(c byte) string {
			h := make([]byte, 64)
			for i := range h {
				h[i] = c
			}
			return string(h)
		}
		if err := s.CreateAPIToken(ctx, APIToken{Name: "siem", Hash: hash('a'), Scopes: []string{"events:read"}}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateAPIToken(ctx, APIToken{Name: "siem", Hash: hash('b'), Scopes: []string{"events:read"}}); !errors.Is(err, ErrConflict) {
			t.Fatalf("second token named siem: %v", err)
		}
		if err := s.CreateAPIToken(ctx, APIToken{Name: "short", Hash: "abc", Scopes: []string{"events:read"}}); err == nil {
			t.Fatal("a token with a malformed hash was stored")
		}
		tok, err := s.APITokenByHash(ctx, hash('a'))
		if err != nil || tok.Name != "siem" || len(tok.Scopes) != 1 || tok.Scopes[0] != "events:read" || !tok.RevokedAt.IsZero() {
			t.Fatalf("by hash: %+v, %v", tok, err)
		}
		if _, err := s.APITokenByHash(ctx, hash('c')); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown hash: %v", err)
		}
		now := time.Now()
		if err := s.TouchAPIToken(ctx, "siem", now); err != nil {
			t.Fatal(err)
		}
		// Within the minute the recorded use stays.
		if err := s.TouchAPIToken(ctx, "siem", now.Add(30*time.Second)); err != nil {
			t.Fatal(err)
		}
		if tok, _ = s.APITokenByHash(ctx, hash('a')); tok.LastUsedAt.UnixMicro() != now.UnixMicro() {
			t.Fatalf("last used %v, want %v", tok.LastUsedAt, now)
		}
		if err := s.RevokeAPIToken(ctx, "siem"); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeAPIToken(ctx, "siem"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("revoking twice: %v", err)
		}
		list, err := s.APITokens(ctx)
		if err != nil || len(list) != 1 || list[0].RevokedAt.IsZero() {
			t.Fatalf("list: %+v, %v", list, err)
		}
	})
}
