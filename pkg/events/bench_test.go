package events_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/store"
)

// BenchmarkEventsPage1000 reads one page of 1000 events (of 3000 stored in
// SQLite) through the handler: the query, the rows and the JSON.
func BenchmarkEventsPage1000(b *testing.B) {
	st := openStore(b)
	gc := store.NewGroupCommit(st)
	rec := &events.Recorder{Store: gc, Node: "gw1.example.org", Logger: slog.New(slog.DiscardHandler)}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 375 {
				rec.Record(context.Background(), events.Delivery{QueueID: fmt.Sprintf("19a3f%04x%02x", i, w),
					MessageID: fmt.Sprintf("<%d.%d@org.example>", w, i), Sender: "alice@org.example",
					Recipient: fmt.Sprintf("bob%d@partner.example", i), Outcome: events.Delivered, Method: "smime",
					Signed: true, Rule: "default", Attempt: 1,
					TLS: &events.TLS{Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256", Verified: true}})
			}
		}()
	}
	wg.Wait()
	gc.Close()
	h := &events.API{Events: st}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/events?after=1000&limit=1000", nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || rec.Body.Len() < 1000*300 {
			b.Fatalf("%d, %d bytes", rec.Code, rec.Body.Len())
		}
	}
}
