package gateway

import (
	"context"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/store"
)

// warningPDF seals like fakePDF and reports what the PDF could not draw.
type warningPDF struct{ warnings []string }

func (p warningPDF) SealPDF(_ context.Context, _, rcpt, _ string, _ []byte) (PDFResult, error) {
	return PDFResult{Carrier: []byte("Subject: pdf for " + rcpt + "\r\n\r\nPDF"), Warnings: p.warnings}, nil
}

// TestPDFWarningsReachTheDeliveredEvent: a PDF drawn with replacement
// marks is delivered all the same, and its delivered event says which
// characters (as code points) the recipient sees as marks; a PDF without
// warnings has an empty reason.
func TestPDFWarningsReachTheDeliveredEvent(t *testing.T) {
	must := Decision{Rule: "default", Action: ActionDeliver, Method: MethodPDF, MustEncrypt: true}
	tests := []struct {
		name     string
		warnings []string
		want     string
	}{
		{name: "missing characters", warnings: []string{"no font has U+1F600, U+E000: drawn as \uFFFD"}, want: "no font has U+1F600, U+E000: drawn as \uFFFD"},
		{name: "two warnings joined", warnings: []string{"a", "b"}, want: "a; b"},
		{name: "none", warnings: nil, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &Pipeline{Hostname: "gw.test", Decider: fakeDecider{"*": must}, Finder: fakeFinder{}, Signer: &fakeSigner{}, PDF: warningPDF{tc.warnings}}
			msg := []byte("From: alice@org.test\r\nTo: p@ext.test\r\nSubject: quarterly\r\n\r\nSECRET BODY\r\n")
			plan, err := p.Process(context.Background(), &Envelope{}, []string{"p@ext.test"}, msg)
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.Parcels) != 1 || plan.Parcels[0].Reason != tc.want {
				t.Fatalf("parcels %+v, want one with note %q", plan.Parcels, tc.want)
			}
			q, _ := testQueue(t, planFunc(func(rcpts []string, msg []byte) (*Plan, error) {
				return &Plan{Held: map[string]string{}, Decided: map[string]Verdict{}, Parcels: []Parcel{{Rcpts: rcpts, Data: msg, Method: "pdf", Rule: "default", Reason: plan.Parcels[0].Reason}}}, nil
			}), &recordingRelay{answer: func(string) error { return nil }})
			runQueue(t, q)
			id := accept(t, q, "p@ext.test")
			waitFor(t, "the copy is delivered", func() bool {
				return len(storedEvents(t, q, store.EventFilter{QueueID: id, Outcomes: []string{events.Delivered}})) == 1
			})
			ev := storedEvents(t, q, store.EventFilter{QueueID: id, Outcomes: []string{events.Delivered}})[0]
			if ev.Reason != tc.want {
				t.Fatalf("delivered reason %q, want %q", ev.Reason, tc.want)
			}
			if strings.Contains(ev.Reason, "SECRET") || strings.Contains(ev.Reason, "quarterly") {
				t.Fatalf("reason carries message content: %q", ev.Reason)
			}
		})
	}
}
