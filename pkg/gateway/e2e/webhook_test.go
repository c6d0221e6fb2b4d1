package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// hookRequest is one POST the receiver took: its webhook-id and the
// event's id, outcome and recipient.
type hookRequest struct {
	webhookID string
	id        int64
	outcome   string
	recipient string
}

// TestWebhookSurvivesEndpointDown is issue #14's "webhooks survive the
// endpoint being down for a minute", against the real binary: the
// receiver is not listening for the first 30 s and answers 503 for the
// next 30 s, while mail flows and serve is restarted; then every event
// arrives, in id order, each signed (checked with the reference Standard
// Webhooks library), repeats only with their first webhook-id.
func TestWebhookSurvivesEndpointDown(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("takes over a minute")
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	secretLine := "whsec_" + base64.StdEncoding.EncodeToString(key)
	verifier, err := standardwebhooks.NewWebhook(secretLine)
	if err != nil {
		t.Fatal(err)
	}
	// A free loopback port, closed again: the endpoint is "not listening".
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hookAddr := probe.Addr().String()
	probe.Close()

	g := newGateway(t, fmt.Sprintf(`
[[webhooks]]
name = "siem"
url = "http://%s/hook"
secret_file = "webhook.secret"
events = ["delivered", "held", "bounced"]
timeout = "5s"
max_backoff = "3s"
`, hookAddr))
	if err := os.WriteFile(filepath.Join(g.dir, "webhook.secret"), []byte(secretLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	downSince := time.Now()
	g.start()

	var (
		mu      sync.Mutex
		got     []hookRequest
		badSigs int
		refuse  = true
	)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			w.WriteHeader(400)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if err := verifier.Verify(body, r.Header); err != nil {
			badSigs++
			w.WriteHeader(401)
			return
		}
		if refuse {
			w.WriteHeader(503)
			return
		}
		var env struct {
			Type string
			Data struct {
				ID        int64
				Outcome   string
				Recipient string
			}
		}
		if err := json.Unmarshal(body, &env); err != nil || env.Type != "delivery."+env.Data.Outcome {
			w.WriteHeader(400)
			return
		}
		got = append(got, hookRequest{r.Header.Get("webhook-id"), env.Data.ID, env.Data.Outcome, env.Data.Recipient})
		w.WriteHeader(200)
	})

	sendBatch := func(from, n int) []string {
		c, err := smtp.Dial(g.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var rcpts []string
		for i := from; i < from+n; i++ {
			rcpt := fmt.Sprintf("user%d@example.org", i)
			if _, err := send(c, "alice@example.org", rcpt, fmt.Sprintf("From: alice@example.org\r\nTo: %s\r\nSubject: hook %d\r\n\r\nbody\r\n", rcpt, i)); err != nil {
				t.Fatal(err)
			}
			rcpts = append(rcpts, rcpt)
		}
		return rcpts
	}
	rcpts := sendBatch(0, 10)
	g.waitOutbox(rcpts...)
	// serve restarts while the endpoint is down: the cursor is in the store.
	g.cmd.Process.Signal(syscall.SIGTERM)
	if err := g.cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v", err)
	}
	g.start()
	rcpts = append(rcpts, sendBatch(10, 10)...)
	g.waitOutbox(rcpts...)

	time.Sleep(time.Until(downSince.Add(30 * time.Second)))
	ln, err := net.Listen("tcp", hookAddr)
	if err != nil {
		t.Fatalf("listening on the endpoint's address again: %v", err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	rcpts = append(rcpts, sendBatch(20, 5)...)
	time.Sleep(time.Until(downSince.Add(60 * time.Second)))
	mu.Lock()
	refuse = false
	mu.Unlock()

	firsts := func() []hookRequest {
		mu.Lock()
		defer mu.Unlock()
		seen := map[int64]string{}
		var out []hookRequest
		for _, h := range got {
			if id, ok := seen[h.id]; ok {
				if id != h.webhookID {
					t.Fatalf("event %d again with webhook-id %q, first %q", h.id, h.webhookID, id)
				}
				continue
			}
			seen[h.id] = h.webhookID
			out = append(out, h)
		}
		return out
	}
	waitUntil(t, 60*time.Second, func() bool { return len(firsts()) >= len(rcpts) }, func() string {
		return fmt.Sprintf("%d of %d events arrived; log:\n%s", len(firsts()), len(rcpts), tail(g.logText(), 30))
	})
	arrived := firsts()
	for i := 1; i < len(arrived); i++ {
		if arrived[i].id <= arrived[i-1].id {
			t.Fatalf("event %d arrived after %d", arrived[i].id, arrived[i-1].id)
		}
	}
	delivered := map[string]bool{}
	for _, h := range arrived {
		if h.outcome == "delivered" {
			delivered[h.recipient] = true
		}
	}
	for _, r := range rcpts {
		if !delivered[r] {
			t.Errorf("no delivered event for %s", r)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if badSigs != 0 {
		t.Fatalf("%d requests failed the reference signature check", badSigs)
	}
	if !strings.Contains(g.logText(), "HTTP 503") || !strings.Contains(g.logText(), "connection refused") {
		t.Errorf("the log does not show both kinds of failure:\n%s", tail(g.logText(), 30))
	}
}
