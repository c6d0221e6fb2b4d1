package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/message"
	"github.com/sealgate/sealgate/pkg/store"
	"golang.org/x/sync/semaphore"
)

// Queue states kept in the store.
const (
	StateQueued   = "queued"   // due now
	StateDeferred = "deferred" // waiting for NextAttempt after a temporary failure
	StateHeld     = "held"     // waiting for an admin (queue retry / delete) or expiry
	// StateDeleted marks a message deleted by an operator on another
	// node: its spool file is on the owner node, which removes it and the
	// entry at its next poll instead of ever delivering it.
	StateDeleted = "deleted"
)

// QueueStore is the queue bookkeeping; *store.Store satisfies it.
type QueueStore interface {
	PutQueueEntry(ctx context.Context, e store.QueueEntry) error
	QueueEntry(ctx context.Context, id string) (store.QueueEntry, error)
	UpdateQueueEntry(ctx context.Context, id string, fn func(*store.QueueEntry) error) error
	QueueEntries(ctx context.Context, f store.QueueFilter) ([]store.QueueEntry, error)
	DeleteQueueEntry(ctx context.Context, id string) error
}

// Processor turns a spooled message into what goes out for the given
// pending recipients (the policy pipeline). An error holds every recipient:
// a message is never sent when its processing failed.
type Processor interface {
	Process(ctx context.Context, env *Envelope, rcpts []string, msg []byte) (*Plan, error)
}

// Plan is the processor's answer: parcels to relay and the recipients that
// cannot be sent now.
type Plan struct {
	// MessageID is the message's Message-ID, for the delivery events.
	MessageID string
	Parcels   []Parcel
	Held      map[string]string // recipient → reason (fail closed)
	Bounced   map[string]string // recipient → reason (policy says bounce)
	Deferred  map[string]string // recipient → reason (try again later, e.g. a password is pending)
	// Decided says, per recipient, the rule that decided and the method
	// it chose, for the events of recipients that did not leave (held,
	// deferred, bounced); nil when no decision was made.
	Decided map[string]Verdict
}

// Verdict is the policy's choice for one recipient, as events show it.
type Verdict struct {
	Rule   string
	Method string // smime | pdf | signed | plain | passthrough; "" when the rule holds or bounces
}

// ExtraMessage is a complete message with its envelope, queued as it is.
type ExtraMessage struct {
	From string
	To   []string
	Data []byte
	// Queued, if set, is called once the message is durably queued (the
	// PDF password notice marks its password announced).
	Queued func(ctx context.Context) error
}

// Parcel is one outgoing message for a group of recipients.
type Parcel struct {
	Rcpts  []string
	Data   []byte
	Method string // smime | pdf | signed | plain | passthrough
	Signed bool
	Rule   string
	// RequireTLS: some recipient's policy demands TLS to the next hop.
	RequireTLS bool
	// After are messages queued only once the next hop has accepted this
	// parcel for all its recipients: a PDF password notice must not go
	// out for a copy that was held, bounced or is still waiting.
	After []ExtraMessage
	// Note goes into the delivered events' reason: what the copy shows
	// differently (PDF warnings), never message content.
	Note string
}

// Delivery is one parcel handed to the relay.
type Delivery struct {
	QueueID string
	Index   int
	From    string
	Rcpts   []string
	Data    []byte
	UTF8    bool // the envelope needs SMTPUTF8 at the next hop
	// RequireTLS: deliver only over TLS (policy tls = "required").
	RequireTLS bool
}

// Relay hands a parcel to the next hop. It returns one error per
// recipient (nil: accepted by the next hop); an *smtp.SMTPError with a 5xx
// code is permanent, anything else is retried.
type Relay interface {
	Deliver(ctx context.Context, d Delivery) []error
}

// HopRelay is a Relay that also reports the TLS of the hop a delivery
// used (nil: no TLS hop, e.g. the outbox directory, or none was made);
// the queue puts it into the delivered events.
type HopRelay interface {
	Relay
	DeliverHop(ctx context.Context, d Delivery) ([]error, *events.TLS)
}

