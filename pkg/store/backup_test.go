package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestDumpRestoreRoundTrip: a dump of one store restores into a fresh
// one on every backend with the same rows, secrets opening with the same
// keyring; a second restore is refused.
func TestDumpRestoreRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		kr := testKeyring(t)
		src := b.open(t, kr)
		if err := src.SetPDFPassword(ctx, "p@partner.example", []byte("Geheim-Passwort-1"), "preset"); err != nil {
			t.Fatal(err)
		}
		if err := src.PutKey(ctx, "user/a@example.org/1", []byte{0x30, 0x03, 0x02, 0x01, 0x01}); err != nil {
			t.Fatal(err)
		}
		if _, err := src.RecordDelivery(ctx, DeliveryEvent{QueueID: "q1", Recipient: "p@partner.example", Outcome: "delivered"}); err != nil {
			t.Fatal(err)
		}
		if err := src.PutQueueEntry(ctx, QueueEntry{ID: "q2", State: "queued"}); err != nil {
			t.Fatal(err)
		}
		dumps := map[string]*bytes.Buffer{}
		if _, err := src.Dump(ctx, func(table string) (io.Writer, error) {
			dumps[table] = &bytes.Buffer{}
			return dumps[table], nil
		}); err != nil {
			t.Fatal(err)
		}
		if _, ok := dumps["queue"]; ok {
			t.Fatal("the queue was dumped (its messages are not in the backup)")
		}
		if bytes.Contains(dumps["pdf_passwords"].Bytes(), []byte("Geheim-Passwort-1")) {
			t.Fatal("a PDF password in clear text in the dump")
		}
		readers := func() map[string]io.Reader {
			m := map[string]io.Reader{}
			for k, v := range dumps {
				m[k] = bytes.NewReader(v.Bytes())
			}
			return m
		}
		dst := b.open(t, kr)
		if err := dst.Restore(ctx, readers()); err != nil {
			t.Fatal(err)
		}
		if pw, _, err := dst.PDFPassword(ctx, "p@partner.example"); err != nil || string(pw) != "Geheim-Passwort-1" {
			t.Fatalf("restored password %q, %v", pw, err)
		}
		if k, err := dst.Key(ctx, "user/a@example.org/1"); err != nil || len(k) != 5 {
			t.Fatalf("restored key %x, %v", k, err)
		}
		// The id sequence continues after the restored events.
		id, err := dst.RecordDelivery(ctx, DeliveryEvent{QueueID: "q3", Recipient: "p@partner.example", Outcome: "held"})
		if err != nil || id < 2 {
			t.Fatalf("next event id %d, %v", id, err)
		}
		if err := dst.Restore(ctx, readers()); !errors.Is(err, ErrNotEmpty) {
			t.Fatalf("restore into a store with data: %v", err)
		}
	})
}

// TestRestoreRefusesCraftedRows: a backup file is outside input and its
// checksums prove nothing against someone who rewrote the manifest too;
// column and table names from it never reach SQL unchecked.
func TestRestoreRefusesCraftedRows(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		tables map[string]string
		want   string
	}{
		{"SQL in a column name", map[string]string{"api_tokens": `{"name":"x","hash":"h","scopes":"s","created_at":1,"revoked_at":null,"last_used_at) VALUES ('a','b','c',1,NULL,NULL); DROP TABLE certificates; --":1}` + "\n"}, "column name"},
		{"unknown table", map[string]string{"certificates; DROP TABLE audit_log": "{}\n"}, "does not know"},
		{"the queue", map[string]string{"queue": "{}\n"}, "does not know"},
		{"a value that is an object", map[string]string{"api_tokens": `{"name":{"sql":"x"}}` + "\n"}, "b64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sqliteBackend().open(t, testKeyring(t))
			m := map[string]io.Reader{}
			for k, v := range tc.tables {
				m[k] = strings.NewReader(v)
			}
			err := s.Restore(ctx, m)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			if _, err := s.Certificates(ctx, ""); err != nil {
				t.Fatalf("the certificates table is gone: %v", err)
			}
		})
	}
}
