// Package events records what happened to each message for each recipient:
// one structured log line and one stored audit event per outcome. Events
// carry addresses, outcomes and reasons, never content, keys or passwords.
package events

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/sealgate/sealgate/pkg/store"
)

// Outcomes of a delivery attempt for one recipient.
const (
	Delivered = "delivered" // relayed to the next hop (or written to the outbox)
	Deferred  = "deferred"  // temporary failure, will be retried
	Held      = "held"      // kept in the queue until released or expired
	Bounced   = "bounced"   // permanent failure, DSN sent to the sender
	Rejected  = "rejected"  // refused during the SMTP transaction
	Accepted  = "accepted"  // spooled and answered 250
	Released  = "released"  // a held message released by an operator
	Deleted   = "deleted"   // removed from the queue by an operator
)

// Outcomes lists every outcome, in the order of a message's life.
var Outcomes = []string{Accepted, Rejected, Deferred, Held, Released, Delivered, Bounced, Deleted}

// TLS describes the TLS of the hop a delivery used (nil: none known, e.g.
// the outbox directory).
type TLS struct {
	Version  string `json:"version,omitempty"` // e.g. "TLS 1.3"; empty: no TLS
	Cipher   string `json:"cipher,omitempty"`
	Verified bool   `json:"verified"` // the server's certificate was verified
	// VerifiedBy says how the certificate was verified: "dane",
	// "mta-sts", "pkix", or "none" (direct delivery to MX hosts); empty
	// where the relay does not say (smart host: Verified alone).
	VerifiedBy string `json:"verified_by,omitempty"`
	// Host is the next hop that took the message (the MX host's name in
	// direct delivery); empty for the smart host.
	Host string `json:"host,omitempty"`
}

// Delivery is one recipient's outcome for one message.
type Delivery struct {
	Time      time.Time `json:"time"`
	QueueID   string    `json:"queue_id"`
	MessageID string    `json:"message_id,omitempty"` // the Message-ID header
	Sender    string    `json:"sender"`
	Recipient string    `json:"recipient"`
	Outcome   string    `json:"outcome"`
	Method    string    `json:"method,omitempty"` // smime | pdf | signed | plain | passthrough
	Signed    bool      `json:"signed,omitempty"`
	Rule      string    `json:"rule,omitempty"`
	Attempt   int       `json:"attempt,omitempty"`
	// Reason says why held/deferred/bounced, or for a delivered PDF what
	// it shows differently (characters drawn as replacement marks, as
	// code points); never secrets, never message text.
	Reason string `json:"reason,omitempty"`
	TLS    *TLS   `json:"tls,omitempty"`
	// Received is when the gateway took the message (MAIL FROM); with Time
	// it gives the latency the gateway added, which the benchmark and an
	// operator watching a backlog both want.
	Received time.Time `json:"received,omitzero"`
}

// Sink stores events; *store.Store and *store.GroupCommit satisfy it.
type Sink interface {
	RecordDelivery(ctx context.Context, e store.DeliveryEvent) (int64, error)
}

// Observer sees every recorded delivery (metrics count them). It runs in
// the recording goroutine and must not block.
type Observer interface {
	ObserveDelivery(d Delivery)
}

// Recorder writes delivery events to the log and, when Store is set, to
// the store's delivery events (the events API and webhooks read them).
// The zero value logs to slog.Default().
type Recorder struct {
	Store     Sink
	Logger    *slog.Logger
	Node      string // this gateway node, stored with each event
	Observers []Observer
}

// Record logs d and stores it. A store failure is logged, not returned:
// the delivery outcome stands whether or not its record could be kept.
func (r *Recorder) Record(ctx context.Context, d Delivery) {
	e := r.note(ctx, &d)
	r.store(ctx, d, e)
}

