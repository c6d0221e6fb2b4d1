package metrics

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/store"
)

// BenchmarkObserveDelivery is what one delivery event costs the
// Recorder's goroutine in metrics: counter, latency histogram, TLS.
func BenchmarkObserveDelivery(b *testing.B) {
	m := New(Options{})
	t0 := time.Now()
	d := events.Delivery{Outcome: events.Delivered, Method: "smime", Received: t0, Time: t0.Add(800 * time.Millisecond),
		TLS: &events.TLS{Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256", Verified: true}, Recipient: "b@ext.test"}
	b.ReportAllocs()
	for b.Loop() {
		m.ObserveDelivery(d)
	}
}

// BenchmarkScrape10000Queued is one full /metrics answer (Go runtime and
// process collectors included) from a SQLite store holding 10,000 queue
// entries and a spool directory of 10,000 files.
func BenchmarkScrape10000Queued(b *testing.B) {
	const n = 10000
	st := testStore(b)
	gc := store.NewGroupCommit(st)
	ctx := context.Background()
	states := []string{"queued", "deferred", "held"}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 64 {
				if err := gc.PutQueueEntry(ctx, store.QueueEntry{ID: fmt.Sprintf("q%05d", i), Node: "gw1", Sender: "a@org.test",
					Recipients: []string{"b@ext.test"}, State: states[i%3], Size: 10240}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	gc.Close()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	spool := b.TempDir()
	for i := range n {
		if err := os.WriteFile(filepath.Join(spool, fmt.Sprintf("q%05d.msg", i)), make([]byte, 512), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	m := New(Options{Queue: st, Certs: st, Node: "gw1", SpoolDir: spool, RenewBefore: time.Hour, SyncInterval: time.Minute})
	h := m.Handler()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("scrape: %d", rec.Code)
		}
	}
}

// BenchmarkSpoolSize10000 is the spool part of a scrape: 10,000 files.
func BenchmarkSpoolSize10000(b *testing.B) {
	spool := b.TempDir()
	for i := range 10000 {
		if err := os.WriteFile(filepath.Join(spool, fmt.Sprintf("q%05d.msg", i)), make([]byte, 512), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if files, _, err := dirSize(spool); err != nil || files != 10000 {
			b.Fatal(files, err)
		}
	}
}