// Queue accepts messages into the spool and delivers them: one worker per
// message, retries with backoff per recipient, holds and bounces.
type Queue struct {
	Spool    *Spool
	Store    QueueStore
	Node     string // this node's name: its spool holds the messages it accepted
	Hostname string // for Received:, DSNs
	Process  Processor
	Relay    Relay
	// Admit, if set, checks each message received over SMTP at the end of
	// DATA, before the 250 (messages the gateway makes itself are not
	// checked).
	Admit  Admitter
	Events *events.Recorder
	Log    *slog.Logger
	// Workers is how many messages are processed at once (default 16: a
	// delivery mostly waits on fsync and the next hop, not on the CPU).
	Workers int
	// RetryFor is how long temporary failures and holds last before the
	// message is bounced (default 5 days).
	RetryFor time.Duration
	// Backoff gives the wait before attempt n+1 (default 30 s doubling to 30 min).
	Backoff func(attempt int) time.Duration
	// Poll is how often the store is checked for due and expired entries
	// (default 1 s).
	Poll time.Duration
	// MaxMessageBytes caps what a worker reads into memory (0: no cap).
	MaxMessageBytes int64
	// MemoryBudget bounds the bytes all workers hold at once (default
	// 160 MiB): a message costs about memFactor times its size while it is
	// signed and encrypted, so big messages are processed fewer at a time.
	MemoryBudget int64
	mem          *semaphore.Weighted

	wake chan string
	// fresh hands the entry of a just accepted message to its delivery,
	// which then need not read it back from the store (one query per
	// message less). Only entries announced on wake are in it.
	fresh     sync.Map // id → store.QueueEntry
	recovered bool
	mu        sync.Mutex
	inflight  map[string]bool
	once      sync.Once
}

func (q *Queue) init() {
	q.once.Do(func() {
		q.wake = make(chan string, 4096)
		q.inflight = map[string]bool{}
		if q.Workers <= 0 {
			q.Workers = 16
		}
		if q.RetryFor <= 0 {
			q.RetryFor = 5 * 24 * time.Hour
		}
		if q.Backoff == nil {
			q.Backoff = DefaultBackoff
		}
		if q.MemoryBudget <= 0 {
			q.MemoryBudget = 160 << 20
		}
		q.mem = semaphore.NewWeighted(q.MemoryBudget)
		if q.Poll <= 0 {
			q.Poll = time.Second
		}
		if q.Log == nil {
			q.Log = slog.Default()
		}
		if q.Events == nil {
			q.Events = &events.Recorder{Logger: q.Log}
		}
	})
}

// memFactor estimates a message's peak memory during processing relative
// to its size: the message, its canonical form, the signed copy, the CMS
// envelope and its base64 form.
const memFactor = 6

// DefaultBackoff waits 30 s after the first failure, doubling up to 30 min.
var DefaultBackoff = DoublingBackoff(30 * time.Second)

// DoublingBackoff waits first after the first failure and doubles the wait
// with each further one, up to 30 min (or first, if that is longer):
// relay.retry_backoff.
func DoublingBackoff(first time.Duration) func(attempt int) time.Duration {
	limit := max(first, 30*time.Minute)
	return func(attempt int) time.Duration {
		d := first
		for i := 1; i < attempt && d < limit; i++ {
			d *= 2
		}
		return min(d, limit)
	}
}

// Accept spools the message read from r with its envelope and records it
// in the queue. When it returns nil the message is durable (file and
// directory fsynced, metadata stored) and the caller may answer 250.
func (q *Queue) Accept(ctx context.Context, env *Envelope, r io.Reader) error {
	q.init()
	if env.ID == "" {
		env.ID = NewID()
	}
	if env.Received.IsZero() {
		env.Received = time.Now().UTC()
	}
	var hc *headerCapture
	if q.Admit != nil && !env.Raw {
		hc = &headerCapture{r: r}
		r = hc
	}
	size, err := q.Spool.Write(env, r)
	if err != nil {
		return err
	}
	if hc != nil {
		hdr, err := hc.header()
		if err == nil {
			err = q.Admit.Admit(ctx, env, hdr)
		}
		if err != nil {
			if rerr := q.Spool.Remove(env.ID); rerr != nil {
				q.Log.Error("removing a refused message from the spool", "queue_id", env.ID, "err", rerr)
			}
			return err
		}
	}
	e := store.QueueEntry{ID: env.ID, Node: q.Node, Sender: env.From, Recipients: env.Addrs(),
		State: StateQueued, NextAttempt: env.Received, Size: size, CreatedAt: env.Received}
	// Before the store write: once the entry is stored, the poller may
	// start its delivery.
	q.fresh.Store(env.ID, e)
	if err := q.Store.PutQueueEntry(ctx, e); err != nil {
		q.fresh.Delete(env.ID)
		_ = q.Spool.Remove(env.ID)
		return fmt.Errorf("queue: recording %s: %w", env.ID, err)
	}
	select {
	case q.wake <- env.ID:
	default: // the poller finds it (and reads the entry from the store)
		q.fresh.Delete(env.ID)
	}
	return nil
}

