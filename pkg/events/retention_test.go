package events_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/store"
)

// TestKeepRetention: at start and on every tick the events older than the
// retention go, younger ones stay, against the real SQLite store.
func TestKeepRetention(t *testing.T) {
	st := openStore(t)
	rec := &events.Recorder{Store: st, Logger: slog.New(slog.DiscardHandler)}
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	clock := now
	for _, age := range []time.Duration{100 * 24 * time.Hour, 91 * 24 * time.Hour, 89 * 24 * time.Hour, time.Hour} {
		rec.Record(context.Background(), events.Delivery{Time: now.Add(-age), QueueID: "ab", Recipient: "b@x.example", Outcome: events.Delivered})
	}
	count := func() int {
		evs, err := st.DeliveryEvents(context.Background(), store.EventFilter{})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ticks := make(chan time.Time)
	var logs bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		events.KeepRetention(ctx, st, 90*24*time.Hour, ticks, func() time.Time { return clock }, slog.New(slog.NewTextHandler(&logs, nil)))
	}()
	ticks <- now // the first tick is taken only after the prune at start
	if n := count(); n != 2 {
		t.Fatalf("after the prune at start %d events, want 2", n)
	}
	clock = now.Add(89*24*time.Hour + time.Minute) // the 89-day-old one is now past 90 days
	ticks <- clock
	ticks <- clock // the second send returns once the first tick's prune is done
	cancel()
	<-done
	if n := count(); n != 1 {
		t.Fatalf("after a later tick %d events, want 1", n)
	}
	if !strings.Contains(logs.String(), "pruned delivery events") {
		t.Fatalf("log: %s", logs.String())
	}
}

type brokenPruner struct{ calls int }

func (b *brokenPruner) PruneDeliveryEvents(context.Context, time.Time) (int64, error) {
	b.calls++
	return 0, errors.New("disk I/O error")
}

// TestKeepRetentionSurvivesFailures: a failing prune is logged and tried
// again at the next tick.
func TestKeepRetentionSurvivesFailures(t *testing.T) {
	b := &brokenPruner{}
	ctx, cancel := context.WithCancel(context.Background())
	ticks := make(chan time.Time)
	var logs bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		events.KeepRetention(ctx, b, time.Hour, ticks, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	}()
	ticks <- time.Now()
	ticks <- time.Now()
	cancel()
	<-done
	if b.calls < 2 || strings.Count(logs.String(), "pruning delivery events failed") < 2 {
		t.Fatalf("%d calls, log: %s", b.calls, logs.String())
	}
}
