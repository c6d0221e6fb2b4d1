package events

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/store"
)

type memAudit struct{ got []store.DeliveryEvent }

func (m *memAudit) RecordDelivery(_ context.Context, e store.DeliveryEvent) (int64, error) {
	m.got = append(m.got, e)
	return int64(len(m.got)), nil
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
	if a.got[0].Outcome != "delivered" || a.got[0].Recipient != "b@ext.test" || a.got[0].Method != "smime" || !a.got[0].Signed || a.got[0].Rule != "default" {
		t.Fatalf("stored: %+v", a.got[0])
	}
}

// TestRecordLatency: with Received set, the log line carries the latency
// the gateway added and the stored event the receive time, which the
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
	if !a.got[0].Received.Equal(recv) {
		t.Errorf("stored receive time %v, want %v", a.got[0].Received, recv)
	}
	if !a.got[1].Received.IsZero() {
		t.Errorf("zero receive time stored as %v", a.got[1].Received)
	}
}

type countObserver map[string]int

func (c countObserver) ObserveDelivery(d Delivery) { c[d.Outcome]++ }

// TestRecordTLSAndObservers: the hop's TLS is stored as a JSON object and
// every observer sees every delivery, stored or not.
func TestRecordTLSAndObservers(t *testing.T) {
	a := &memAudit{}
	seen := countObserver{}
	r := &Recorder{Store: a, Node: "gw1", Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Observers: []Observer{seen}}
	r.Record(context.Background(), Delivery{QueueID: "q1", Sender: "a@org.test", Recipient: "b@ext.test", Outcome: Delivered,
		TLS: &TLS{Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256", Verified: true}})
	r.Record(context.Background(), Delivery{QueueID: "q1", Sender: "a@org.test", Recipient: "c@ext.test", Outcome: Held})
	if seen[Delivered] != 1 || seen[Held] != 1 {
		t.Fatalf("observer saw %v", seen)
	}
	var tls TLS
	if err := json.Unmarshal([]byte(a.got[0].TLS), &tls); err != nil || tls.Version != "TLS 1.3" || !tls.Verified || a.got[0].Node != "gw1" {
		t.Fatalf("stored %+v (%v)", a.got[0], err)
	}
	if a.got[1].TLS != "" {
		t.Fatalf("no TLS stored as %q", a.got[1].TLS)
	}
}