// Recover reconciles the spool with the store after a crash: a spool file
// without an entry (crash between fsync and the store write) is queued
// again; an entry of this node without a file (crash between removing the
// delivered file and its entry) is dropped.
//
// Call it before the listener starts (Run calls it if nobody did), so that
// it never races a message being accepted.
func (q *Queue) Recover(ctx context.Context) error {
	q.init()
	q.recovered = true
	q.Spool.removeTemps()
	ids, err := q.Spool.IDs()
	if err != nil {
		return err
	}
	onDisk := map[string]bool{}
	for _, id := range ids {
		onDisk[id] = true
		if e, err := q.Store.QueueEntry(ctx, id); err == nil && e.State == StateDeleted {
			q.discardDeleted(ctx, id)
			continue
		} else if err == nil {
			// The file is in this node's spool, so the message is ours
			// whatever node the entry names: one written under an
			// earlier node name (before node ids were generated, or a
			// renamed host) is adopted, else no node would deliver it.
			if e.Node != q.Node {
				old := e.Node
				e.Node = q.Node
				if err := q.Store.PutQueueEntry(ctx, e); err != nil {
					return err
				}
				q.Log.Info("spooled message adopted from an earlier node name", "queue_id", id, "was", old)
			}
			continue
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if q.Spool.beingWritten(id) {
			continue // being accepted right now (Recover after the listener started)
		}
		// Read it through: every chunk is authenticated, so a write a
		// crash cut short fails here. The entry is written only after the
		// file is complete and the 250 only after the entry, so such a
		// file was never acknowledged and goes.
		m, err := q.Spool.Open(id)
		if err == nil {
			_, err = io.Copy(io.Discard, m)
			m.Close()
		}
		if err != nil {
			q.Log.Warn("incomplete spool file without a queue entry removed (its write was interrupted before the 250)", "queue_id", id, "err", err)
			_ = q.Spool.Remove(id)
			continue
		}
		env := m.Envelope
		if err := q.Store.PutQueueEntry(ctx, store.QueueEntry{ID: id, Node: q.Node, Sender: env.From,
			Recipients: env.Addrs(), State: StateQueued, NextAttempt: time.Now(), CreatedAt: env.Received}); err != nil {
			return err
		}
		q.Log.Info("recovered spooled message", "queue_id", id)
	}
	all, err := q.Store.QueueEntries(ctx, store.QueueFilter{Node: q.Node})
	if err != nil {
		return err
	}
	for _, e := range all {
		if !onDisk[e.ID] {
			q.Log.Warn("queue entry without spool file dropped (delivered before a crash)", "queue_id", e.ID)
			_ = q.Store.DeleteQueueEntry(ctx, e.ID)
		}
	}
	return nil
}

// Run delivers until ctx is cancelled, then waits for the messages in
// flight to finish; the rest stays spooled for the next start.
func (q *Queue) Run(ctx context.Context) error {
	q.init()
	if !q.recovered {
		if err := q.Recover(ctx); err != nil {
			return fmt.Errorf("queue: recovery: %w", err)
		}
	}
	sem := make(chan struct{}, q.Workers)
	var wg sync.WaitGroup
	dispatch := func(id string) {
		q.mu.Lock()
		if q.inflight[id] {
			q.mu.Unlock()
			return
		}
		q.inflight[id] = true
		q.mu.Unlock()
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			q.done(id)
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer q.done(id)
			// In-flight work finishes even when shutdown has begun.
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
			defer cancel()
			q.deliver(wctx, id)
		}()
	}
	tick := time.NewTicker(q.Poll)
	defer tick.Stop()
	lastExpiry := time.Time{}
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case id := <-q.wake:
			dispatch(id)
		case now := <-tick.C:
			due, err := q.Store.QueueEntries(ctx, store.QueueFilter{Node: q.Node, DueBy: now, Limit: 1000})
			if err != nil && ctx.Err() == nil {
				q.Log.Error("queue poll", "err", err)
			}
			for _, e := range due {
				if e.State != StateHeld {
					dispatch(e.ID)
				}
			}
			if now.Sub(lastExpiry) > 60*q.Poll {
				lastExpiry = now
				q.expireHeld(ctx, now)
			}
		}
	}
}

