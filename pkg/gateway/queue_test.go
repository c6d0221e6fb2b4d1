package gateway

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/store"
)

// passAll is a Processor that relays the message unchanged to everyone.
type passAll struct{}

func (passAll) Process(_ context.Context, _ *Envelope, rcpts []string, msg []byte) (*Plan, error) {
	return &Plan{Parcels: []Parcel{{Rcpts: rcpts, Data: msg, Method: "plain"}}}, nil
}

type planFunc func(rcpts []string, msg []byte) (*Plan, error)

func (f planFunc) Process(_ context.Context, _ *Envelope, rcpts []string, msg []byte) (*Plan, error) {
	return f(rcpts, msg)
}

const testMsg = "From: a@org.test\r\nTo: b@ext.test\r\nSubject: quarterly numbers\r\nMessage-Id: <m1@org.test>\r\n\r\nSECRET BODY\r\n"

func accept(t *testing.T, q *Queue, rcpts ...string) string {
	t.Helper()
	env := &Envelope{From: "a@org.test", Recipients: toRecipients(rcpts)}
	if err := q.Accept(context.Background(), env, strings.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	return env.ID
}

func queueEmpty(q *Queue) func() bool {
	return func() bool {
		es, _ := q.Store.QueueEntries(context.Background(), store.QueueFilter{})
		ids, _ := q.Spool.IDs()
		return len(es) == 0 && len(ids) == 0
	}
}

func TestQueueDeliversAndForgets(t *testing.T) {
	relay := &recordingRelay{}
	q, el := testQueue(t, passAll{}, relay)
	runQueue(t, q)
	id := accept(t, q, "b@ext.test", "c@ext.test")
	waitFor(t, "delivery", queueEmpty(q))
	d := relay.deliveries()
	if len(d) != 1 || d[0].QueueID != id || len(d[0].Rcpts) != 2 || !strings.Contains(string(d[0].Data), "SECRET BODY") {
		t.Fatalf("deliveries: %+v", d)
	}
	log := el.String()
	if strings.Count(log, `"outcome":"delivered"`) != 2 || strings.Contains(log, "SECRET") {
		t.Fatalf("want one delivered line per recipient and no content:\n%s", log)
	}
}

func TestQueueRetriesTemporaryFailuresPerRecipient(t *testing.T) {
	var failures atomic.Int32
	relay := &recordingRelay{answer: func(r string) error {
		if r == "slow@ext.test" && failures.Add(1) <= 2 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	}}
	q, el := testQueue(t, passAll{}, relay)
	runQueue(t, q)
	accept(t, q, "ok@ext.test", "slow@ext.test")
	waitFor(t, "retries", queueEmpty(q))
	d := relay.deliveries()
	if len(d) != 3 || len(d[1].Rcpts) != 1 || d[1].Rcpts[0] != "slow@ext.test" {
		t.Fatalf("want 1 attempt for both then 2 for the slow one only, got %d: %+v", len(d), d)
	}
	if strings.Count(el.String(), `"outcome":"deferred"`) != 2 {
		t.Fatalf("want two deferred events:\n%s", el.String())
	}
}

func TestQueueBouncesPermanentFailureWithoutBody(t *testing.T) {
	relay := &recordingRelay{answer: func(r string) error {
		if r == "gone@ext.test" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}}
	q, _ := testQueue(t, passAll{}, relay)
	runQueue(t, q)
	accept(t, q, "gone@ext.test")
	waitFor(t, "bounce", func() bool { return len(relay.deliveries()) == 2 && queueEmpty(q)() })
	dsn := relay.deliveries()[1]
	if dsn.From != "" || len(dsn.Rcpts) != 1 || dsn.Rcpts[0] != "a@org.test" {
		t.Fatalf("DSN envelope: from %q to %v", dsn.From, dsn.Rcpts)
	}
	checkBounceReport(t, dsn.Data, "gone@ext.test", "5.1.1", "550 5.1.1 no such user")
}

// checkBounceReport has an independent parser (Python's email package)
// read a DSN of this queue's test message (testMsg, from a@org.test) and
// checks that it reports exactly one failed recipient with the status and
// a Diagnostic-Code containing diagnostic, and returns the header but not
// the body.
func checkBounceReport(t *testing.T, raw []byte, rcpt, status, diagnostic string) {
	t.Helper()
	rep := testpeer.ReadDSN(t, raw)
	if want := []string{"text/plain", "message/delivery-status", "text/rfc822-headers"}; !slices.Equal(rep.Parts, want) {
		t.Errorf("parts %v, want %v", rep.Parts, want)
	}
	if rep.To != "<a@org.test>" || rep.AutoSubmitted != "auto-replied" || rep.ReportingMTAType != "dns" || rep.ReportingMTA != "gw.test" {
		t.Errorf("To %q, Auto-Submitted %q, Reporting-MTA %q; %q", rep.To, rep.AutoSubmitted, rep.ReportingMTAType, rep.ReportingMTA)
	}
	want := testpeer.DSNRecipient{FinalRecipientType: "rfc822", FinalRecipient: rcpt, Action: "failed", Status: status, DiagnosticType: "smtp"}
	if len(rep.Recipients) != 1 {
		t.Fatalf("recipients %+v, want one", rep.Recipients)
	}
	got := rep.Recipients[0]
	if !strings.Contains(got.Diagnostic, diagnostic) {
		t.Errorf("Diagnostic-Code %q lacks %q", got.Diagnostic, diagnostic)
	}
	got.Diagnostic = ""
	if got != want {
		t.Errorf("recipient %+v, want %+v", got, want)
	}
	if rep.OriginalHeaders["Subject"] != "quarterly numbers" || rep.OriginalHeaders["Message-Id"] != "<m1@org.test>" {
		t.Errorf("returned header %v", rep.OriginalHeaders)
	}
	if strings.TrimSpace(rep.OriginalBody) != "" || bytes.Contains(raw, []byte("SECRET BODY")) {
		t.Errorf("the DSN carries the original body: %q", rep.OriginalBody)
	}
}

func TestQueueHoldsOnProcessingFailure(t *testing.T) {
	relay := &recordingRelay{}
	q, el := testQueue(t, planFunc(func([]string, []byte) (*Plan, error) {
		return nil, errors.New("directory unreachable")
	}), relay)
	runQueue(t, q)
	id := accept(t, q, "b@ext.test")
	waitFor(t, "hold", func() bool {
		e, err := q.Store.QueueEntry(context.Background(), id)
		return err == nil && e.State == StateHeld
	})
	if len(relay.deliveries()) != 0 {
		t.Fatal("a message whose processing failed went out")
	}
	e, _ := q.Store.QueueEntry(context.Background(), id)
	if !strings.Contains(e.HoldReason, "directory unreachable") || !strings.Contains(el.String(), `"outcome":"held"`) {
		t.Fatalf("hold reason %q / events:\n%s", e.HoldReason, el.String())
	}
}

func TestQueueSplitsHeldFromDeferred(t *testing.T) {
	var calls atomic.Int32
	relay := &recordingRelay{answer: func(string) error {
		if calls.Add(1) == 1 {
			return errors.New("connection refused")
		}
		return nil
	}}
	q, _ := testQueue(t, planFunc(func(rcpts []string, msg []byte) (*Plan, error) {
		p := &Plan{Held: map[string]string{}}
		var send []string
		for _, r := range rcpts {
			if r == "conf@ext.test" {
				p.Held[r] = "no certificate"
			} else {
				send = append(send, r)
			}
		}
		if len(send) > 0 {
			p.Parcels = []Parcel{{Rcpts: send, Data: msg}}
		}
		return p, nil
	}), relay)
	runQueue(t, q)
	accept(t, q, "conf@ext.test", "b@ext.test")
	waitFor(t, "b delivered, conf held alone", func() bool {
		es, _ := q.Store.QueueEntries(context.Background(), store.QueueFilter{})
		return len(relay.deliveries()) == 2 && len(es) == 1 && es[0].State == StateHeld &&
			len(es[0].Recipients) == 1 && es[0].Recipients[0] == "conf@ext.test"
	})
	ids, _ := q.Spool.IDs()
	if len(ids) != 1 {
		t.Fatalf("spool holds %d files, want the held copy only", len(ids))
	}
}

func TestQueueRecoversSpoolWithoutEntry(t *testing.T) {
	relay := &recordingRelay{}
	q, _ := testQueue(t, passAll{}, relay)
	q.init()
	// A crash after the fsync but before the store write: only the file.
	env := &Envelope{ID: NewID(), From: "a@org.test", Recipients: toRecipients([]string{"b@ext.test"})}
	if _, err := q.Spool.Write(env, strings.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	runQueue(t, q)
	waitFor(t, "recovered delivery", queueEmpty(q))
	if len(relay.deliveries()) != 1 {
		t.Fatal("recovered message not delivered")
	}
}

func TestQueueHeldExpiresIntoBounce(t *testing.T) {
	relay := &recordingRelay{}
	q, el := testQueue(t, planFunc(func(rcpts []string, _ []byte) (*Plan, error) {
		return &Plan{Held: map[string]string{rcpts[0]: "no certificate"}}, nil
	}), relay)
	q.RetryFor = 300 * time.Millisecond
	q.Poll = 5 * time.Millisecond
	runQueue(t, q)
	accept(t, q, "conf@ext.test")
	waitFor(t, "expiry bounce", func() bool { return len(relay.deliveries()) == 1 && queueEmpty(q)() })
	dsn := relay.deliveries()[0]
	if dsn.From != "" || len(dsn.Rcpts) != 1 || dsn.Rcpts[0] != "a@org.test" {
		t.Fatalf("DSN envelope: from %q to %v", dsn.From, dsn.Rcpts)
	}
	checkBounceReport(t, dsn.Data, "conf@ext.test", "5.0.0", "held too long (conf@ext.test: no certificate)")
	if !strings.Contains(el.String(), `"outcome":"bounced"`) {
		t.Fatal("no bounced event")
	}
}

// TestQueueRecoverRemovesInterruptedWrite: a spool file cut short by a
// crash has no queue entry (the entry is written after the file, the 250
// after the entry), so Recover removes it; a damaged file that has an
// entry is a message that got a 250 and stays for an admin, and so does
// the file of a write under way.
func TestQueueRecoverRemovesInterruptedWrite(t *testing.T) {
	relay := &recordingRelay{}
	q, _ := testQueue(t, passAll{}, relay)
	q.init()
	write := func() string {
		env := &Envelope{ID: NewID(), From: "a@org.test", Recipients: toRecipients([]string{"b@ext.test"})}
		if _, err := q.Spool.Write(env, strings.NewReader(testMsg)); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(q.Spool.path(env.ID))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(q.Spool.path(env.ID), fi.Size()-10); err != nil {
			t.Fatal(err)
		}
		return env.ID
	}
	interrupted := write()
	acked := write()
	inProgress := write()
	q.Spool.writing.Store(inProgress, true) // a session is writing it now
	if err := q.Store.PutQueueEntry(context.Background(), store.QueueEntry{ID: acked, Node: q.Node, Sender: "a@org.test",
		Recipients: []string{"b@ext.test"}, State: StateQueued, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := q.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(q.Spool.path(interrupted)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("interrupted write left in the spool: %v", err)
	}
	if _, err := os.Stat(q.Spool.path(acked)); err != nil {
		t.Errorf("damaged file of an acknowledged message removed: %v", err)
	}
	if _, err := os.Stat(q.Spool.path(inProgress)); err != nil {
		t.Errorf("file of a write under way removed: %v", err)
	}
}

// countingStore counts the queue entry reads.
type countingStore struct {
	QueueStore
	reads atomic.Int32
}

func (c *countingStore) QueueEntry(ctx context.Context, id string) (store.QueueEntry, error) {
	c.reads.Add(1)
	return c.QueueStore.QueueEntry(ctx, id)
}

// TestQueueFreshMessageNotReadBack: the delivery of a message just
// accepted takes its entry from Accept instead of reading it back.
func TestQueueFreshMessageNotReadBack(t *testing.T) {
	relay := &recordingRelay{}
	q, _ := testQueue(t, passAll{}, relay)
	cs := &countingStore{QueueStore: q.Store}
	q.Store = cs
	q.Poll = time.Hour // only the wake-up dispatches
	// Recovery first, as serve does, before accepting.
	if err := q.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	runQueue(t, q)
	accept(t, q, "b@ext.test")
	waitFor(t, "delivery", func() bool { return len(relay.deliveries()) == 1 && queueEmpty(q)() })
	if n := cs.reads.Load(); n != 0 {
		t.Fatalf("%d queue entry reads for a fresh message", n)
	}
}

// A client that asked for SMTPUTF8 (Exchange does whenever it is offered)
// needs it at the next hop only for non-ASCII addresses or header fields:
// otherwise a next hop without SMTPUTF8 would defer plain ASCII mail.
func TestNeedsSMTPUTF8(t *testing.T) {
	for _, tc := range []struct {
		name, from, rcpt, data string
		want                   bool
	}{
		{"ascii", "a@org.test", "b@ext.test", "Subject: hi\r\n\r\nGrüße in the body\r\n", false},
		{"utf-8 sender", "jörg@org.test", "b@ext.test", "Subject: hi\r\n\r\nx\r\n", true},
		{"utf-8 recipient", "a@org.test", "björn@ext.test", "Subject: hi\r\n\r\nx\r\n", true},
		{"utf-8 header", "a@org.test", "b@ext.test", "Subject: Grüße\r\n\r\nx\r\n", true},
	} {
		if got := needsSMTPUTF8(tc.from, []string{tc.rcpt}, []byte(tc.data)); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestQueueNodesSharingAStore: two gateway nodes on one store (as on
// PostgreSQL) with their own spools. Recover on one never drops the
// other's entries, and an entry written under an earlier node name whose
// file is in this spool is adopted and delivered.
func TestQueueNodesSharingAStore(t *testing.T) {
	relayA, relayB := &recordingRelay{}, &recordingRelay{}
	a, _ := testQueue(t, passAll{}, relayA)
	a.Node = "gw-3f9a01"
	b, _ := testQueue(t, passAll{}, relayB)
	b.Store, b.Events = a.Store, a.Events
	b.Spool, _ = OpenSpool(filepath.Join(t.TempDir(), "spool-b"), testKeyring(t))
	b.Node = "gw-77c2e4"
	ctx := context.Background()
	a.init()
	// A held message of node a: its entry must survive b's recovery.
	heldID := NewID()
	if _, err := a.Spool.Write(&Envelope{ID: heldID, From: "a@org.test", Recipients: toRecipients([]string{"x@ext.test"})}, strings.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	if err := a.Store.PutQueueEntry(ctx, store.QueueEntry{ID: heldID, Node: a.Node, State: StateHeld, Recipients: []string{"x@ext.test"}}); err != nil {
		t.Fatal(err)
	}
	// A message in b's spool whose entry names the host name b used to
	// be known by (both nodes were "gw.example.org").
	oldID := NewID()
	if _, err := b.Spool.Write(&Envelope{ID: oldID, From: "a@org.test", Recipients: toRecipients([]string{"y@ext.test"})}, strings.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	if err := b.Store.PutQueueEntry(ctx, store.QueueEntry{ID: oldID, Node: "gw.example.org", State: StateQueued, NextAttempt: time.Now(), Recipients: []string{"y@ext.test"}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if e, err := a.Store.QueueEntry(ctx, heldID); err != nil || e.Node != a.Node {
		t.Fatalf("node a's held entry after node b's recovery: %+v, %v", e, err)
	}
	runQueue(t, b)
	waitFor(t, "the adopted message delivered", func() bool { return len(relayB.deliveries()) == 1 })
	if len(relayA.deliveries()) != 0 {
		t.Fatal("node a delivered")
	}
}

// TestQueueDeleteOnAnotherNode: an operator deletes, on node a, a message
// that node b accepted (its file is in b's spool). Node b removes file and
// entry and never delivers it, also across a restart (Recover).
func TestQueueDeleteOnAnotherNode(t *testing.T) {
	for _, restart := range []bool{false, true} {
		relayB := &recordingRelay{}
		a, _ := testQueue(t, passAll{}, &recordingRelay{})
		a.Node = "gw-a"
		b, _ := testQueue(t, passAll{}, relayB)
		b.Store, b.Events, b.Node = a.Store, a.Events, "gw-b"
		ctx := context.Background()
		id := NewID()
		if _, err := b.Spool.Write(&Envelope{ID: id, From: "a@org.test", Recipients: toRecipients([]string{"x@ext.test"})}, strings.NewReader(testMsg)); err != nil {
			t.Fatal(err)
		}
		if err := b.Store.PutQueueEntry(ctx, store.QueueEntry{ID: id, Node: b.Node, State: StateHeld, Recipients: []string{"x@ext.test"}, HoldReason: "no certificate"}); err != nil {
			t.Fatal(err)
		}
		if err := Delete(ctx, a.Store, a.Spool, a.Node, a.Events, id, "an operator on gw-a"); err != nil {
			t.Fatal(err)
		}
		if restart {
			if err := b.Recover(ctx); err != nil {
				t.Fatal(err)
			}
		} else {
			runQueue(t, b)
		}
		waitFor(t, "the deleted message removed on its node", func() bool {
			_, err := b.Store.QueueEntry(ctx, id)
			_, ferr := os.Stat(b.Spool.path(id))
			return errors.Is(err, store.ErrNotFound) && errors.Is(ferr, os.ErrNotExist)
		})
		if restart {
			runQueue(t, b)
			time.Sleep(100 * time.Millisecond)
		}
		if len(relayB.deliveries()) != 0 {
			t.Fatalf("restart=%v: the deleted message was delivered", restart)
		}
	}
}
