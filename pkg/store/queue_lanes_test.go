package store

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestClaimStaysInItsLane plays an inbound message that an outbound node
// would love to take: it is stored, due long before everything else and
// leased to nobody. The outbound queue's claim must still never return it
// (its relay would send mail meant for the internal server to the
// internet), nor renew or release its lease; the inbound queue gets it.
// Without the lane filter in the claim the first check fails.
func TestClaimStaysInItsLane(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, testKeyring(t))
		now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
		put := func(e QueueEntry) {
			t.Helper()
			if err := s.PutQueueMessage(ctx, e, []byte("sealed")); err != nil {
				t.Fatal(err)
			}
		}
		put(QueueEntry{ID: "in-old", Node: "gw1", Lane: LaneInbound, State: "queued", NextAttempt: now.Add(-time.Hour)})
		put(QueueEntry{ID: "in-dead", Node: "gw1", Lane: LaneInbound, State: "queued", NextAttempt: now.Add(-time.Hour),
			LeaseNode: "dead", LeaseUntil: now.Add(-time.Minute)})
		put(QueueEntry{ID: "out-1", Node: "gw1", State: "queued", NextAttempt: now.Add(-time.Second)})
		put(QueueEntry{ID: "out-2", Node: "gw1", Lane: LaneOutbound, State: "queued", NextAttempt: now.Add(-time.Second)})

		for _, tc := range []struct {
			node, lane string
			limit      int
			want       []string
		}{
			// limit 1: the inbound entries are the oldest due; without
			// the filter the outbound node would get one of them first.
			{"gw2", LaneOutbound, 1, []string{"out-1"}},
			{"gw2", LaneOutbound, 10, []string{"out-2"}},
			{"gw2", LaneOutbound, 10, nil},
			{"gw3", LaneInbound, 10, []string{"in-dead", "in-old"}},
			{"gw3", LaneInbound, 10, nil},
		} {
			got, err := s.ClaimQueueEntries(ctx, tc.node, tc.lane, now, now.Add(time.Minute), tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if ids := entryIDs(got); !slices.Equal(ids, tc.want) {
				t.Fatalf("%s claiming %s (limit %d) got %v, want %v", tc.node, tc.lane, tc.limit, ids, tc.want)
			}
			for _, e := range got {
				if e.Lane != tc.lane {
					t.Errorf("claimed %s of lane %q in lane %s", e.ID, e.Lane, tc.lane)
				}
			}
		}
		// gw3 holds in-old's lease (inbound). The outbound lane of gw3
		// renews and releases none of it.
		if n, err := s.RenewLeases(ctx, "gw3", LaneOutbound, []string{"in-old"}, now.Add(time.Hour)); err != nil || n != 0 {
			t.Errorf("an outbound renewal extended an inbound lease: %d, %v", n, err)
		}
		if n, err := s.ReleaseLeases(ctx, "gw3", LaneOutbound); err != nil || n != 0 {
			t.Errorf("an outbound restart freed inbound leases: %d, %v", n, err)
		}
		if n, err := s.RenewLeases(ctx, "gw3", LaneInbound, []string{"in-old"}, now.Add(time.Hour)); err != nil || n != 1 {
			t.Errorf("inbound renewal = %d, %v; want 1", n, err)
		}
		if n, err := s.ReleaseLeases(ctx, "gw3", LaneInbound); err != nil || n != 2 {
			t.Errorf("inbound release = %d, %v; want 2", n, err)
		}
		for _, bad := range []string{"Inbound", "smtp", "outbound "} {
			if _, err := s.ClaimQueueEntries(ctx, "gw2", bad, now, now, 1); err == nil {
				t.Errorf("a claim in lane %q was accepted", bad)
			}
		}
	})
}

