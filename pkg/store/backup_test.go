package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
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
		// The queue: an entry leased by a node that will be gone and due
		// in a day, a message kept in its row, and one the caller leaves
		// out (its spool file vanished: delivered during the backup).
		later := time.Now().Add(24 * time.Hour)
		if err := src.PutQueueEntry(ctx, QueueEntry{ID: "q2", Node: "old-node", State: "deferred", Attempts: 3,
			NextAttempt: later, LeaseNode: "old-node", LeaseUntil: later}); err != nil {
			t.Fatal(err)
		}
		sealed := []byte("SGSPOOL1 sealed bytes \x00\xff stand-in")
		if err := src.PutQueueMessage(ctx, QueueEntry{ID: "q4", Node: "old-node", State: "queued", NextAttempt: time.Now()}, sealed); err != nil {
			t.Fatal(err)
		}
		if err := src.PutQueueEntry(ctx, QueueEntry{ID: "q5", Node: "old-node", State: "queued"}); err != nil {
			t.Fatal(err)
		}
		dumps := map[string]*bytes.Buffer{}
		var seen []QueueDumpRow
		if _, err := src.Dump(ctx, func(table string) (io.Writer, error) {
			dumps[table] = &bytes.Buffer{}
			return dumps[table], nil
		}, DumpOptions{KeepQueue: func(r QueueDumpRow) (bool, error) {
			seen = append(seen, r)
			return r.ID != "q5", nil
		}}); err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(seen, func(a, b QueueDumpRow) int { return strings.Compare(a.ID, b.ID) })
		if want := []QueueDumpRow{{"q2", "old-node", LaneOutbound, "deferred", false}, {"q4", "old-node", LaneOutbound, "queued", true}, {"q5", "old-node", LaneOutbound, "queued", false}}; !slices.Equal(seen, want) {
			t.Fatalf("KeepQueue saw %+v, want %+v", seen, want)
		}
		if _, ok := dumps["schema_migrations"]; ok {
			t.Fatal("schema_migrations was dumped")
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
		// The queue: q2 unleased and due now, q4's sealed message as it
		// was, q5 left out.
		e, err := dst.QueueEntry(ctx, "q2")
		if err != nil || e.LeaseNode != "" || !e.LeaseUntil.IsZero() || e.NextAttempt.After(time.Now()) || e.Attempts != 3 || e.Node != "old-node" {
			t.Fatalf("restored q2 %+v, %v; want unleased, due now, 3 attempts", e, err)
		}
		if m, err := dst.QueueMessage(ctx, "q4"); err != nil || !bytes.Equal(m, sealed) {
			t.Fatalf("restored q4 message %q, %v", m, err)
		}
		if _, err := dst.QueueEntry(ctx, "q5"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("q5, left out of the dump, after restore: %v", err)
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
		{"the schema bookkeeping", map[string]string{"schema_migrations": `{"version":1}` + "\n"}, "does not know"},
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
