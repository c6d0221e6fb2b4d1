package events_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
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
	var clock atomic.Int64 // unix micro; the pruner reads it in its goroutine
	clock.Store(now.UnixMicro())
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
		events.KeepRetention(ctx, st, 90*24*time.Hour, ticks, func() time.Time { return time.UnixMicro(clock.Load()) }, slog.New(slog.NewTextHandler(&logs, nil)))
	}()
	ticks <- now // taken only after the prune at start
	ticks <- now // taken only after the first tick's prune
	if n := count(); n != 2 {
		t.Fatalf("after the prune at start %d events, want 2", n)
	}
	later := now.Add(89*24*time.Hour + time.Minute) // the 89-day-old one is now past 90 days
	clock.Store(later.UnixMicro())
	ticks <- later
	ticks <- later // the second send returns once the first one's prune is done
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

type countingObserver struct{ n atomic.Int32 }

func (c *countingObserver) ObserveDelivery(events.Delivery) { c.n.Add(1) }

// TestRecordAllStoresEachOnce: many outcomes of one message through a
// group committer are each stored once and each seen by the observers.
func TestRecordAllStoresEachOnce(t *testing.T) {
	st := openStore(t)
	gc := store.NewGroupCommit(st)
	defer gc.Close()
	obs := &countingObserver{}
	rec := &events.Recorder{Store: gc, Logger: slog.New(slog.DiscardHandler), Observers: []events.Observer{obs}}
	var ds []events.Delivery
	for i := range 300 {
		ds = append(ds, events.Delivery{QueueID: "ab", Recipient: fmt.Sprintf("r%d@x.example", i), Outcome: events.Accepted})
	}
	rec.RecordAll(context.Background(), ds)
	evs, err := st.DeliveryEvents(context.Background(), store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range evs {
		seen[e.Recipient]++
	}
	if len(evs) != 300 || len(seen) != 300 || obs.n.Load() != 300 {
		t.Fatalf("%d stored, %d distinct, %d observed; want 300 each", len(evs), len(seen), obs.n.Load())
	}
}
