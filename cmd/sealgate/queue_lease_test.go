package main

import (
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/store"
)

// TestQueueListNamesLeaseHolder: queue list shows the node working on an
// entry only while its lease is live.
func TestQueueListNamesLeaseHolder(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name   string
		e      store.QueueEntry
		holder string
	}{
		{"live lease", store.QueueEntry{Node: "gw-a", LeaseNode: "gw-b", LeaseUntil: now.Add(time.Minute)}, "gw-b"},
		{"lease ran out", store.QueueEntry{Node: "gw-a", LeaseNode: "gw-b", LeaseUntil: now.Add(-time.Minute)}, "-"},
		{"no lease", store.QueueEntry{Node: "gw-a"}, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := toQueueJSON(tc.e)
			if j.holder() != tc.holder || j.Node != "gw-a" {
				t.Fatalf("holder %q node %q, want %q and gw-a", j.holder(), j.Node, tc.holder)
			}
			if (j.LeaseUntil == "") != (tc.holder == "-") {
				t.Fatalf("lease_until %q with holder %q", j.LeaseUntil, tc.holder)
			}
		})
	}
}
