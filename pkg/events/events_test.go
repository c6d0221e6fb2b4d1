package events

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

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