func (q *Queue) done(id string) {
	q.mu.Lock()
	delete(q.inflight, id)
	q.mu.Unlock()
}

// expireHeld bounces held messages older than RetryFor.
func (q *Queue) expireHeld(ctx context.Context, now time.Time) {
	held, err := q.Store.QueueEntries(ctx, store.QueueFilter{Node: q.Node, State: StateHeld})
	if err != nil {
		return
	}
	for _, e := range held {
		if now.Sub(e.CreatedAt) < q.RetryFor {
			continue
		}
		m, err := q.Spool.Open(e.ID)
		if err != nil {
			continue
		}
		env := m.Envelope
		hdr, _ := readHeader(m)
		m.Close()
		bounced := map[string]string{}
		var evs []events.Delivery
		for _, r := range e.Recipients {
			bounced[r] = "held too long (" + e.HoldReason + ")"
			evs = append(evs, events.Delivery{QueueID: e.ID, MessageID: messageIDOf(hdr), Sender: e.Sender, Recipient: r,
				Outcome: events.Bounced, Reason: bounced[r], Attempt: e.Attempts, Received: env.Received})
		}
		q.Events.RecordAll(ctx, evs)
		q.bounce(ctx, &env, hdr, bounced)
		q.finish(ctx, e.ID)
	}
}

// messageIDOf is the Message-ID of a header section ("" if it has none or
// does not parse).
func messageIDOf(hdr []byte) string {
	h, err := message.ParseHeader(hdr)
	if err != nil {
		return ""
	}
	return h.Get("Message-Id")
}

func readHeader(r io.Reader) ([]byte, error) {
	var buf bytes.Buffer
	b := make([]byte, 4096)
	for buf.Len() < 1<<20 {
		n, err := r.Read(b)
		buf.Write(b[:n])
		if i := bytes.Index(buf.Bytes(), []byte("\r\n\r\n")); i >= 0 {
			return buf.Bytes()[:i+2], nil
		}
		if err != nil {
			return buf.Bytes(), err
		}
	}
	return buf.Bytes(), nil
}

// finish removes a message that has nothing left to do: the file first,
// so that a crash in between leaves an entry Recover drops, never a
// second delivery.
func (q *Queue) finish(ctx context.Context, id string) {
	if err := q.Spool.Remove(id); err != nil {
		q.Log.Error("removing spool file", "queue_id", id, "err", err)
		return
	}
	if err := q.Store.DeleteQueueEntry(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
		q.Log.Error("removing queue entry", "queue_id", id, "err", err)
	}
}

