package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

// TestSpoolReseal: after a master key rotation Reseal rewraps every
// spooled message's key under the new key (the old one can then go), the
// content reads back unchanged, and a message delivered (removed) while
// its copy was being written is not brought back by the swap.
func TestSpoolReseal(t *testing.T) {
	oldKey, newKey := make([]byte, 32), make([]byte, 32)
	rand.Read(oldKey)
	rand.Read(newKey)
	before, err := secret.NewKeyring(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sp, err := OpenSpool(dir, before)
	if err != nil {
		t.Fatal(err)
	}
	bodies := map[string][]byte{}
	for i, size := range []int{10, 200 << 10, 1} {
		id := NewID()
		body := bytes.Repeat([]byte{byte('a' + i)}, size)
		if _, err := sp.Write(&Envelope{ID: id, From: "alice@example.org"}, bytes.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		bodies[id] = body
	}
	delivered := NewID()
	if _, err := sp.Write(&Envelope{ID: delivered, From: "alice@example.org"}, strings.NewReader("gone")); err != nil {
		t.Fatal(err)
	}

	rotated, err := secret.NewKeyring(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := OpenSpool(dir, rotated)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := rs.StaleKeys(rotated.NeedsReseal); err != nil || n != 4 {
		t.Fatalf("before Reseal: %d stale (%v), want 4", n, err)
	}
	resealHook = func(id string) {
		if id == delivered {
			if err := rs.Remove(id); err != nil { // the queue delivered it meanwhile
				t.Error(err)
			}
		}
	}
	defer func() { resealHook = nil }()
	resealed, pending, err := rs.Reseal(rotated)
	if err != nil {
		t.Fatal(err)
	}
	if resealed != 3 || pending != 0 {
		t.Fatalf("Reseal: %d resealed, %d pending; want 3, 0", resealed, pending)
	}
	if _, err := os.Stat(rs.path(delivered)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the message delivered during the reseal is back: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "tmp-*")); len(left) != 0 {
		t.Fatalf("temporary copies left: %v", left)
	}
	// Only the new key is needed now.
	after, err := secret.NewKeyring(newKey)
	if err != nil {
		t.Fatal(err)
	}
	as, err := OpenSpool(dir, after)
	if err != nil {
		t.Fatal(err)
	}
	for id, body := range bodies {
		m, err := as.Open(id)
		if err != nil {
			t.Fatalf("message %s under the new key alone: %v", id, err)
		}
		got, err := io.ReadAll(m)
		m.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("message %s after reseal: %d bytes (%v), want %d", id, len(got), err, len(body))
		}
	}
	if n, err := as.StaleKeys(after.NeedsReseal); err != nil || n != 0 {
		t.Fatalf("after Reseal: %d stale (%v)", n, err)
	}
	// A second run finds nothing to do.
	if resealed, pending, err := rs.Reseal(rotated); err != nil || resealed != 0 || pending != 0 {
		t.Fatalf("second Reseal: %d, %d, %v", resealed, pending, err)
	}
}

// TestResealHeaderInPostgres: on store.driver = "postgres" the messages
// live in the database; rotation swaps only each message's header there
// (the content is not sent over the wire), only while the header is the
// one read, and the message then opens with the new key alone.
func TestResealHeaderInPostgres(t *testing.T) {
	pg := testpeer.StartPostgres(t)
	oldKey, newKey := make([]byte, 32), make([]byte, 32)
	rand.Read(oldKey)
	rand.Read(newKey)
	before, _ := secret.NewKeyring(oldKey)
	rotated, _ := secret.NewKeyring(newKey, oldKey)
	after, _ := secret.NewKeyring(newKey)
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{Driver: "postgres", DSN: pg.NewDatabase(t), Keyring: rotated})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sp, err := OpenSpool(t.TempDir(), before)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("line of a long queued message\r\n", 5000)
	id := NewID()
	sealed, _, err := sp.Seal(&Envelope{ID: id, From: "a@example.org", Recipients: []Recipient{{Addr: "b@partner.test"}}}, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutQueueMessage(ctx, store.QueueEntry{ID: id, Node: "gw1", State: "queued"}, sealed); err != nil {
		t.Fatal(err)
	}
	var head []byte
	if err := st.QueueMessageHeads(ctx, func(got string, h []byte) error { head = h; return nil }); err != nil || head == nil {
		t.Fatalf("heads: %v", err)
	}
	oldLen, header, stale, err := ResealHeader(rotated, id, head)
	if err != nil || !stale {
		t.Fatalf("ResealHeader: stale %v, %v", stale, err)
	}
	// Someone else changed the header first (another rotate): no swap.
	if ok, err := st.ReplaceQueueMessageHeader(ctx, id, append([]byte("X"), head[1:oldLen]...), header); err != nil || ok {
		t.Fatalf("a header that is no longer there was replaced: %v %v", ok, err)
	}
	if ok, err := st.ReplaceQueueMessageHeader(ctx, id, head[:oldLen], header); err != nil || !ok {
		t.Fatalf("ReplaceQueueMessageHeader: %v %v", ok, err)
	}
	got, err := st.QueueMessage(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if stale, err := StaleSealed(got, after.NeedsReseal); err != nil || stale {
		t.Fatalf("after the swap: stale %v, %v", stale, err)
	}
	as, _ := OpenSpool(t.TempDir(), after)
	m, err := as.OpenSealed(id, got)
	if err != nil {
		t.Fatalf("the resealed message under the new key alone: %v", err)
	}
	read, err := io.ReadAll(m)
	m.Close()
	if err != nil || string(read) != body {
		t.Fatalf("content after reseal: %d bytes, %v", len(read), err)
	}
	// A delivered (deleted) message is not brought back.
	if err := st.DeleteQueueEntry(ctx, id); err != nil {
		t.Fatal(err)
	}
	if ok, err := st.ReplaceQueueMessageHeader(ctx, id, header, header); err != nil || ok {
		t.Fatalf("a deleted message was resealed: %v %v", ok, err)
	}
}
