package gateway

import (
	"context"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/policy"
	"github.com/sealgate/sealgate/pkg/store"
)

// eachRelay reports a hop per recipient, as direct delivery does when one
// parcel goes to several domains.
type eachRelay struct {
	recordingRelay
}

func (r *eachRelay) DeliverEach(ctx context.Context, d Delivery) ([]error, []*events.TLS) {
	errs := r.Deliver(ctx, d)
	hops := make([]*events.TLS, len(d.Rcpts))
	for i, rc := range d.Rcpts {
		hops[i] = &events.TLS{Host: "mx." + rc[strings.IndexByte(rc, '@')+1:], Version: "TLS 1.3", Verified: true, VerifiedBy: "dane"}
	}
	return errs, hops
}

// The queue hands the parcel's TLS mode to the relay and records each
// recipient's own hop when the relay reports hops per recipient.
func TestQueueRecordsHopPerRecipient(t *testing.T) {
	relay := &eachRelay{}
	q, _ := testQueue(t, planFunc(func(rcpts []string, msg []byte) (*Plan, error) {
		return &Plan{MessageID: "<m@org.test>", Parcels: []Parcel{{Rcpts: rcpts, Data: msg, Method: "smime", Rule: "r", TLS: policy.TLSDANE, RequireTLS: true}}}, nil
	}), relay)
	runQueue(t, q)
	id := accept(t, q, "b@a.test", "c@b.test")
	waitFor(t, "both delivered", func() bool {
		return len(storedEvents(t, q, store.EventFilter{QueueID: id, Outcomes: []string{events.Delivered}})) == 2
	})
	for _, e := range storedEvents(t, q, store.EventFilter{QueueID: id, Outcomes: []string{events.Delivered}}) {
		want := `"host":"mx.` + e.Recipient[strings.IndexByte(e.Recipient, '@')+1:] + `"`
		if !strings.Contains(e.TLS, want) || !strings.Contains(e.TLS, `"verified_by":"dane"`) {
			t.Errorf("%s: tls %s, want %s", e.Recipient, e.TLS, want)
		}
	}
	if ds := relay.deliveries(); len(ds) != 1 || ds[0].TLS != policy.TLSDANE {
		t.Fatalf("deliveries %+v, want one with tls = dane", ds)
	}
}
