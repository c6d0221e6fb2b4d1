package events

import (
	"context"
	"log/slog"
	"time"
)

// Pruner deletes stored events older than a time; *store.Store satisfies it.
type Pruner interface {
	PruneDeliveryEvents(ctx context.Context, before time.Time) (int64, error)
}

// PruneEvery is how often serve prunes delivery events past retention.
const PruneEvery = time.Hour

// pruneTimeout bounds one prune (a first prune of a long-kept table may
// delete many rows).
const pruneTimeout = 5 * time.Minute

// KeepRetention deletes the events older than retention at once and then
// on every tick, until ctx ends. Every gateway node sharing PostgreSQL may
// run it: a prune that finds nothing to delete costs one indexed query.
// A failed prune is logged and tried again at the next tick; the events
// stay until then, which delays their deletion but loses nothing.
func KeepRetention(ctx context.Context, p Pruner, retention time.Duration, ticks <-chan time.Time, now func() time.Time, log *slog.Logger) {
	if now == nil {
		now = time.Now
	}
	prune := func() {
		pctx, cancel := context.WithTimeout(ctx, pruneTimeout)
		defer cancel()
		before := now().Add(-retention)
		n, err := p.PruneDeliveryEvents(pctx, before)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error("pruning delivery events failed; trying again later", "err", err, "retention", retention.String())
		case n > 0:
			log.Info("pruned delivery events", "deleted", n, "older_than", before.UTC().Format(time.RFC3339))
		}
	}
	prune()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
			prune()
		}
	}
}
