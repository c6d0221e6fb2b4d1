package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestSpoolRoundTrip(t *testing.T) {
	sp := testSpool(t)
	for _, n := range []int{0, 1, spoolChunk - 1, spoolChunk, spoolChunk + 1, 3*spoolChunk + 17} {
		msg := bytes.Repeat([]byte("x"), n)
		env := &Envelope{ID: NewID(), From: "a@x.test", Recipients: []Recipient{{Addr: "b@y.test", Notify: []string{"FAILURE"}}}}
		size, err := sp.Write(env, bytes.NewReader(msg))
		if err != nil || size != int64(n) {
			t.Fatalf("n=%d: size %d, err %v", n, size, err)
		}
		raw, _ := os.ReadFile(sp.path(env.ID))
		if n > 16 && bytes.Contains(raw, msg[:16]) || bytes.Contains(raw, []byte("b@y.test")) {
			t.Fatalf("n=%d: plaintext visible in the spool file", n)
		}
		m, err := sp.Open(env.ID)
		if err != nil {
			t.Fatal(err)
		}
		got := readAll(t, m)
		m.Close()
		if !bytes.Equal(got, msg) || m.Envelope.Recipients[0].Addr != "b@y.test" || m.Envelope.Recipients[0].Notify[0] != "FAILURE" {
			t.Fatalf("n=%d: round trip differs (%d bytes, env %+v)", n, len(got), m.Envelope)
		}
	}
}

func TestSpoolDetectsDamage(t *testing.T) {
	sp := testSpool(t)
	env := &Envelope{ID: NewID(), From: "a@x.test", Recipients: []Recipient{{Addr: "b@y.test"}}}
	if _, err := sp.Write(env, strings.NewReader(strings.Repeat("line\r\n", 30000))); err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(sp.path(env.ID))
	cases := map[string][]byte{
		"flipped bit":    func() []byte { b := bytes.Clone(orig); b[len(b)/2] ^= 1; return b }(),
		"truncated":      orig[:len(orig)-100],
		"last chunk cut": orig[:len(orig)-(len(orig)-len(spoolMagic))/3],
	}
	for name, data := range cases {
		os.WriteFile(sp.path(env.ID), data, 0o600)
		m, err := sp.Open(env.ID)
		if err == nil {
			_, err = io.ReadAll(m)
			m.Close()
		}
		if !errors.Is(err, ErrSpoolCorrupt) {
			t.Errorf("%s: err = %v, want ErrSpoolCorrupt", name, err)
		}
	}
	// Another keyring cannot open it.
	os.WriteFile(sp.path(env.ID), orig, 0o600)
	other := &Spool{dir: sp.dir, kr: testKeyring(t)}
	if _, err := other.Open(env.ID); !errors.Is(err, ErrSpoolCorrupt) {
		t.Errorf("foreign keyring: err = %v", err)
	}
}

func TestSpoolWriteFailureLeavesNothing(t *testing.T) {
	sp := testSpool(t)
	env := &Envelope{ID: NewID(), Recipients: []Recipient{{Addr: "b@y.test"}}}
	_, err := sp.Write(env, newDataValidator(strings.NewReader("Subject: x\r\n\r\nbad\nline\r\n"), "gw"))
	if err != errBareLF {
		t.Fatalf("err = %v, want the bare-LF error", err)
	}
	ids, _ := sp.IDs()
	ents, _ := os.ReadDir(sp.dir)
	if len(ids) != 0 || len(ents) != 0 {
		t.Fatalf("left behind: %v %v", ids, ents)
	}
}

// TestSpoolConcurrentWrites: sessions finishing together share directory
// fsyncs; every message is complete and readable.
func TestSpoolConcurrentWrites(t *testing.T) {
	sp := testSpool(t)
	const sessions, each = 20, 5
	ids := make(chan string, sessions*each)
	errs := make(chan error, sessions*each)
	var wg sync.WaitGroup
	for s := 0; s < sessions; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				env := &Envelope{ID: NewID(), From: "a@x.test", Recipients: []Recipient{{Addr: "b@y.test"}}}
				if _, err := sp.Write(env, strings.NewReader(fmt.Sprintf("Subject: %d-%d\r\n\r\nbody\r\n", s, i))); err != nil {
					errs <- err
					return
				}
				ids <- env.ID
			}
		}(s)
	}
	wg.Wait()
	close(ids)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n := 0
	for id := range ids {
		m, err := sp.Open(id)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, m); !bytes.HasPrefix(got, []byte("Subject: ")) {
			t.Fatalf("%s: %q", id, got)
		}
		m.Close()
		n++
	}
	if n != sessions*each {
		t.Fatalf("%d messages, want %d", n, sessions*each)
	}
}

// TestDirSyncerWaitsForAnFsyncThatBeganAfterTheCall: a caller that arrives
// while an fsync is running is not answered by that fsync (it may have
// begun before the caller's change) but by the next one; callers that
// arrive together share it.
func TestDirSyncerWaitsForAnFsyncThatBeganAfterTheCall(t *testing.T) {
	dir := t.TempDir()
	var ds dirSyncer
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	ds.beforeFsync = func() { started <- struct{}{}; <-release }

	first := make(chan error, 1)
	go func() { first <- ds.sync(dir) }()
	<-started // the first fsync is running
	later := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() { later <- ds.sync(dir) }()
	}
	waitFor(t, "three callers waiting", func() bool {
		ds.mu.Lock()
		defer ds.mu.Unlock()
		return ds.pending != nil && ds.waiting == 3
	})
	release <- struct{}{} // the first fsync ends
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-later:
		t.Fatalf("a later caller was answered by the fsync that began before it (err %v)", err)
	case <-started: // the second fsync began: one for all three
	}
	release <- struct{}{}
	for i := 0; i < 3; i++ {
		if err := <-later; err != nil {
			t.Fatal(err)
		}
	}
	if len(started) != 0 {
		t.Fatalf("%d more fsyncs; the three callers should have shared one", len(started))
	}

	// An fsync error reaches the caller.
	var missing dirSyncer
	if err := missing.sync(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("fsync of a missing directory succeeded")
	}
}
