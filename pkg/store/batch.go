package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// GroupCommit shares one transaction, and so one fsync of the database,
// among the queue, audit, key and certificate writes that arrive while
// the previous commit is on disk. Every call still returns only after its
// own write is committed, so a caller's durability is exactly that of the
// plain *Store method: the gateway answers 250 after the commit as before, just no
// longer one commit per message. With synchronous=FULL a commit costs an
// fsync, and the gateway used to pay three per message (queue put, queue
// delete, audit event); under load a single commit now carries dozens.
// A PKI rollout paid three per user (key, certificate, audit event) and,
// with its workers in parallel, spent most of its time waiting on them.
//
// The read methods and everything else come from the embedded *Store.
// Close stops the writer; calls after Close fall back to the plain methods.
//
// Each caller's context is honoured: a call whose context ends while its
// write waits for the writer returns the context's error and is left out
// of every transaction (nothing of it is written); one whose context ends
// while its transaction is under way returns the context's error at once
// (the write may then have been committed, as with any database call cut
// short), and the others in that transaction go on. A transaction runs
// until the latest deadline of the callers in it, without one only when
// some caller set none.
type GroupCommit struct {
	*Store
	// MaxRows caps the writes in one transaction (default 256).
	MaxRows int
	// Linger, if set, is how long a commit waits for more writes after
	// the first. With zero a lone write pays no extra latency and under
	// load the batch is what piled up during the previous commit; but
	// writers that are busy with CPU work between writes (a rollout's
	// key generation, the gateway's signing) arrive one by one, commits
	// then carried ~1.4 rows each and their fsyncs and transaction
	// overhead cost 5-10% of the CPU. serve lingers 2 ms, a rollout 5 ms.
	Linger time.Duration

	once    sync.Once
	ops     chan *batchOp
	stop    chan struct{}
	stopped chan struct{}
	// mu makes Close and sending an op exclusive: once Close holds it,
	// nothing more enters ops, so the writer's final drain sees all.
	mu      sync.RWMutex
	closing bool
	// beforeCommit, if set (tests), is called with the batch's size before
	// its transaction begins.
	beforeCommit func(n int)
}

// NewGroupCommit returns a group committer writing to s; it starts its
// writer on first use. Call Close when done.
func NewGroupCommit(s *Store) *GroupCommit {
	return &GroupCommit{Store: s, stop: make(chan struct{}), stopped: make(chan struct{})}
}

type batchKind int

const (
	opPut batchKind = iota
	opDelete
	opAudit
	opKey
	opCert
	opEvent
	opPutMsg
)

type batchOp struct {
	kind  batchKind
	entry QueueEntry
	id    string
	audit AuditEvent
	cert  Certificate
	event DeliveryEvent // with opEvent; exec sets its ID
	key   []byte        // PKCS#8 DER
	msg   []byte        // the sealed message, with opPutMsg
	// sealed is key sealed before queueing, so that AES-GCM runs in the
	// caller's goroutine rather than in the one writer.
	sealed []byte
	// ctx carries the caller's values, not its end: a write taken into a
	// transaction is finished there with the others (deadline: see
	// batchContext). caller is the caller's own context.
	ctx    context.Context
	caller context.Context
	// state is opWaiting until the writer takes the op (opTaken) or the
	// caller gives up on it first (opAbandoned): whoever moves it first
	// decides whether it is written.
	state atomic.Int32
	done  chan error
}

const (
	opWaiting int32 = iota
	opTaken
	opAbandoned
)

// take claims op for a transaction; false when its caller has gone (its
// context ended first), and then it is not written.
func (op *batchOp) take() bool { return op.state.CompareAndSwap(opWaiting, opTaken) }

func (g *GroupCommit) start() {
	g.once.Do(func() {
		if g.MaxRows <= 0 {
			g.MaxRows = 256
		}
		g.ops = make(chan *batchOp, 4*g.MaxRows)
		go g.loop()
	})
}

// PutQueueEntry is (*Store).PutQueueEntry, committed with whatever else
// is waiting.
func (g *GroupCommit) PutQueueEntry(ctx context.Context, e QueueEntry) error {
	if e.ID == "" || e.State == "" {
		return g.Store.PutQueueEntry(ctx, e) // its error message
	}
	return g.submit(ctx, &batchOp{kind: opPut, entry: e})
}

