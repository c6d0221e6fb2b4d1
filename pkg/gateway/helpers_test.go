package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

func testKeyring(t testing.TB) *secret.Keyring {
	t.Helper()
	k := make([]byte, 32)
	rand.Read(k)
	kr, err := secret.NewKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func testSpool(t testing.TB) *Spool {
	t.Helper()
	sp, err := OpenSpool(filepath.Join(t.TempDir(), "spool"), testKeyring(t))
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

func testStore(t testing.TB, kr *secret.Keyring) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Driver: "sqlite", Path: filepath.Join(t.TempDir(), "db"), Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// recordingRelay answers per recipient from a table and keeps what it got.
type recordingRelay struct {
	mu     sync.Mutex
	got    []Delivery
	answer func(rcpt string) error
}

func (r *recordingRelay) Deliver(_ context.Context, d Delivery) []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	d.Data = bytes.Clone(d.Data)
	r.got = append(r.got, d)
	errs := make([]error, len(d.Rcpts))
	for i, rc := range d.Rcpts {
		if r.answer != nil {
			errs[i] = r.answer(rc)
		}
	}
	return errs
}

func (r *recordingRelay) deliveries() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Delivery(nil), r.got...)
}

// eventLog captures the slog lines of events.
type eventLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (e *eventLog) Write(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.buf.Write(p)
}

func (e *eventLog) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.buf.String()
}

func testQueue(t testing.TB, proc Processor, relay Relay) (*Queue, *eventLog) {
	t.Helper()
	kr := testKeyring(t)
	sp, err := OpenSpool(filepath.Join(t.TempDir(), "spool"), kr)
	if err != nil {
		t.Fatal(err)
	}
	el := &eventLog{}
	log := slog.New(slog.NewJSONHandler(el, nil))
	st := testStore(t, kr)
	q := &Queue{Spool: sp, Store: st, Node: "n1", Hostname: "gw.test", Process: proc, Relay: relay,
		Log: log, Events: &events.Recorder{Store: st, Logger: log}, Poll: 20 * time.Millisecond,
		Backoff: func(int) time.Duration { return 50 * time.Millisecond }}
	return q, el
}

func runQueue(t testing.TB, q *Queue) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readAll(t testing.TB, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
