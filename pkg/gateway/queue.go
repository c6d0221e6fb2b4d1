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
	"github.com/sealgate/sealgate/pkg/policy"
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

// MessageStore keeps the sealed messages in the database, each in the same
// row and transaction as its queue entry, and leases the entries to the
// node working on them (*store.Store and *store.GroupCommit satisfy it).
// With it any node of a cluster delivers any message; without it messages
// stay in this node's spool files.
type MessageStore interface {
	PutQueueMessage(ctx context.Context, e store.QueueEntry, sealed []byte) error
	QueueMessage(ctx context.Context, id string) ([]byte, error)
	ClaimQueueEntries(ctx context.Context, node, lane string, now, until time.Time, limit int) ([]store.QueueEntry, error)
	RenewLeases(ctx context.Context, node, lane string, ids []string, until time.Time) (int, error)
	ReleaseLeases(ctx context.Context, node, lane string) (int, error)
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
	// TLS is the strictest TLS mode the parcel's recipients' rules ask
	// for (policy tls); only direct delivery (relay.mode = "mx") tells
	// the modes above required apart. Parcels are made anew from the
	// spooled message on every attempt, so a restart keeps it.
	TLS policy.TLSMode
	// Reason says why the copy is in this form where the rule alone does
	// not (tls_fallback = "pdf") and what it shows differently (PDF
	// warnings: code points only, never message content); it goes into
	// the delivered events.
	Reason string
	// After are messages queued only once the next hop has accepted this
	// parcel for all its recipients: a PDF password notice must not go
	// out for a copy that was held, bounced or is still waiting.
	After []ExtraMessage
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
	// TLS is the rule's TLS mode (the zero value is opportunistic).
	TLS policy.TLSMode
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

// RcptHopRelay is a Relay whose recipients may leave over different hops
// (direct delivery: one parcel, several domains): one TLS per recipient.
type RcptHopRelay interface {
	Relay
	DeliverEach(ctx context.Context, d Delivery) ([]error, []*events.TLS)
}

// Queue accepts messages into the spool and delivers them: one worker per
// message, retries with backoff per recipient, holds and bounces.
type Queue struct {
	Spool *Spool
	Store QueueStore
	// Messages, if set, keeps new messages in the database (sealed by
	// Spool's code and keyring, no file) and has this node claim due work
	// under a lease, so that nodes sharing one PostgreSQL deliver each
	// other's mail (store.driver = "postgres"). Spool files of earlier
	// versions are moved into it by Recover.
	Messages MessageStore
	// Lease is how long a claim lasts without renewal (default 2 min): a
	// node that dies loses its work to the others after it. A node renews
	// the leases of the messages it works on every Lease/3.
	Lease time.Duration
	Node  string // this node's name: its spool holds the messages it accepted
	// Lane is which queue this is in the shared queue table:
	// store.LaneOutbound (also for "") or store.LaneInbound. The queue
	// writes, claims, lists, renews and recovers entries of its lane only
	// and never delivers an entry of the other lane, whose relay differs.
	Lane     string
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
		if q.Lane == "" {
			q.Lane = store.LaneOutbound
		}
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
		if q.Lease <= 0 {
			q.Lease = 2 * time.Minute
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
	if q.Messages != nil {
		return q.acceptStored(ctx, env, r, hc)
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
	e := store.QueueEntry{ID: env.ID, Node: q.Node, Lane: q.Lane, Sender: env.From, Recipients: env.Addrs(),
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

// acceptStored is Accept with the message in the database: sealed in
// memory, then entry and message in one transaction, leased to this node
// (which delivers it at once); 250 only after that commit.
func (q *Queue) acceptStored(ctx context.Context, env *Envelope, r io.Reader, hc *headerCapture) error {
	sealed, size, err := q.Spool.Seal(env, r)
	if err != nil {
		return err
	}
	if hc != nil {
		hdr, err := hc.header()
		if err == nil {
			err = q.Admit.Admit(ctx, env, hdr)
		}
		if err != nil {
			return err // nothing was written
		}
	}
	e := store.QueueEntry{ID: env.ID, Node: q.Node, Lane: q.Lane, Sender: env.From, Recipients: env.Addrs(),
		State: StateQueued, NextAttempt: env.Received, Size: size, CreatedAt: env.Received,
		LeaseNode: q.Node, LeaseUntil: time.Now().Add(q.Lease), Stored: true}
	q.fresh.Store(env.ID, e)
	if err := q.Messages.PutQueueMessage(ctx, e, sealed); err != nil {
		q.fresh.Delete(env.ID)
		return fmt.Errorf("queue: recording %s: %w", env.ID, err)
	}
	select {
	case q.wake <- env.ID:
	default: // its lease runs out and a poll claims it
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
	if q.Messages != nil {
		return q.recoverStored(ctx)
	}
	q.Spool.removeTemps()
	ids, err := q.Spool.IDs()
	if err != nil {
		return err
	}
	onDisk := map[string]bool{}
	for _, id := range ids {
		onDisk[id] = true
		if e, err := q.Store.QueueEntry(ctx, id); err == nil && e.Lane != q.Lane {
			q.Log.Error("spool file of the other queue's entry left alone", "queue_id", id, "lane", e.Lane, "queue_lane", q.Lane)
			continue
		} else if err == nil && e.State == StateDeleted {
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
		if err := q.Store.PutQueueEntry(ctx, store.QueueEntry{ID: id, Node: q.Node, Lane: q.Lane, Sender: env.From,
			Recipients: env.Addrs(), State: StateQueued, NextAttempt: time.Now(), CreatedAt: env.Received}); err != nil {
			return err
		}
		q.Log.Info("recovered spooled message", "queue_id", id)
	}
	all, err := q.Store.QueueEntries(ctx, store.QueueFilter{Node: q.Node, Lane: q.Lane})
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
	if q.Messages != nil {
		renewDone := make(chan struct{})
		defer func() { <-renewDone }()
		go func() { defer close(renewDone); q.renewLeases(ctx) }()
	}
	// more is ready when the last claim took all it asked for: there is
	// probably more due (a dead node's backlog), so claim again at once.
	more := make(chan struct{}, 1)
	lastExpiry := time.Time{}
	for {
		var due []store.QueueEntry
		var err error
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case id := <-q.wake:
			dispatch(id)
			continue
		case <-more:
			due, err = q.claim(ctx, time.Now(), more)
		case now := <-tick.C:
			if q.Messages != nil {
				due, err = q.claim(ctx, now, more)
			} else {
				due, err = q.Store.QueueEntries(ctx, store.QueueFilter{Node: q.Node, Lane: q.Lane, DueBy: now, Limit: 1000})
			}
			if now.Sub(lastExpiry) > 60*q.Poll {
				lastExpiry = now
				q.expireHeld(ctx, now)
			}
		}
		if err != nil && ctx.Err() == nil {
			q.Log.Error("queue poll", "err", err)
		}
		for _, e := range due {
			if e.State != StateHeld {
				dispatch(e.ID)
			}
		}
	}
}

// claim takes the lease on up to Workers due entries (any node's) and
// signals more when it got all it asked for.
func (q *Queue) claim(ctx context.Context, now time.Time, more chan struct{}) ([]store.QueueEntry, error) {
	// A claim that hangs (a network cut to the database) must not stall
	// the loop that also hands out the fresh messages.
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	due, err := q.Messages.ClaimQueueEntries(cctx, q.Node, q.Lane, now, now.Add(q.Lease), q.Workers)
	if err != nil {
		return nil, err
	}
	if len(due) == q.Workers {
		select {
		case more <- struct{}{}:
		default:
		}
	}
	for _, e := range due {
		if e.Node != q.Node {
			q.Log.Info("delivering a message accepted by another node", "queue_id", e.ID, "accepted_by", e.Node)
		}
	}
	return due, nil
}

// holdsLease says whether this node may deliver e now. A lease that is
// ours with more than half its time left is (no other node may claim it
// before it runs out); one closer to its end (a message that waited long
// for a worker, or a database outage stopped the renewals) is confirmed
// and extended in the database, and lost if another node took it. A
// message kicked here without a lease (the portal made it due) is taken
// if nobody holds a live lease on it.
func (q *Queue) holdsLease(ctx context.Context, e store.QueueEntry) bool {
	if e.LeaseNode != q.Node {
		return q.takeLease(ctx, e.ID)
	}
	if time.Until(e.LeaseUntil) > q.Lease/2 {
		return true
	}
	n, err := q.Messages.RenewLeases(ctx, q.Node, q.Lane, []string{e.ID}, time.Now().Add(q.Lease))
	if err != nil {
		q.Log.Error("confirming a lease", "queue_id", e.ID, "err", err)
		return false // the lease runs out and it is claimed again
	}
	if n == 0 {
		q.Log.Info("lease taken over by another node before the delivery began", "queue_id", e.ID)
	}
	return n == 1
}

// renewLeases extends the leases of the messages in flight every Lease/3
// until ctx ends, so that a slow delivery is not taken over by another
// node; a node that dies stops renewing and its leases run out.
func (q *Queue) renewLeases(ctx context.Context) {
	t := time.NewTicker(q.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// The messages in flight, and those accepted here that wait for
		// a worker (their lease is from the accept).
		q.mu.Lock()
		ids := make([]string, 0, len(q.inflight))
		for id := range q.inflight {
			ids = append(ids, id)
		}
		q.mu.Unlock()
		q.fresh.Range(func(id, _ any) bool {
			ids = append(ids, id.(string))
			return true
		})
		if len(ids) == 0 {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, q.Lease/3)
		n, err := q.Messages.RenewLeases(rctx, q.Node, q.Lane, ids, time.Now().Add(q.Lease))
		cancel()
		if err != nil && ctx.Err() == nil {
			q.Log.Error("renewing the leases of the messages in flight", "err", err)
		} else if n < len(ids) {
			q.Log.Debug("some leases were not renewed (finished meanwhile, or taken over after a stall)", "renewed", n, "in_flight", len(ids))
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
	f := store.QueueFilter{Node: q.Node, Lane: q.Lane, State: StateHeld}
	if q.Messages != nil {
		f.Node = "" // any node's: the one that held it may be gone
	}
	held, err := q.Store.QueueEntries(ctx, f)
	if err != nil {
		return
	}
	for _, e := range held {
		if now.Sub(e.CreatedAt) < q.RetryFor {
			continue
		}
		if e.Stored && !q.takeLease(ctx, e.ID) {
			continue // another node expires it
		}
		if !e.Stored && e.Node != q.Node {
			continue // in another node's spool
		}
		m, err := q.open(ctx, e)
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
		q.finish(ctx, e.ID, e.Stored)
	}
}

// takeLease gives this node the lease on entry id if nobody holds a live
// one, for work a claim does not hand out (expiring held messages).
func (q *Queue) takeLease(ctx context.Context, id string) bool {
	got := false
	err := q.Store.UpdateQueueEntry(ctx, id, func(e *store.QueueEntry) error {
		now := time.Now()
		if e.LeaseNode != "" && e.LeaseNode != q.Node && e.LeaseUntil.After(now) {
			return nil
		}
		e.LeaseNode, e.LeaseUntil, got = q.Node, now.Add(q.Lease), true
		return nil
	})
	return err == nil && got
}

// open opens the message of entry e: from the database when it is stored
// there, else from this node's spool.
func (q *Queue) open(ctx context.Context, e store.QueueEntry) (*SpooledMessage, error) {
	if !e.Stored || q.Messages == nil {
		return q.Spool.Open(e.ID)
	}
	sealed, err := q.Messages.QueueMessage(ctx, e.ID)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	return q.Spool.OpenSealed(e.ID, sealed)
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
// second delivery. A message stored in the database goes with its entry.
func (q *Queue) finish(ctx context.Context, id string, stored bool) {
	if stored {
		err := q.persist(ctx, id, "removing delivered message", func() error {
			err := q.Store.DeleteQueueEntry(ctx, id)
			if errors.Is(err, store.ErrNotFound) {
				return nil // deleted by an operator meanwhile
			}
			return err
		})
		if err != nil {
			// Its lease runs out and it is delivered again (at least once).
			q.Log.Error("removing delivered message", "queue_id", id, "err", err)
		}
		return
	}
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
	if entry.Lane != q.Lane {
		// Another queue's message (an id kicked or woken here by
		// mistake): its relay is not ours, so it is not ours to send.
		q.Log.Error("queue entry of the other lane not delivered", "queue_id", id, "lane", entry.Lane, "queue_lane", q.Lane)
		return
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
	if entry.Stored && !q.holdsLease(ctx, entry) {
		return // claimed meanwhile by another node, whose lease stands
	}
	m, err := q.open(ctx, entry)
	if entry.Stored && errors.Is(err, store.ErrNotFound) {
		q.Log.Info("message deleted before its delivery", "queue_id", id)
		return
	}
	if entry.Stored && err != nil && !errors.Is(err, ErrSpoolCorrupt) {
		// The database, not the message: its lease runs out and it is
		// tried again (by this node or another).
		q.Log.Error("reading a queued message", "queue_id", id, "err", err)
		return
	}
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
	each, perRcpt := q.Relay.(RcptHopRelay)
	for i, p := range plan.Parcels {
		d := Delivery{QueueID: id, Index: i, From: env.From, Rcpts: p.Rcpts, Data: p.Data,
			UTF8: env.UTF8 && needsSMTPUTF8(env.From, p.Rcpts, p.Data), RequireTLS: p.RequireTLS, TLS: p.TLS}
		var (
			errs []error
			tls  *events.TLS
			tlss []*events.TLS
		)
		switch {
		case perRcpt:
			errs, tlss = each.DeliverEach(ctx, d)
		case reports:
			errs, tls = hop.DeliverHop(ctx, d)
		default:
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
				ev.Recipient, ev.Outcome, ev.Method, ev.Signed, ev.Rule, ev.TLS, ev.Reason = r, events.Delivered, p.Method, p.Signed, p.Rule, tls, p.Reason
				if j < len(tlss) {
					ev.TLS = tlss[j]
				}
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
		q.finish(ctx, id, entry.Stored)
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

// persist runs write, the outcome of a delivery, until it succeeds or ctx
// ends, when the messages are in the database (Messages): the next hop has
// answered already, and a write lost to a database restart would send the
// message again once its lease ran out. The message stays in flight
// meanwhile, so its lease is renewed once the database is back.
func (q *Queue) persist(ctx context.Context, id, what string, write func() error) error {
	err := write()
	if q.Messages == nil {
		return err
	}
	wait := 200 * time.Millisecond
	// Gone (an operator deleted it) is an answer, not an outage.
	for err != nil && !errors.Is(err, store.ErrNotFound) {
		q.Log.Warn(what+": retrying", "queue_id", id, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
		err = write()
	}
	return err
}

func (q *Queue) updateEntry(ctx context.Context, id string, fn func(*store.QueueEntry)) {
	err := q.persist(ctx, id, "updating queue entry", func() error { return q.updateEntryOnce(ctx, id, fn) })
	if errors.Is(err, store.ErrNotFound) {
		return // deleted by an operator meanwhile
	}
	if err != nil {
		q.Log.Error("updating queue entry", "queue_id", id, "err", err)
	}
}

func (q *Queue) updateEntryOnce(ctx context.Context, id string, fn func(*store.QueueEntry)) error {
	return q.Store.UpdateQueueEntry(ctx, id, func(e *store.QueueEntry) error {
		if e.State == StateDeleted {
			return nil // an operator deleted it meanwhile: that stands
		}
		if e.Stored && e.LeaseNode != q.Node {
			// This node stalled past its lease and another took over:
			// that node's outcome stands.
			q.Log.Warn("lease lost during delivery; the other node's outcome stands", "queue_id", id, "lease_node", e.LeaseNode)
			return nil
		}
		fn(e)
		e.LeaseNode, e.LeaseUntil = "", time.Time{} // done with it: free for whoever it is due for
		return nil
	})
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
	e := store.QueueEntry{ID: cp.ID, Node: q.Node, Lane: q.Lane, Sender: cp.From,
		Recipients: cp.Addrs(), State: StateHeld, HoldReason: joinReasons(held), Size: int64(len(msg)), CreatedAt: env.Received,
		// Its acceptance is recorded already (attempt 0 would record it
		// again when it is released).
		Attempts: attempt}
	var err error
	if q.Messages != nil {
		var sealed []byte
		if sealed, _, err = q.Spool.Seal(&cp, bytes.NewReader(msg)); err == nil {
			err = q.Messages.PutQueueMessage(ctx, e, sealed)
		}
	} else if _, err = q.Spool.Write(&cp, bytes.NewReader(msg)); err == nil {
		err = q.Store.PutQueueEntry(ctx, e)
	}
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

// recoverStored is Recover with the messages in the database. This node's
// leases from before a crash are freed (it is starting, so it works on
// nothing), and the spool files of an earlier version, or of this node
// before it joined a cluster, move into the database: each is read through
// (every chunk authenticated) and stored with its entry in one
// transaction, then its file goes. A file without an entry that does not
// read through was cut short by a crash before its 250 and goes.
func (q *Queue) recoverStored(ctx context.Context) error {
	if n, err := q.Messages.ReleaseLeases(ctx, q.Node, q.Lane); err != nil {
		return err
	} else if n > 0 {
		q.Log.Info("freed the leases this node held before it stopped", "entries", n)
	}
	q.Spool.removeTemps()
	ids, err := q.Spool.IDs()
	if err != nil {
		return err
	}
	onDisk := map[string]bool{}
	for _, id := range ids {
		onDisk[id] = true
		e, err := q.Store.QueueEntry(ctx, id)
		switch {
		case err == nil && e.Lane != q.Lane:
			q.Log.Error("spool file of the other queue's entry left alone", "queue_id", id, "lane", e.Lane, "queue_lane", q.Lane)
			continue
		case err == nil && e.State == StateDeleted:
			q.discardDeleted(ctx, id)
			continue
		case err == nil && e.Stored:
			_ = q.Spool.Remove(id) // moved before a crash; the row has it
			continue
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return err
		}
		found := err == nil
		raw, rerr := os.ReadFile(q.Spool.path(id))
		var m *SpooledMessage
		if rerr == nil {
			if m, rerr = q.Spool.OpenSealed(id, raw); rerr == nil {
				_, rerr = io.Copy(io.Discard, m)
				m.Close()
			}
		}
		if rerr != nil {
			if found {
				// Acknowledged once: an admin decides, nothing is dropped.
				q.Log.Error("spooled message unreadable, left in the spool for an admin", "queue_id", id, "err", rerr)
				continue
			}
			q.Log.Warn("incomplete spool file without a queue entry removed (its write was interrupted before the 250)", "queue_id", id, "err", rerr)
			_ = q.Spool.Remove(id)
			continue
		}
		if !found {
			env := m.Envelope
			e = store.QueueEntry{ID: id, Node: q.Node, Lane: q.Lane, Sender: env.From, Recipients: env.Addrs(), State: StateQueued,
				NextAttempt: time.Now(), CreatedAt: env.Received}
		}
		e.LeaseNode, e.LeaseUntil = "", time.Time{}
		if err := q.Messages.PutQueueMessage(ctx, e, raw); err != nil {
			return err
		}
		if err := q.Spool.Remove(id); err != nil {
			q.Log.Error("removing a spool file moved into the database", "queue_id", id, "err", err)
		}
		q.Log.Info("spooled message moved into the database", "queue_id", id)
	}
	all, err := q.Store.QueueEntries(ctx, store.QueueFilter{Node: q.Node, Lane: q.Lane})
	if err != nil {
		return err
	}
	for _, e := range all {
		if !e.Stored && !onDisk[e.ID] {
			q.Log.Warn("queue entry without spool file dropped (delivered before a crash)", "queue_id", e.ID)
			_ = q.Store.DeleteQueueEntry(ctx, e.ID)
		}
	}
	return nil
}
