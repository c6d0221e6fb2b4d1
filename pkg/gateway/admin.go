package gateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/store"
)

// Operator actions on the queue (sealgate queue retry / delete). Each
// records its outcome per recipient, so the SOC sees who released or
// deleted what and when the mail went on.

// Release makes message id due now: a held one is released (a released
// event per recipient, reason naming who), a deferred one is retried
// early (no event: nothing was decided). The policy is applied again when
// it is delivered. It returns the entry as it was before.
func Release(ctx context.Context, st QueueStore, sp *Spool, rec *events.Recorder, id, by string) (store.QueueEntry, error) {
	var before store.QueueEntry
	err := st.UpdateQueueEntry(ctx, id, func(e *store.QueueEntry) error {
		before = *e
		e.State, e.NextAttempt, e.HoldReason = StateQueued, time.Now(), ""
		return nil
	})
	if err != nil {
		return before, fmt.Errorf("queue: releasing %s: %w", id, err)
	}
	if before.State == StateHeld {
		record(ctx, rec, before, queuedMessageID(ctx, st, sp, before), events.Released, "released by "+by+" (was held: "+before.HoldReason+")")
	}
	return before, nil
}

// Delete removes message id without delivering it (its spool file first,
// so a crash in between leaves an entry that Recover drops) and records a
// deleted event per recipient. node is this node's id: when the entry
// names another node (the file is in its spool), the entry is marked
// deleted and that node removes file and entry.
func Delete(ctx context.Context, st QueueStore, sp *Spool, node string, rec *events.Recorder, id, by string) error {
	e, err := st.QueueEntry(ctx, id)
	if err != nil {
		return fmt.Errorf("queue: deleting %s: %w", id, err)
	}
	msgID := queuedMessageID(ctx, st, sp, e)
	if e.Stored {
		// In the database: gone for every node with its row. A node
		// delivering it right now finds the row gone when it finishes.
		err = st.DeleteQueueEntry(ctx, id)
		if err != nil {
			return fmt.Errorf("queue: deleting %s: %w", id, err)
		}
		reason := "deleted by " + by
		if e.State == StateHeld && e.HoldReason != "" {
			reason += " (was held: " + e.HoldReason + ")"
		}
		record(ctx, rec, e, msgID, events.Deleted, reason)
		return nil
	}
	if _, err = os.Stat(sp.path(id)); err == nil || e.Node == node {
		err = sp.Discard(id) // ours: the file goes (if it is still here), then the entry
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		// The file is on the node that accepted the message: mark the
		// entry, and that node removes both at its next poll. Deleting
		// the entry here would leave the file, which that node's next
		// start would recover and deliver.
		if err := st.UpdateQueueEntry(ctx, id, func(e *store.QueueEntry) error {
			e.State, e.NextAttempt, e.HoldReason = StateDeleted, time.Now(), "deleted by "+by
			return nil
		}); err != nil {
			return fmt.Errorf("queue: deleting %s: %w", id, err)
		}
	case err != nil:
		return fmt.Errorf("queue: deleting %s: %w", id, err)
	default:
		if err := st.DeleteQueueEntry(ctx, id); err != nil {
			return fmt.Errorf("queue: deleting %s: %w", id, err)
		}
	}
	reason := "deleted by " + by
	if e.State == StateHeld && e.HoldReason != "" {
		reason += " (was held: " + e.HoldReason + ")"
	}
	record(ctx, rec, e, msgID, events.Deleted, reason)
	return nil
}

// record stores one operator outcome per recipient of e.
func record(ctx context.Context, rec *events.Recorder, e store.QueueEntry, msgID, outcome, reason string) {
	if rec == nil {
		return
	}
	evs := make([]events.Delivery, 0, len(e.Recipients))
	for _, r := range e.Recipients {
		evs = append(evs, events.Delivery{QueueID: e.ID, MessageID: msgID, Sender: e.Sender, Recipient: r,
			Outcome: outcome, Attempt: e.Attempts, Reason: reason})
	}
	rec.RecordAll(ctx, evs)
}

// queuedMessageID reads the Message-ID of a queued message ("" when the
// file is elsewhere or it is unreadable: the event goes without it). A
// message stored in the database is read from there when st can.
func queuedMessageID(ctx context.Context, st QueueStore, sp *Spool, e store.QueueEntry) string {
	if sp == nil {
		return ""
	}
	var (
		m   *SpooledMessage
		err error
	)
	if ms, ok := st.(interface {
		QueueMessage(ctx context.Context, id string) ([]byte, error)
	}); ok && e.Stored {
		var sealed []byte
		if sealed, err = ms.QueueMessage(ctx, e.ID); err == nil {
			m, err = sp.OpenSealed(e.ID, sealed)
		}
	} else {
		m, err = sp.Open(e.ID)
	}
	if err != nil {
		return ""
	}
	defer m.Close()
	hdr, _ := readHeader(m)
	return messageIDOf(hdr)
}