// PutQueueMessage is (*Store).PutQueueMessage, committed with whatever else
// is waiting: entry and message still go in the same transaction.
func (g *GroupCommit) PutQueueMessage(ctx context.Context, e QueueEntry, sealed []byte) error {
	if e.ID == "" || e.State == "" || checkQueueMessage(e, sealed) != nil {
		return g.Store.PutQueueMessage(ctx, e, sealed) // its error message
	}
	return g.submit(ctx, &batchOp{kind: opPutMsg, entry: e, msg: sealed})
}

// DeleteQueueEntry is (*Store).DeleteQueueEntry (ErrNotFound if there was
// no entry), committed with whatever else is waiting.
func (g *GroupCommit) DeleteQueueEntry(ctx context.Context, id string) error {
	return g.submit(ctx, &batchOp{kind: opDelete, id: id})
}

// Audit is (*Store).Audit, committed with whatever else is waiting.
func (g *GroupCommit) Audit(ctx context.Context, e AuditEvent) error {
	if e.Action == "" {
		return g.Store.Audit(ctx, e)
	}
	return g.submit(ctx, &batchOp{kind: opAudit, audit: e})
}

// RecordDelivery is (*Store).RecordDelivery, committed with whatever else
// is waiting.
func (g *GroupCommit) RecordDelivery(ctx context.Context, e DeliveryEvent) (int64, error) {
	op := &batchOp{kind: opEvent, event: e}
	if err := g.submit(ctx, op); err != nil {
		return 0, err
	}
	return op.event.ID, nil
}

// PutKey is (*Store).PutKey, committed with whatever else is waiting: a
// rollout issuing for many users at once writes their keys in shared
// commits.
func (g *GroupCommit) PutKey(ctx context.Context, id string, pkcs8DER []byte) error {
	sealed, err := g.Store.sealKey(id, pkcs8DER)
	if err != nil {
		return err
	}
	return g.submit(ctx, &batchOp{kind: opKey, id: id, key: pkcs8DER, sealed: sealed})
}

// RecordCertificate is (*Store).RecordCertificate, committed with whatever
// else is waiting.
func (g *GroupCommit) RecordCertificate(ctx context.Context, c Certificate, e AuditEvent) error {
	if e.Action == "" {
		return g.Store.RecordCertificate(ctx, c, e) // its error message
	}
	return g.submit(ctx, &batchOp{kind: opCert, cert: c, audit: e})
}

func (g *GroupCommit) submit(ctx context.Context, op *batchOp) error {
	g.start()
	if err := ctx.Err(); err != nil {
		return err
	}
	op.ctx, op.caller = context.WithoutCancel(ctx), ctx
	op.done = make(chan error, 1)
	g.mu.RLock()
	if g.closing {
		g.mu.RUnlock()
		return g.single(ctx, op)
	}
	select {
	case g.ops <- op:
		g.mu.RUnlock()
	case <-ctx.Done():
		g.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-op.done:
		return err
	case <-ctx.Done():
		if op.state.CompareAndSwap(opWaiting, opAbandoned) {
			return ctx.Err() // never taken: nothing was written
		}
		// Its transaction is under way and goes on for the others.
		return fmt.Errorf("store: gave up waiting for the commit, which may yet succeed: %w", ctx.Err())
	}
}

// Close commits what is waiting and stops the writer.
func (g *GroupCommit) Close() error {
	g.start()
	g.mu.Lock()
	if !g.closing {
		g.closing = true
		close(g.stop)
	}
	g.mu.Unlock()
	<-g.stopped
	return nil
}

func (g *GroupCommit) loop() {
	defer close(g.stopped)
	batch := make([]*batchOp, 0, g.MaxRows)
	for {
		var first *batchOp
		select {
		case first = <-g.ops:
		case <-g.stop:
			// Drain what got in before stop.
			for {
				select {
				case op := <-g.ops:
					if op.take() {
						octx, ocancel := batchContext([]*batchOp{op})
						op.done <- g.single(octx, op)
						ocancel()
					}
				default:
					return
				}
			}
		}
		batch = batch[:0]
		if first.take() {
			batch = append(batch, first)
		}
		if g.Linger > 0 {
			batch = g.linger(batch)
		}
		// Take whatever arrived meanwhile: no timer, so a lone write
		// pays no extra latency, and under load the batch is what piled
		// up during the previous commit.
	fill:
		for len(batch) < g.MaxRows {
			select {
			case op := <-g.ops:
				if op.take() {
					batch = append(batch, op)
				}
			default:
				break fill
			}
		}
		if len(batch) > 0 {
			g.commit(batch)
		}
	}
}

