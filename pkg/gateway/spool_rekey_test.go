package gateway

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/pkg/secret"
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