// TestQueueLaneEntries: the lane is stored and read back, lists filter by
// it, an update cannot move an entry to the other lane, and an unknown
// lane is refused.
func TestQueueLaneEntries(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, testKeyring(t))
		for _, e := range []QueueEntry{
			{ID: "o1", Node: "gw1", State: "queued"},
			{ID: "i1", Node: "gw1", Lane: LaneInbound, State: "held"},
			{ID: "i2", Node: "gw2", Lane: LaneInbound, State: "queued"},
		} {
			if err := s.PutQueueEntry(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			name string
			f    QueueFilter
			want []string
		}{
			{"both lanes", QueueFilter{}, []string{"i1", "i2", "o1"}},
			{"outbound", QueueFilter{Lane: LaneOutbound}, []string{"o1"}},
			{"inbound", QueueFilter{Lane: LaneInbound}, []string{"i1", "i2"}},
			{"inbound of a node", QueueFilter{Lane: LaneInbound, Node: "gw1"}, []string{"i1"}},
			{"outbound of a node", QueueFilter{Lane: LaneOutbound, Node: "gw2"}, nil},
		} {
			got, err := s.QueueEntries(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if ids := entryIDs(got); !slices.Equal(ids, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, ids, tc.want)
			}
		}
		if e, err := s.QueueEntry(ctx, "o1"); err != nil || e.Lane != LaneOutbound {
			t.Errorf("an entry put without a lane reads lane %q (%v), want outbound", e.Lane, err)
		}
		err := s.UpdateQueueEntry(ctx, "i1", func(e *QueueEntry) error { e.Lane = LaneOutbound; return nil })
		if err == nil || !strings.Contains(err.Error(), "lane") {
			t.Errorf("moving an entry to the other lane: %v", err)
		}
		if e, _ := s.QueueEntry(ctx, "i1"); e.Lane != LaneInbound {
			t.Errorf("i1 is now in lane %q", e.Lane)
		}
		if err := s.PutQueueEntry(ctx, QueueEntry{ID: "x", Node: "gw1", State: "queued", Lane: "sideways"}); err == nil {
			t.Error("an entry of an unknown lane was stored")
		}
		if _, err := s.QueueEntries(ctx, QueueFilter{Lane: "sideways"}); err == nil {
			t.Error("a list of an unknown lane was answered")
		}
	})
}

// TestQueueLanesMigration: rows the inbound queue wrote before lanes
// existed (node "<node>/inbound") become lane inbound of node "<node>",
// leases included; the outbound rows stay outbound.
func TestQueueLanesMigration(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		opts := b.fresh(t)
		kr := testKeyring(t)
		func() {
			all := migrations
			defer func() { migrations = all }()
			i := slices.IndexFunc(all, func(m migration) bool { return m.name == "queue lanes" })
			if i < 0 {
				t.Fatal("no migration named queue lanes")
			}
			migrations = all[:i]
			old := openWith(t, opts, kr)
			defer old.Close()
			for _, r := range []struct{ id, node, leaseNode string }{
				{"in", "gw1-ab12/inbound", "gw1-ab12/inbound"},
				{"out", "gw1-ab12", "gw2-cd34"},
			} {
				if _, err := old.db.ExecContext(ctx, `INSERT INTO queue (id, node, sender, recipients, state, attempts,
					last_error, hold_reason, size, created_at, updated_at, lease_node) VALUES ($1, $2, '', '[]', 'queued', 0, '', '', 0, 1, 1, $3)`,
					r.id, r.node, r.leaseNode); err != nil {
					t.Fatal(err)
				}
			}
		}()
		s := openWith(t, opts, kr)
		for _, want := range []QueueEntry{
			{ID: "in", Node: "gw1-ab12", LeaseNode: "gw1-ab12", Lane: LaneInbound},
			{ID: "out", Node: "gw1-ab12", LeaseNode: "gw2-cd34", Lane: LaneOutbound},
		} {
			e, err := s.QueueEntry(ctx, want.ID)
			if err != nil {
				t.Fatal(err)
			}
			if e.Node != want.Node || e.LeaseNode != want.LeaseNode || e.Lane != want.Lane {
				t.Errorf("%s after the migration: node %q lease %q lane %q, want %q %q %q", want.ID,
					e.Node, e.LeaseNode, e.Lane, want.Node, want.LeaseNode, want.Lane)
			}
		}
	})
}

func entryIDs(es []QueueEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.ID)
	}
	slices.Sort(out)
	return out
}