// linger adds to batch what arrives within Linger, up to MaxRows.
func (g *GroupCommit) linger(batch []*batchOp) []*batchOp {
	t := time.NewTimer(g.Linger)
	defer t.Stop()
	for len(batch) < g.MaxRows {
		select {
		case op := <-g.ops:
			if op.take() {
				batch = append(batch, op)
			}
		case <-t.C:
			return batch
		case <-g.stop:
			return batch
		}
	}
	return batch
}

// commit writes batch in one transaction. If the transaction fails as a
// whole (PostgreSQL aborts it at the first failing statement), every write
// is retried on its own so that one bad row does not fail the others.
func (g *GroupCommit) commit(batch []*batchOp) {
	if g.beforeCommit != nil {
		g.beforeCommit(len(batch))
	}
	ctx, cancel := batchContext(batch)
	defer cancel()
	results := make([]error, len(batch))
	err := g.Store.tx(ctx, func(tx *sql.Tx) error {
		for i, op := range batch {
			results[i] = g.exec(ctx, tx, op)
			if results[i] != nil && !errors.Is(results[i], ErrNotFound) {
				return results[i]
			}
		}
		return nil
	})
	if err != nil {
		for _, op := range batch {
			octx, ocancel := batchContext([]*batchOp{op})
			op.done <- g.single(octx, op)
			ocancel()
		}
		return
	}
	for i, op := range batch {
		op.done <- results[i]
	}
}

// batchContext is the context a transaction of batch runs under: the
// callers' values (the first's), and the latest of their deadlines when
// every one has a deadline, so that a hung database is given up on once
// no caller is waiting any more; a caller that ends earlier has already
// had its answer (submit).
func batchContext(batch []*batchOp) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, op := range batch {
		d, ok := op.caller.Deadline()
		if !ok {
			return context.WithCancel(batch[0].ctx)
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(batch[0].ctx, latest)
}

// single writes one op in its own transaction.
func (g *GroupCommit) single(ctx context.Context, op *batchOp) error {
	switch op.kind {
	case opPut:
		return g.Store.PutQueueEntry(ctx, op.entry)
	case opPutMsg:
		return g.Store.PutQueueMessage(ctx, op.entry, op.msg)
	case opDelete:
		return g.Store.DeleteQueueEntry(ctx, op.id)
	case opKey:
		return g.Store.tx(ctx, func(tx *sql.Tx) error { return g.Store.putKey(ctx, tx, op.id, op.key, op.sealed) })
	case opCert:
		return g.Store.tx(ctx, func(tx *sql.Tx) error { return g.Store.recordCertificate(ctx, tx, op.cert, op.audit) })
	case opEvent:
		id, err := g.Store.RecordDelivery(ctx, op.event)
		op.event.ID = id
		return err
	default:
		return g.Store.Audit(ctx, op.audit)
	}
}

func (g *GroupCommit) exec(ctx context.Context, tx *sql.Tx, op *batchOp) error {
	switch op.kind {
	case opPut:
		return g.Store.putQueueEntry(ctx, tx, op.entry)
	case opPutMsg:
		return g.Store.putQueueMessage(ctx, tx, op.entry, op.msg)
	case opDelete:
		res, err := g.Store.exec(ctx, tx, `DELETE FROM queue WHERE id = $1`, op.id)
		if err != nil {
			return fmt.Errorf("store: deleting queue entry %s: %w", op.id, err)
		}
		return rowsAffected(res, "store: queue entry "+op.id)
	case opKey:
		return g.Store.putKey(ctx, tx, op.id, op.key, op.sealed)
	case opCert:
		return g.Store.recordCertificate(ctx, tx, op.cert, op.audit)
	case opEvent:
		id, err := g.Store.insertDeliveryEvent(ctx, tx, op.event)
		op.event.ID = id
		return err
	default:
		return g.Store.insertAudit(ctx, tx, op.audit)
	}
}