// RecordAll records several outcomes (e.g. every recipient of a message).
// They are logged in order and stored concurrently, so that a group
// committer (store.GroupCommit) puts them into one commit rather than
// making the caller wait for one commit per recipient. Their order in the
// store among themselves is not defined; each is stored once.
func (r *Recorder) RecordAll(ctx context.Context, ds []Delivery) {
	r.Start(ctx, ds)()
}

// Start is RecordAll without waiting for the store: it logs ds at once and
// returns a function that waits until they are stored. The queue starts
// a message's accepted events, relays meanwhile, and waits before it
// records what the relay did, so the accepted events still come first in
// commit (id) order.
func (r *Recorder) Start(ctx context.Context, ds []Delivery) (wait func()) {
	now := time.Now().UTC()
	rows := make([]store.DeliveryEvent, len(ds))
	for i := range ds {
		if ds[i].Time.IsZero() {
			ds[i].Time = now
		}
		rows[i] = r.note(ctx, &ds[i])
	}
	if r.Store == nil || len(ds) == 0 {
		return func() {}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxConcurrentStores)
	for i := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			r.store(ctx, ds[i], rows[i])
		}()
	}
	return wg.Wait
}

// maxConcurrentStores bounds the goroutines of one RecordAll (a message
// may have a thousand recipients; a group commit carries 256 rows).
const maxConcurrentStores = 256

func (r *Recorder) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// note completes d (its time), logs it, shows it to the observers and
// returns the row to store.
func (r *Recorder) note(ctx context.Context, d *Delivery) store.DeliveryEvent {
	if d.Time.IsZero() {
		d.Time = time.Now().UTC()
	}
	log := r.logger()
	level := slog.LevelInfo
	switch d.Outcome {
	case Held, Deferred:
		level = slog.LevelWarn
	case Bounced, Rejected:
		level = slog.LevelError
	}
	attrs := []slog.Attr{
		slog.String("queue_id", d.QueueID), slog.String("sender", d.Sender),
		slog.String("recipient", d.Recipient), slog.String("outcome", d.Outcome),
	}
	if d.MessageID != "" {
		attrs = append(attrs, slog.String("message_id", d.MessageID))
	}
	if d.Method != "" {
		attrs = append(attrs, slog.String("method", d.Method), slog.Bool("signed", d.Signed))
	}
	if d.Rule != "" {
		attrs = append(attrs, slog.String("rule", d.Rule))
	}
	if d.Attempt > 0 {
		attrs = append(attrs, slog.Int("attempt", d.Attempt))
	}
	if d.Reason != "" {
		attrs = append(attrs, slog.String("reason", d.Reason))
	}
	if d.TLS != nil {
		attrs = append(attrs, slog.String("tls", d.TLS.Version), slog.Bool("tls_verified", d.TLS.Verified))
	}
	if !d.Received.IsZero() {
		attrs = append(attrs, slog.Int64("latency_ms", d.Time.Sub(d.Received).Milliseconds()))
	}
	log.LogAttrs(ctx, level, "delivery", attrs...)
	for _, o := range r.Observers {
		o.ObserveDelivery(*d)
	}
	e := store.DeliveryEvent{Time: d.Time, Node: r.Node, QueueID: d.QueueID, MessageID: d.MessageID, Sender: d.Sender,
		Recipient: d.Recipient, Outcome: d.Outcome, Method: d.Method, Signed: d.Signed, Rule: d.Rule, Attempt: d.Attempt,
		Reason: d.Reason, Received: d.Received}
	if d.TLS != nil {
		b, _ := json.Marshal(d.TLS)
		e.TLS = string(b)
	}
	return e
}

func (r *Recorder) store(ctx context.Context, d Delivery, e store.DeliveryEvent) {
	if r.Store == nil {
		return
	}
	if _, err := r.Store.RecordDelivery(ctx, e); err != nil {
		r.logger().Error("storing delivery event", "queue_id", d.QueueID, "recipient", d.Recipient, "err", err)
	}
}
