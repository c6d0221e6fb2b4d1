package gateway

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/pkg/store"
)

// A PDF password notice follows its carrier only once the next hop took
// the carrier (issue #12 item 2: the notice went out, password inside,
// for a message that was then held); only then is its password marked
// announced.
func TestNoticeFollowsOnlyADeliveredCarrier(t *testing.T) {
	for _, tc := range []struct {
		name       string
		answer     error
		wantNotice bool
	}{
		{"carrier accepted", nil, true},
		{"carrier deferred", errors.New("connection refused"), false},
		{"carrier refused", &smtp.SMTPError{Code: 550, Message: "no such user"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var announced atomic.Int32
			proc := planFunc(func(rcpts []string, msg []byte) (*Plan, error) {
				if bytes.Contains(msg, []byte("PASSWORD NOTICE")) {
					return &Plan{Parcels: []Parcel{{Rcpts: rcpts, Data: msg, Method: "plain"}}}, nil
				}
				return &Plan{Parcels: []Parcel{{Rcpts: rcpts, Data: []byte("Subject: carrier\r\n\r\nPDF\r\n"), Method: "pdf",
					After: []ExtraMessage{{To: []string{"alice@org.test"}, Data: []byte("Subject: PASSWORD NOTICE\r\n\r\nsecret\r\n"),
						Queued: func(context.Context) error { announced.Add(1); return nil }}}}}}, nil
			})
			relay := &recordingRelay{answer: func(rcpt string) error {
				if rcpt == "p@ext.test" {
					return tc.answer
				}
				return nil
			}}
			q, _ := testQueue(t, proc, relay)
			runQueue(t, q)
			if err := q.Accept(context.Background(), &Envelope{From: "alice@org.test", Recipients: []Recipient{{Addr: "p@ext.test"}}},
				strings.NewReader("From: alice@org.test\r\nSubject: s\r\n\r\nbody\r\n")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the carrier's delivery attempt", func() bool { return len(relay.deliveries()) >= 1 })
			if tc.wantNotice {
				waitFor(t, "the notice", func() bool { return len(relay.deliveries()) == 2 })
			}
			// The attempt is over once the entry left the fresh state;
			// a notice would have been queued in the same attempt.
			waitFor(t, "the attempt to finish", func() bool {
				es, _ := q.Store.QueueEntries(context.Background(), store.QueueFilter{})
				for _, e := range es {
					if e.Attempts > 0 {
						return true
					}
				}
				return tc.answer == nil || len(es) == 0
			})
			notices := 0
			for _, d := range relay.deliveries() {
				if bytes.Contains(d.Data, []byte("PASSWORD NOTICE")) {
					notices++
				}
			}
			if (notices == 1) != tc.wantNotice || int(announced.Load()) != notices {
				t.Fatalf("notices sent %d, announced %d; want notice %v", notices, announced.Load(), tc.wantNotice)
			}
		})
	}
}
