package events

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/store"
)

type memAudit struct{ got []store.AuditEvent }

func (m *memAudit) Audit(_ context.Context, e store.AuditEvent) error {
	m.got = append(m.got, e)
	return nil
}

func TestRecordOneLinePerRecipient(t *testing.T) {
	var buf bytes.Buffer
	a := &memAudit{}
	r := &Recorder{Store: a, Logger: slog.New(slog.NewJSONHandler(&buf, nil))}
	for _, d := range []Delivery{
		{QueueID: "q1", Sender: "a@org.test", Recipient: "b@ext.test", Outcome: Delivered, Method: "smime", Signed: true, Rule: "default"},
		{QueueID: "q1", Sender: "a@org.test", Recipient: "c@ext.test", Outcome: Held, Reason: "no certificate"},
	} {
		r.Record(context.Background(), d)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || len(a.got) != 2 {
		t.Fatalf("%d lines, %d stored", len(lines), len(a.got))
	}
	var held map[string]any
	json.Unmarshal([]byte(lines[1]), &held)
	if held["level"] != "WARN" || held["outcome"] != "held" || held["reason"] != "no certificate" || held["recipient"] != "c@ext.test" {
		t.Fatalf("held line: %s", lines[1])
	}
	if a.got[0].Action != "delivery.delivered" || a.got[0].Subject != "b@ext.test" || !strings.Contains(a.got[0].Detail, `"method":"smime"`) {
		t.Fatalf("stored: %+v", a.got[0])
	}
}

// TestRecordLatency: with Received set, the log line carries the latency
// the gateway added and the stored detail the receive time, which the
// benchmark script reads back for p50/p99.
func TestRecordLatency(t *testing.T) {
	var buf bytes.Buffer
	a := &memAudit{}
	r := &Recorder{Store: a, Logger: slog.New(slog.NewJSONHandler(&buf, nil))}
	recv := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r.Record(context.Background(), Delivery{Time: recv.Add(1500 * time.Millisecond), Received: recv,
		QueueID: "q1", Sender: "a@org.test", Recipient: "b@ext.test", Outcome: Delivered})
	r.Record(context.Background(), Delivery{QueueID: "q2", Sender: "a@org.test", Recipient: "b@ext.test", Outcome: Delivered})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || len(a.got) != 2 {
		t.Fatalf("%d lines, %d stored", len(lines), len(a.got))
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if first["latency_ms"] != float64(1500) {
		t.Errorf("latency_ms = %v, want 1500: %s", first["latency_ms"], lines[0])
	}
	if _, ok := second["latency_ms"]; ok {
		t.Errorf("latency without a receive time: %s", lines[1])
	}
	var d Delivery
	if err := json.Unmarshal([]byte(a.got[0].Detail), &d); err != nil || !d.Received.Equal(recv) {
		t.Errorf("stored detail %s: received %v, %v", a.got[0].Detail, d.Received, err)
	}
	if strings.Contains(a.got[1].Detail, "received") {
		t.Errorf("zero receive time stored: %s", a.got[1].Detail)
	}
}
