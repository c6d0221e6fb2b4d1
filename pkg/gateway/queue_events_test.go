package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/store"
)

func storedEvents(t *testing.T, q *Queue, f store.EventFilter) []store.DeliveryEvent {
	t.Helper()
	evs, err := q.Store.(*store.Store).DeliveryEvents(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// summary renders events as "recipient outcome method rule attempt" lines,
// sorted, for comparison.
func summary(evs []store.DeliveryEvent) string {
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("%s %s %s %s %d", e.Recipient, e.Outcome, e.Method, e.Rule, e.Attempt))
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// TestQueueEventsPerOutcome: one accepted event per recipient on the first
// attempt only, and every later outcome (delivered, deferred, held,
// bounced) with the rule and method the policy chose, the attempt and the
// Message-ID.
func TestQueueEventsPerOutcome(t *testing.T) {
	var tries atomic.Int32
	var released atomic.Bool
	relay := &recordingRelay{answer: func(r string) error {
		switch r {
		case "later@ext.test":
			if tries.Add(1) == 1 {
				return errors.New("connection refused")
			}
		case "gone@ext.test":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}}
	q, _ := testQueue(t, planFunc(func(rcpts []string, msg []byte) (*Plan, error) {
		p := &Plan{MessageID: "<m1@org.test>", Held: map[string]string{}, Decided: map[string]Verdict{}}
		var send []string
		for _, r := range rcpts {
			switch {
			case r == "conf@ext.test" && !released.Load():
				p.Held[r] = "no certificate for S/MIME"
				p.Decided[r] = Verdict{Rule: "confidential", Method: "smime"}
			default:
				send = append(send, r)
				p.Decided[r] = Verdict{Rule: "default", Method: "pdf"}
			}
		}
		if len(send) > 0 {
			p.Parcels = []Parcel{{Rcpts: send, Data: msg, Method: "pdf", Signed: true, Rule: "default"}}
		}
		return p, nil
	}), relay)
	runQueue(t, q)
	id := accept(t, q, "ok@ext.test", "later@ext.test", "gone@ext.test", "conf@ext.test")
	waitFor(t, "later delivered on the second attempt", func() bool {
		return len(storedEvents(t, q, store.EventFilter{Recipient: "later@ext.test", Outcomes: []string{events.Delivered}})) == 1
	})
	evs := storedEvents(t, q, store.EventFilter{QueueID: id})
	want := strings.Join([]string{
		"conf@ext.test accepted   0",
		"conf@ext.test held smime confidential 1",
		"gone@ext.test accepted   0",
		"gone@ext.test bounced pdf default 1",
		"later@ext.test accepted   0",
		"later@ext.test deferred pdf default 1",
		"later@ext.test delivered pdf default 2",
		"ok@ext.test accepted   0",
		"ok@ext.test delivered pdf default 1",
	}, "\n")
	if got := summary(evs); got != want {
		t.Fatalf("events:\n%s\nwant\n%s", got, want)
	}
	for _, e := range evs {
		if e.MessageID != "<m1@org.test>" || e.Sender != "a@org.test" {
			t.Fatalf("event without the message's ids: %+v", e)
		}
		switch e.Outcome {
		case events.Bounced:
			if !strings.Contains(e.Reason, "550 5.1.1 no such user") {
				t.Fatalf("bounce reason %q", e.Reason)
			}
		case events.Held, events.Deferred:
			if e.Reason == "" {
				t.Fatalf("%s without a reason", e.Outcome)
			}
		}
		// The message's subject and body never get into an event.
		for _, secret := range []string{"quarterly", "SECRET BODY"} {
			if strings.Contains(fmt.Sprintf("%+v", e), secret) {
				t.Fatalf("event carries %q: %+v", secret, e)
			}
		}
	}
	// Accepted precedes every other outcome of the recipient (commit
	// order, which is id order).
	first := map[string]string{}
	for _, e := range evs {
		if _, ok := first[e.Recipient]; !ok {
			first[e.Recipient] = e.Outcome
		}
	}
	for r, o := range first {
		if o != events.Accepted {
			t.Errorf("%s: first event %s, want accepted", r, o)
		}
	}
	// The bounce (a DSN to the sender) is a message of its own: accepted
	// and delivered under its own queue id.
	dsn := storedEvents(t, q, store.EventFilter{Recipient: "a@org.test"})
	if summary(dsn) != "a@org.test accepted   0\na@org.test delivered plain  1" {
		t.Fatalf("DSN events:\n%s", summary(dsn))
	}

	// The held copy, released by an operator, is delivered without a
	// second acceptance.
	held, err := q.Store.QueueEntries(context.Background(), store.QueueFilter{State: StateHeld})
	if err != nil || len(held) != 1 {
		t.Fatalf("held entries %v, %v", held, err)
	}
	released.Store(true)
	if _, err := Release(context.Background(), q.Store, q.Spool, q.Events, held[0].ID, "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the released copy leaves", func() bool {
		return len(storedEvents(t, q, store.EventFilter{Recipient: "conf@ext.test", Outcomes: []string{events.Delivered}})) == 1
	})
	conf := storedEvents(t, q, store.EventFilter{Recipient: "conf@ext.test"})
	if got := summary(conf); got != "conf@ext.test accepted   0\nconf@ext.test delivered pdf default 2\nconf@ext.test held smime confidential 1\nconf@ext.test released   1" {
		t.Fatalf("conf's events:\n%s", got)
	}
}

// TestQueueDeleteRecordsEvents: deleting a held message records one
// deleted event per recipient, with its Message-ID read from the spool.
func TestQueueDeleteRecordsEvents(t *testing.T) {
	q, _ := testQueue(t, planFunc(func(rcpts []string, _ []byte) (*Plan, error) {
		p := &Plan{MessageID: "<m1@org.test>", Held: map[string]string{}}
		for _, r := range rcpts {
			p.Held[r] = "policy rule r holds this message"
		}
		return p, nil
	}), &recordingRelay{})
	runQueue(t, q)
	id := accept(t, q, "b@ext.test", "c@ext.test")
	waitFor(t, "held", func() bool {
		e, err := q.Store.QueueEntry(context.Background(), id)
		return err == nil && e.State == StateHeld
	})
	if err := Delete(context.Background(), q.Store, q.Spool, q.Node, q.Events, id, "an operator"); err != nil {
		t.Fatal(err)
	}
	if !queueEmpty(q)() {
		t.Fatal("the message is still queued")
	}
	del := storedEvents(t, q, store.EventFilter{QueueID: id, Outcomes: []string{events.Deleted}})
	if len(del) != 2 {
		t.Fatalf("%d deleted events, want 2", len(del))
	}
	for _, e := range del {
		if e.MessageID != "<m1@org.test>" || !strings.Contains(e.Reason, "deleted by an operator") || !strings.Contains(e.Reason, "holds this message") {
			t.Fatalf("deleted event %+v", e)
		}
	}
	if err := Delete(context.Background(), q.Store, q.Spool, q.Node, q.Events, id, "an operator"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
}