// deliver makes one attempt for every pending recipient of message id.
func (q *Queue) deliver(ctx context.Context, id string) {
	var entry store.QueueEntry
	if e, ok := q.fresh.LoadAndDelete(id); ok {
		entry = e.(store.QueueEntry)
	} else {
		var err error
		if entry, err = q.Store.QueueEntry(ctx, id); err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				q.Log.Error("reading queue entry", "queue_id", id, "err", err)
			}
			return
		}
	}
	switch entry.State {
	case StateHeld:
		return
	case StateDeleted:
		q.discardDeleted(ctx, id)
		return
	}
	holdUnreadable := func(err error) {
		q.Log.Error("spooled message unreadable, held for an admin", "queue_id", id, "err", err)
		q.updateEntry(ctx, id, func(e *store.QueueEntry) {
			e.State, e.NextAttempt, e.HoldReason = StateHeld, time.Time{}, "spool file unreadable: "+err.Error()
		})
	}
	m, err := q.Spool.Open(id)
	if errors.Is(err, os.ErrNotExist) {
		// Deleted by `sealgate queue delete` (or delivered and removed
		// just before a crash): nothing left to send.
		q.Log.Warn("queue entry without spool file dropped", "queue_id", id)
		_ = q.Store.DeleteQueueEntry(ctx, id)
		return
	}
	if err != nil {
		holdUnreadable(err)
		return
	}
	env := m.Envelope
	// Reserve memory for the processing copies before reading the message.
	cost := min(entry.Size*memFactor+1<<20, q.MemoryBudget)
	if err := q.mem.Acquire(ctx, cost); err != nil {
		m.Close()
		return
	}
	defer q.mem.Release(cost)
	var src io.Reader = m
	if q.MaxMessageBytes > 0 {
		src = io.LimitReader(m, q.MaxMessageBytes+1<<20)
	}
	// Sized from the entry: io.ReadAll would grow (and copy) its way up.
	mb := bytes.NewBuffer(make([]byte, 0, max(entry.Size, 0)+bytes.MinRead))
	_, err = mb.ReadFrom(src)
	msg := mb.Bytes()
	m.Close()
	if err != nil {
		holdUnreadable(err)
		return
	}
	attempt := entry.Attempts + 1
	pending := entry.Recipients
	var plan *Plan
	if env.Raw {
		// The gateway's own message (a DSN, a notice): sent as it is.
		plan = &Plan{Parcels: []Parcel{{Rcpts: pending, Data: msg, Method: "plain"}}}
		if h, err := message.ParseHeader(msg); err == nil {
			plan.MessageID = h.Get("Message-Id")
		}
	} else {
		plan, err = q.Process.Process(ctx, &env, pending, msg)
		if err != nil {
			// Fail closed: a processing error never lets the message out.
			plan = &Plan{Held: map[string]string{}}
			for _, r := range pending {
				plan.Held[r] = "processing failed: " + err.Error()
			}
		}
	}
	deferred := map[string]string{}
	bounced := map[string]string{}
	for r, why := range plan.Bounced {
		bounced[r] = why
	}
	for r, why := range plan.Deferred {
		deferred[r] = why
	}
	base := events.Delivery{QueueID: id, MessageID: plan.MessageID, Sender: env.From, Attempt: attempt, Received: env.Received}
	// outcome is the event for recipient r, with the decision's rule and
	// method where the pipeline made one.
	outcome := func(r, what, why string) events.Delivery {
		ev := base
		ev.Recipient, ev.Outcome, ev.Reason = r, what, why
		if v, ok := plan.Decided[r]; ok {
			ev.Rule, ev.Method = v.Rule, v.Method
		}
		return ev
	}
	// recorded waits for the accepted events to be stored: called before
	// any other outcome is recorded, so they stay first in id order.
	recorded := func() {}
	if entry.Attempts == 0 {
		// The first attempt records the acceptance (after the 250: the
		// listener does not wait for it), now that the Message-ID is
		// known. Its commit overlaps the relay's work.
		acc := make([]events.Delivery, 0, len(pending))
		for _, r := range pending {
			ev := base
			ev.Recipient, ev.Outcome, ev.Attempt = r, events.Accepted, 0
			acc = append(acc, ev)
		}
		recorded = q.Events.Start(ctx, acc)
	}
	defer recorded() // nothing outlives the delivery (recorded is idempotent)
	hop, reports := q.Relay.(HopRelay)
	for i, p := range plan.Parcels {
		d := Delivery{QueueID: id, Index: i, From: env.From, Rcpts: p.Rcpts, Data: p.Data,
			UTF8: env.UTF8 && needsSMTPUTF8(env.From, p.Rcpts, p.Data), RequireTLS: p.RequireTLS}
		var (
			errs []error
			tls  *events.TLS
		)
		if reports {
			errs, tls = hop.DeliverHop(ctx, d)
		} else {
			errs = q.Relay.Deliver(ctx, d)
		}
		left := len(errs) == len(p.Rcpts)
		var done []events.Delivery
		for j, r := range p.Rcpts {
			var e error
			if j < len(errs) {
				e = errs[j]
			}
			if e != nil {
				left = false
			}
			switch {
			case e == nil:
				ev := base
				ev.Recipient, ev.Outcome, ev.Method, ev.Signed, ev.Rule, ev.TLS = r, events.Delivered, p.Method, p.Signed, p.Rule, tls
				ev.Reason = p.Note
				done = append(done, ev)
			case IsPermanent(e):
				bounced[r] = describe(e)
			default:
				deferred[r] = describe(e)
			}
		}
		recorded()
		q.Events.RecordAll(ctx, done)
		if left {
			q.queueAfter(ctx, id, p.After)
		}
	}
	// Temporary failures past RetryFor become bounces.
	if time.Since(entry.CreatedAt) > q.RetryFor {
		for r, why := range deferred {
			bounced[r] = "delivery time expired; last error: " + why
			delete(deferred, r)
		}
	}
	held := plan.Held
	var rest []events.Delivery
	for _, r := range sortedKeys(bounced) {
		rest = append(rest, outcome(r, events.Bounced, bounced[r]))
	}
	for _, r := range sortedKeys(held) {
		rest = append(rest, outcome(r, events.Held, held[r]))
	}
	for _, r := range sortedKeys(deferred) {
		rest = append(rest, outcome(r, events.Deferred, deferred[r]))
	}
	recorded()
	q.Events.RecordAll(ctx, rest)
	if len(bounced) > 0 {
		q.bounce(ctx, &env, headerOf(msg), bounced)
	}

	switch {
	case len(held) > 0 && len(deferred) == 0:
		// Everything left is held: this entry becomes the hold.
		q.updateEntry(ctx, id, func(e *store.QueueEntry) {
			e.State, e.NextAttempt, e.Recipients = StateHeld, time.Time{}, sortedKeys(held)
			e.HoldReason, e.Attempts = joinReasons(held), attempt
		})
	case len(deferred) > 0:
		if len(held) > 0 {
			// The held recipients wait in a copy of their own, so that
			// retries of the others do not release them.
			q.splitHeld(ctx, &env, msg, held, attempt)
		}
		q.updateEntry(ctx, id, func(e *store.QueueEntry) {
			e.State, e.Recipients, e.Attempts = StateDeferred, sortedKeys(deferred), attempt
			e.NextAttempt = time.Now().Add(q.Backoff(attempt))
			e.LastError = joinReasons(deferred)
		})
	default:
		q.finish(ctx, id)
	}
}

