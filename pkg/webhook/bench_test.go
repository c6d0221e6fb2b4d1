package webhook

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/store"
)

// BenchmarkPayloadAndSign is the CPU per event: envelope and one signature.
func BenchmarkPayloadAndSign(b *testing.B) {
	e := store.DeliveryEvent{ID: 1234567, Time: time.Now(), Node: "gw1", QueueID: "Q0123456789", MessageID: "<abc@example.org>",
		Sender: "alice@example.org", Recipient: "bob@partner.example", Outcome: "delivered", Method: "smime", Signed: true,
		Rule: "default", TLS: `{"version":"TLS 1.3","cipher":"TLS_AES_128_GCM_SHA256","verified":true}`}
	keys := [][]byte{make([]byte, 32)}
	for b.Loop() {
		body, err := Payload(e)
		if err != nil {
			b.Fatal(err)
		}
		_ = Sign(keys, MessageID(e), e.Time, body)
	}
}

// BenchmarkSenderThroughput is events per second from the SQLite outbox to
// a loopback receiver that verifies each signature with the reference
// library: one POST per event, in order, cursor advanced after each.
func BenchmarkSenderThroughput(b *testing.B) {
	s := backends()[0].open(b)(b)
	key := randomKey(b, 32)
	rc := newReceiver(b, key)
	if _, err := s.StartWebhookCursor(context.Background(), "siem", "gw1"); err != nil {
		b.Fatal(err)
	}
	gc := store.NewGroupCommit(s)
	defer gc.Close()
	for i := 0; i < b.N; i++ {
		if _, err := gc.RecordDelivery(context.Background(), store.DeliveryEvent{QueueID: "Q", Recipient: "b@ext.test", Outcome: "delivered"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	snd := fast(s, "gw1", nil, Endpoint{Name: "siem", URL: rc.url, Secrets: [][]byte{key}, Timeout: 5 * time.Second})
	snd.Transport = http.DefaultTransport
	start(b, snd)
	waitFor(b, "every event", func() bool { return len(rc.received()) >= b.N })
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
