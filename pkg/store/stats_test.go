package store

import (
	"fmt"
	"testing"
	"time"
)

func TestQueueStats(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, testKeyring(t))
		t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		entries := []struct {
			node, state string
			size        int64
			created     time.Time
		}{
			{"n1", "queued", 100, t0.Add(2 * time.Minute)},
			{"n1", "queued", 50, t0.Add(time.Minute)},
			{"n1", "held", 7, t0.Add(time.Hour)},
			{"n2", "deferred", 1000, t0},
			{"n2", "held", 3, t0.Add(-time.Hour)},
		}
		for i, e := range entries {
			if err := s.PutQueueEntry(ctx, QueueEntry{ID: fmt.Sprintf("q%d", i), Node: e.node, Sender: "a@org.test",
				Recipients: []string{"b@ext.test"}, State: e.state, Size: e.size, CreatedAt: e.created}); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			node string
			want []QueueStat
		}{
			{"n1", []QueueStat{{"held", 1, 7, t0.Add(time.Hour)}, {"queued", 2, 150, t0.Add(time.Minute)}}},
			{"n2", []QueueStat{{"deferred", 1, 1000, t0}, {"held", 1, 3, t0.Add(-time.Hour)}}},
			{"", []QueueStat{{"deferred", 1, 1000, t0}, {"held", 2, 10, t0.Add(-time.Hour)}, {"queued", 2, 150, t0.Add(time.Minute)}}},
			{"n3", nil},
		} {
			got, err := s.QueueStats(ctx, tc.node)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("QueueStats(%q) =\n %v\nwant\n %v", tc.node, got, tc.want)
			}
		}
	})
}

func TestCertificateExpiry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, testKeyring(t))
		now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
		day := func(n int) time.Time { return now.AddDate(0, 0, n) }
		soonest, n, err := s.CertificateExpiry(ctx, now)
		if err != nil || !soonest.IsZero() || n != 0 {
			t.Fatalf("empty store: %v %d %v", soonest, n, err)
		}
		for _, c := range []Certificate{
			{Serial: "01", NotBefore: day(-300), NotAfter: day(-1), State: CertActive},    // expired
			{Serial: "02", NotBefore: day(-300), NotAfter: day(3), State: CertRevoked},    // revoked
			{Serial: "03", NotBefore: day(-300), NotAfter: day(4), State: CertSuperseded}, // renewed
			{Serial: "04", NotBefore: day(1), NotAfter: day(5), State: CertActive},        // not yet valid
			{Serial: "05", NotBefore: day(-300), NotAfter: day(40), State: CertActive},    // the soonest
			{Serial: "06", NotBefore: day(-10), NotAfter: day(355), State: CertActive},
		} {
			c.Email, c.Addresses, c.DER, c.KeyID = "u"+c.Serial+"@org.test", []string{"u" + c.Serial + "@org.test"}, []byte(c.Serial), "k"+c.Serial
			if err := s.PutCertificate(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		soonest, n, err = s.CertificateExpiry(ctx, now)
		if err != nil || !soonest.Equal(day(40)) || n != 2 {
			t.Fatalf("CertificateExpiry = %v, %d, %v; want %v, 2", soonest, n, err, day(40))
		}
	})
}