// needsSMTPUTF8 says whether a parcel needs SMTPUTF8 at the next hop: an
// address or a header field outside ASCII (RFC 6531). Clients such as
// Exchange ask for SMTPUTF8 whenever it is offered; passing that on for
// ASCII mail would defer it at every next hop without SMTPUTF8.
func needsSMTPUTF8(from string, rcpts []string, data []byte) bool {
	if !message.IsASCII(from) {
		return true
	}
	for _, r := range rcpts {
		if !message.IsASCII(r) {
			return true
		}
	}
	hdr := data
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		hdr = data[:i]
	}
	for _, c := range hdr {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// queueAfter queues the messages that wait for a parcel to leave.
func (q *Queue) queueAfter(ctx context.Context, id string, after []ExtraMessage) {
	for _, x := range after {
		if err := q.Accept(ctx, &Envelope{From: x.From, Recipients: toRecipients(x.To), Raw: true}, bytes.NewReader(x.Data)); err != nil {
			q.Log.Error("queueing a message that follows a delivery", "queue_id", id, "err", err)
			continue
		}
		if x.Queued != nil {
			if err := x.Queued(ctx); err != nil {
				q.Log.Error("recording a queued notice", "queue_id", id, "err", err)
			}
		}
	}
}

// discardDeleted carries out a delete an operator made on another node:
// the spool file first, then the entry (a crash in between leaves an
// entry without a file, which is dropped).
func (q *Queue) discardDeleted(ctx context.Context, id string) {
	if err := q.Spool.Discard(id); err != nil && !errors.Is(err, os.ErrNotExist) {
		q.Log.Error("removing a message deleted on another node", "queue_id", id, "err", err)
		return
	}
	_ = q.Store.DeleteQueueEntry(ctx, id)
	q.Log.Info("message deleted by an operator on another node removed", "queue_id", id)
}

func (q *Queue) updateEntry(ctx context.Context, id string, fn func(*store.QueueEntry)) {
	err := q.Store.UpdateQueueEntry(ctx, id, func(e *store.QueueEntry) error {
		if e.State == StateDeleted {
			return nil // an operator deleted it meanwhile: that stands
		}
		fn(e)
		return nil
	})
	if err != nil {
		q.Log.Error("updating queue entry", "queue_id", id, "err", err)
	}
}

func (q *Queue) splitHeld(ctx context.Context, env *Envelope, msg []byte, held map[string]string, attempt int) {
	cp := *env
	cp.ID = NewID()
	cp.Recipients = nil
	for _, r := range env.Recipients {
		if _, ok := held[r.Addr]; ok {
			cp.Recipients = append(cp.Recipients, r)
		}
	}
	if _, err := q.Spool.Write(&cp, bytes.NewReader(msg)); err != nil {
		q.Log.Error("splitting held recipients", "queue_id", env.ID, "err", err)
		return
	}
	err := q.Store.PutQueueEntry(ctx, store.QueueEntry{ID: cp.ID, Node: q.Node, Sender: cp.From,
		Recipients: cp.Addrs(), State: StateHeld, HoldReason: joinReasons(held), Size: int64(len(msg)), CreatedAt: env.Received,
		// Its acceptance is recorded already (attempt 0 would record it
		// again when it is released).
		Attempts: attempt})
	if err != nil {
		q.Log.Error("splitting held recipients", "queue_id", env.ID, "err", err)
	}
}

// bounce queues a DSN to the sender for the failed recipients, unless the
// message is itself a bounce or the recipients asked for no notice.
func (q *Queue) bounce(ctx context.Context, env *Envelope, header []byte, failed map[string]string) {
	if env.From == "" || env.Raw {
		return
	}
	notify := map[string]string{}
	for _, r := range env.Recipients {
		why, ok := failed[r.Addr]
		if !ok || hasNotify(r.Notify, "NEVER") || (len(r.Notify) > 0 && !hasNotify(r.Notify, "FAILURE")) {
			continue
		}
		notify[r.Addr] = why
	}
	if len(notify) == 0 {
		return
	}
	dsn := BuildDSN(DSNInput{Hostname: q.Hostname, Envelope: env, Failed: notify, Header: header})
	if err := q.Accept(ctx, &Envelope{From: "", Recipients: []Recipient{{Addr: env.From}}, Raw: true}, bytes.NewReader(dsn)); err != nil {
		q.Log.Error("queueing DSN", "queue_id", env.ID, "err", err)
	}
}

func hasNotify(n []string, v string) bool {
	for _, x := range n {
		if strings.EqualFold(x, v) {
			return true
		}
	}
	return false
}

// IsPermanent says whether a relay error is a 5xx answer.
func IsPermanent(err error) bool {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code >= 500
	}
	var pe *PermanentError
	return errors.As(err, &pe)
}

// PermanentError marks a failure that retrying cannot fix.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

func toRecipients(addrs []string) []Recipient {
	out := make([]Recipient, len(addrs))
	for i, a := range addrs {
		out[i] = Recipient{Addr: a}
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func joinReasons(m map[string]string) string {
	var b strings.Builder
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(k + ": " + m[k])
	}
	s := b.String()
	if len(s) > 2000 {
		s = s[:2000]
	}
	return s
}

// headerOf returns the header section of msg (up to and including the
// CRLF before the empty line).
func headerOf(msg []byte) []byte {
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return msg[:i+2]
	}
	return msg
}

// describe renders a relay error with the next hop's reply code, which the
// DSN's Status and Diagnostic-Code fields need.
func describe(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		ec := se.EnhancedCode
		if ec == smtp.NoEnhancedCode || ec == (smtp.EnhancedCode{}) {
			return fmt.Sprintf("%d %s", se.Code, se.Message)
		}
		return fmt.Sprintf("%d %d.%d.%d %s", se.Code, ec[0], ec[1], ec[2], se.Message)
	}
	return err.Error()
}
