package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

func randomKey(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSignatureInterop: the reference Standard Webhooks library verifies
// what Sign produces, with each secret of a rotation, and refuses a
// changed body, id or timestamp and a foreign secret.
func TestSignatureInterop(t *testing.T) {
	current, old, foreign := randomKey(t, 32), randomKey(t, 24), randomKey(t, 64)
	body := []byte(`{"type":"delivery.delivered","timestamp":"2026-12-04T10:00:00Z","data":{"id":7}}`)
	ts := time.Now()
	sig := Sign([][]byte{current, old}, "evt_7_x", ts, body)
	if n := len(strings.Fields(sig)); n != 2 {
		t.Fatalf("%d signatures for two secrets: %q", n, sig)
	}
	headers := func(id string, ts time.Time, sig string) http.Header {
		h := http.Header{}
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", fmt.Sprint(ts.Unix()))
		h.Set("webhook-signature", sig)
		return h
	}
	tests := []struct {
		name   string
		key    []byte
		body   []byte
		header http.Header
		ok     bool
	}{
		{"current secret", current, body, headers("evt_7_x", ts, sig), true},
		{"old secret during rotation", old, body, headers("evt_7_x", ts, sig), true},
		{"foreign secret", foreign, body, headers("evt_7_x", ts, sig), false},
		{"body changed", current, bytes.Replace(body, []byte("7"), []byte("8"), 1), headers("evt_7_x", ts, sig), false},
		{"id changed", current, body, headers("evt_8_x", ts, sig), false},
		{"timestamp changed", current, body, headers("evt_7_x", ts.Add(-time.Second), sig), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wh, err := standardwebhooks.NewWebhookRaw(tt.key)
			if err != nil {
				t.Fatal(err)
			}
			err = wh.Verify(tt.body, tt.header)
			if (err == nil) != tt.ok {
				t.Fatalf("Verify: %v, want ok=%v", err, tt.ok)
			}
		})
	}
	// The secret as written in secret_file ("whsec_" + base64) reads to
	// the key the reference library derives from the same string.
	line := "whsec_" + b64(current)
	keys, err := config.ParseWebhookSecrets([]byte(line + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	wh, err := standardwebhooks.NewWebhook(line)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(body, headers("evt_7_x", ts, Sign(keys, "evt_7_x", ts, body))); err != nil {
		t.Fatalf("whsec_ secret: %v", err)
	}
}

// TestEventNamesMatchOutcomes: config accepts exactly the outcomes the
// recorder writes.
func TestEventNamesMatchOutcomes(t *testing.T) {
	a, b := slices.Clone(config.WebhookEvents), slices.Clone(events.Outcomes)
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(a, b) {
		t.Fatalf("config.WebhookEvents %v, events.Outcomes %v", a, b)
	}
}

// TestPayload: the envelope carries the events API's fields and nothing
// else; a TLS column that is not JSON is left out rather than breaking the
// body.
func TestPayload(t *testing.T) {
	at := time.Date(2026, 12, 4, 10, 0, 0, 123456000, time.UTC)
	tests := []struct {
		name    string
		e       store.DeliveryEvent
		wantTLS bool
	}{
		{"with tls", store.DeliveryEvent{ID: 41, Time: at, Node: "gw1", QueueID: "Q1", MessageID: "<m@x>", Sender: "a@org.test",
			Recipient: "b@ext.test", Outcome: "delivered", Method: "smime", Signed: true, Rule: "default", Attempt: 2,
			TLS: `{"version":"TLS 1.3","verified":true}`}, true},
		{"held without tls", store.DeliveryEvent{ID: 42, Time: at, QueueID: "Q2", Sender: "a@org.test", Recipient: "c@ext.test",
			Outcome: "held", Reason: "no certificate"}, false},
		{"broken tls column", store.DeliveryEvent{ID: 43, Time: at, QueueID: "Q3", Recipient: "d@ext.test", Outcome: "deferred", TLS: "{"}, false},
	}
	allowed := []string{"id", "time", "queue_id", "message_id", "sender", "recipient", "outcome", "method", "signed", "rule", "tls", "attempt", "reason", "node"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Payload(tt.e)
			if err != nil {
				t.Fatal(err)
			}
			var env struct {
				Type      string
				Timestamp time.Time
				Data      map[string]any
			}
			if err := json.Unmarshal(b, &env); err != nil {
				t.Fatalf("%v: %s", err, b)
			}
			if env.Type != "delivery."+tt.e.Outcome || !env.Timestamp.Equal(at) {
				t.Fatalf("envelope %+v", env)
			}
			for k := range env.Data {
				if !slices.Contains(allowed, k) {
					t.Errorf("unexpected field %q", k)
				}
			}
			if env.Data["id"] != float64(tt.e.ID) || env.Data["recipient"] != tt.e.Recipient || env.Data["queue_id"] != tt.e.QueueID {
				t.Errorf("data %v", env.Data)
			}
			if _, ok := env.Data["tls"]; ok != tt.wantTLS {
				t.Errorf("tls present %v, want %v: %s", ok, tt.wantTLS, b)
			}
		})
	}
	if MessageID(tests[0].e) == MessageID(tests[1].e) || strings.Contains(MessageID(tests[0].e), ".") {
		t.Fatalf("webhook ids %q %q", MessageID(tests[0].e), MessageID(tests[1].e))
	}
}

func TestBackoff(t *testing.T) {
	const lo, hi = time.Second, time.Minute
	prevMax := time.Duration(0)
	for n := range 40 {
		for _, r := range []float64{0, 0.5, 0.999999} {
			d := Backoff(n, lo, hi, r)
			if d < lo/2 || d > hi {
				t.Fatalf("attempt %d, r %v: %v outside [%v, %v]", n, r, d, lo/2, hi)
			}
		}
		top := Backoff(n, lo, hi, 0.999999)
		if top < prevMax {
			t.Fatalf("attempt %d waits at most %v, less than attempt %d's %v", n, top, n-1, prevMax)
		}
		prevMax = top
	}
	if Backoff(0, lo, hi, 0) == Backoff(0, lo, hi, 0.9) {
		t.Fatal("no jitter")
	}
	if got := Backoff(30, lo, hi, 0); got != hi/2 {
		t.Fatalf("capped backoff low end %v, want %v", got, hi/2)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"30", 30 * time.Second}, {" 5 ", 5 * time.Second}, {"-1", 0}, {"999999", 0}, {"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("%q: %v, want %v", tt.in, got, tt.want)
		}
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// receiver is a webhook endpoint on loopback that checks every request
// with the reference Standard Webhooks library and records what it got.
type receiver struct {
	t       testing.TB
	wh      *standardwebhooks.Webhook
	srv     *http.Server
	url     string
	mu      sync.Mutex
	got     []received
	refuse  atomic.Int32                                             // answer the next n requests with 503
	handler func(w http.ResponseWriter, r *http.Request) (done bool) // optional override
	badSig  atomic.Int32
}

type received struct {
	ID    string // webhook-id
	Event Event
	Type  string
}

func newReceiver(t testing.TB, key []byte) *receiver {
	t.Helper()
	wh, err := standardwebhooks.NewWebhookRaw(key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, wh: wh, url: "http://" + ln.Addr().String() + "/hook?token=url-token-do-not-log"}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go r.srv.Serve(ln)
	t.Cleanup(func() { r.srv.Close() })
	return r
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rc.handler != nil && rc.handler(w, r) {
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if err := rc.wh.Verify(body, r.Header); err != nil {
		rc.badSig.Add(1)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if rc.refuse.Load() > 0 {
		rc.refuse.Add(-1)
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var env struct {
		Type string
		Data Event
	}
	if err := json.Unmarshal(body, &env); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.got = append(rc.got, received{ID: r.Header.Get("webhook-id"), Event: env.Data, Type: env.Type})
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) received() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

// firsts are the events by first arrival, and a check that every repeat
// carries the webhook-id of its first.
func (rc *receiver) firsts(t testing.TB) []Event {
	t.Helper()
	seen := map[int64]string{}
	var out []Event
	for _, g := range rc.received() {
		if id, ok := seen[g.Event.ID]; ok {
			if id != g.ID {
				t.Fatalf("event %d came again with webhook-id %q, first %q", g.Event.ID, g.ID, id)
			}
			continue
		}
		seen[g.Event.ID] = g.ID
		out = append(out, g.Event)
	}
	return out
}

type backend struct {
	name string
	open func(t testing.TB) func(t testing.TB) *store.Store // a database; each call opens a node on it
}

var (
	pgOnce   sync.Once
	pgServer *testpeer.Postgres
	pgErr    error
)

func backends() []backend {
	kr := func(t testing.TB) *secret.Keyring {
		k, err := secret.NewKeyring(randomKey(t, secret.KeySize))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	openNode := func(t testing.TB, opts store.Options) *store.Store {
		s, err := store.Open(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	return []backend{
		{"sqlite", func(t testing.TB) func(testing.TB) *store.Store {
			opts := store.Options{Path: filepath.Join(t.TempDir(), "sealgate.db"), Keyring: kr(t)}
			return func(t testing.TB) *store.Store { return openNode(t, opts) }
		}},
		{"postgres", func(t testing.TB) func(testing.TB) *store.Store {
			pgOnce.Do(func() { pgServer, pgErr = testpeer.StartPostgresServer() })
			if errors.Is(pgErr, testpeer.ErrNoPostgres) {
				if testpeer.InCI() {
					t.Fatalf("peer PostgreSQL: %v", pgErr)
				}
				t.Skipf("peer PostgreSQL: %v", pgErr)
			}
			if pgErr != nil {
				t.Fatal(pgErr)
			}
			opts := store.Options{Driver: "postgres", DSN: pgServer.NewDatabase(t), Keyring: kr(t)}
			return func(t testing.TB) *store.Store { return openNode(t, opts) }
		}},
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pgServer != nil {
		pgServer.Stop()
	}
	os.Exit(code)
}

func record(t testing.TB, s *store.Store, n int, outcomes ...string) []int64 {
	t.Helper()
	var ids []int64
	for i := range n {
		id, err := s.RecordDelivery(context.Background(), store.DeliveryEvent{QueueID: fmt.Sprintf("Q%d", i), Sender: "a@org.test",
			Recipient: fmt.Sprintf("r%d@ext.test", i), Outcome: outcomes[i%len(outcomes)], Method: "smime", Rule: "default"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// fast makes a sender that waits little, for tests.
func fast(s *store.Store, node string, log *slog.Logger, eps ...Endpoint) *Sender {
	return &Sender{Store: s, Endpoints: eps, Node: node, Log: log, Poll: 20 * time.Millisecond, LockRetry: 50 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond}
}

// start runs snd until the test ends (before its stores close) or stop.
func start(t testing.TB, snd *Sender) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { snd.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestOrderRetryRestartFilter: events the filter selects arrive in id
// order, none lost, after refusals (503) and a restart of the sender in
// the middle; others are not sent; repeats carry the first webhook-id;
// neither the URL's token nor the secret reaches the log or the store.
func TestOrderRetryRestartFilter(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			node := b.open(t)
			s := node(t)
			key := randomKey(t, 32)
			rc := newReceiver(t, key)
			ep := Endpoint{Name: "siem", URL: rc.url, Secrets: [][]byte{key}, Events: []string{"delivered", "held"}, Timeout: 5 * time.Second,
				MaxBackoff: 50 * time.Millisecond}
			var logs syncBuffer
			log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			// The cursor starts at the newest event: these are not sent.
			record(t, s, 3, "delivered")
			if _, err := s.StartWebhookCursor(context.Background(), "siem", "gw1"); err != nil {
				t.Fatal(err)
			}
			ids := record(t, s, 30, "delivered", "deferred", "held", "bounced")
			var want []int64
			for i, id := range ids {
				if o := []string{"delivered", "deferred", "held", "bounced"}[i%4]; o == "delivered" || o == "held" {
					want = append(want, id)
				}
			}
			rc.refuse.Store(5)
			snd := fast(s, "gw1", log, ep)
			stop := start(t, snd)
			waitFor(t, "half the events", func() bool { return len(rc.firsts(t)) >= len(want)/2 })
			stop()
			// A new process: a new store handle, a new sender.
			s2 := node(t)
			more := record(t, s2, 8, "held", "deferred")
			for i, id := range more {
				if i%2 == 0 {
					want = append(want, id)
				}
			}
			rc.refuse.Store(3)
			snd2 := fast(s2, "gw1", log, ep)
			start(t, snd2)
			waitFor(t, "every event", func() bool { return len(rc.firsts(t)) >= len(want) })
			var got []int64
			for _, e := range rc.firsts(t) {
				got = append(got, e.ID)
				if e.Outcome != "delivered" && e.Outcome != "held" {
					t.Errorf("event %d (%s) is outside the filter", e.ID, e.Outcome)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("got events %v, want %v", got, want)
			}
			if rc.badSig.Load() != 0 {
				t.Fatalf("%d requests failed the reference verification", rc.badSig.Load())
			}
			// The cursor moves after the 2xx the receiver sent last.
			waitFor(t, "the cursor past the last event", func() bool {
				c, err := s2.WebhookCursor(context.Background(), "siem")
				return err == nil && c.LastID >= want[len(want)-1]
			})
			if n := snd.Counters()["siem"].Failed + snd2.Counters()["siem"].Failed; n < 8 {
				t.Errorf("%d failed attempts counted, want at least 8", n)
			}
			if !strings.Contains(logs.String(), "HTTP 503") {
				t.Errorf("the refusals are not in the log:\n%s", logs.String())
			}
			for _, leak := range []string{"url-token-do-not-log", b64(key)} {
				if strings.Contains(logs.String(), leak) {
					t.Fatalf("log shows %q", leak)
				}
			}
		})
	}
}

// TestTwoNodesOnPostgres: two gateway nodes run a sender for the same
// endpoint while both record events: only the lock holder sends; when it
// stops, the other takes over from the cursor; the receiver gets every
// event once in id order.
func TestTwoNodesOnPostgres(t *testing.T) {
	b := backends()[1]
	node := b.open(t)
	s1, s2 := node(t), node(t)
	key := randomKey(t, 32)
	rc := newReceiver(t, key)
	ep := Endpoint{Name: "siem", URL: rc.url, Secrets: [][]byte{key}, Timeout: 5 * time.Second, MaxBackoff: 50 * time.Millisecond}
	if _, err := s1.StartWebhookCursor(context.Background(), "siem", "gw1"); err != nil {
		t.Fatal(err)
	}
	var sent [2]atomic.Int64
	counting := func(i int) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			sent[i].Add(1)
			return http.DefaultTransport.RoundTrip(r)
		})
	}
	snd1, snd2 := fast(s1, "gw1", nil, ep), fast(s2, "gw2", nil, ep)
	snd1.Transport, snd2.Transport = counting(0), counting(1)
	stop1 := start(t, snd1)
	waitFor(t, "node 1 to hold the lock", func() bool {
		release, err := s2.TryLock(context.Background(), "webhook:siem")
		if err == nil {
			release() // not yet: node 1 must get it
		}
		return errors.Is(err, store.ErrLocked)
	})
	start(t, snd2)
	var wg sync.WaitGroup
	for i, s := range []*store.Store{s1, s2} {
		gc := store.NewGroupCommit(s)
		defer gc.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 60 {
				if _, err := gc.RecordDelivery(context.Background(), store.DeliveryEvent{QueueID: fmt.Sprintf("n%d-%d", i, j),
					Recipient: "b@ext.test", Outcome: "delivered"}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, "node 1 to send the first 60", func() bool { return len(rc.firsts(t)) >= 60 })
	if sent[1].Load() != 0 {
		t.Fatalf("node 2 sent %d requests while node 1 held the lock", sent[1].Load())
	}
	stop1()
	record(t, s1, 20, "held")
	waitFor(t, "node 2 to take over", func() bool { return len(rc.firsts(t)) >= 140 })
	if sent[1].Load() == 0 {
		t.Fatal("node 2 never sent")
	}
	all, err := s1.DeliveryEvents(context.Background(), store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var want, got []int64
	for _, e := range all {
		want = append(want, e.ID)
	}
	for _, e := range rc.firsts(t) {
		got = append(got, e.ID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	// At most the event in flight when node 1 stopped comes twice (with
	// its webhook-id, checked by firsts).
	if n := len(rc.received()); n > len(want)+1 {
		t.Errorf("%d requests for %d events", n, len(want))
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestHostileEndpoint plays an endpoint that misbehaves: a redirect to
// another server (never followed: the other server sees nothing), a
// request that hangs past the timeout, an endless 200 body (read only so
// far). Each is a failure or a bounded read; the event is delivered once
// the endpoint behaves, and nothing else is lost.
func TestHostileEndpoint(t *testing.T) {
	node := backends()[0].open(t)
	s := node(t)
	key := randomKey(t, 32)
	rc := newReceiver(t, key)
	var elsewhere atomic.Int32
	other := newReceiver(t, key)
	other.handler = func(w http.ResponseWriter, r *http.Request) bool { elsewhere.Add(1); return false }
	var step atomic.Int32
	var endless atomic.Int64
	rc.handler = func(w http.ResponseWriter, r *http.Request) bool {
		switch step.Add(1) {
		case 1:
			http.Redirect(w, r, other.url, http.StatusTemporaryRedirect)
			return true
		case 2:
			<-r.Context().Done() // hangs until the sender gives up
			return true
		case 3:
			w.WriteHeader(200)
			chunk := bytes.Repeat([]byte("x"), 32<<10)
			for {
				n, err := w.Write(chunk)
				endless.Add(int64(n))
				if err != nil || endless.Load() > 256<<20 {
					return true
				}
			}
		}
		return false
	}
	if _, err := s.StartWebhookCursor(context.Background(), "siem", "gw1"); err != nil {
		t.Fatal(err)
	}
	ids := record(t, s, 3, "delivered")
	ep := Endpoint{Name: "siem", URL: rc.url, Secrets: [][]byte{key}, Timeout: 300 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	start(t, fast(s, "gw1", nil, ep))
	waitFor(t, "the last two events", func() bool { return len(rc.firsts(t)) >= 2 })
	if elsewhere.Load() != 0 {
		t.Fatal("the redirect was followed")
	}
	if endless.Load() > 64<<20 {
		t.Fatalf("the sender read %d bytes of an endless answer", endless.Load())
	}
	// The endless 200 counted as delivered (event 1), the rest followed.
	var got []int64
	for _, e := range rc.firsts(t) {
		got = append(got, e.ID)
	}
	if !slices.Equal(got, ids[1:]) {
		t.Fatalf("got %v, want %v", got, ids[1:])
	}
	waitFor(t, "the cursor at the last event, failures cleared", func() bool {
		c, _ := s.WebhookCursor(context.Background(), "siem")
		return c.LastID == ids[2] && c.Failures == 0
	})
}

// TestPrunedBeforeDelivery: events retention removed before a dead
// endpoint got them are reported (log, audit, counter), never skipped
// silently; what is left still arrives.
func TestPrunedBeforeDelivery(t *testing.T) {
	node := backends()[0].open(t)
	s := node(t)
	key := randomKey(t, 32)
	rc := newReceiver(t, key)
	if _, err := s.StartWebhookCursor(context.Background(), "siem", "gw1"); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-100 * 24 * time.Hour)
	for i := range 4 {
		if _, err := s.RecordDelivery(context.Background(), store.DeliveryEvent{Time: old, QueueID: fmt.Sprint("old", i), Recipient: "b@ext.test", Outcome: "delivered"}); err != nil {
			t.Fatal(err)
		}
	}
	fresh := record(t, s, 2, "delivered")
	if n, err := s.PruneDeliveryEvents(context.Background(), time.Now().Add(-90*24*time.Hour)); err != nil || n != 4 {
		t.Fatalf("pruned %d (%v)", n, err)
	}
	var logs syncBuffer
	snd := fast(s, "gw1", slog.New(slog.NewJSONHandler(&logs, nil)), Endpoint{Name: "siem", URL: rc.url, Secrets: [][]byte{key}, MaxBackoff: time.Second})
	start(t, snd)
	waitFor(t, "the events left", func() bool { return len(rc.firsts(t)) >= 2 })
	if got := rc.firsts(t); got[0].ID != fresh[0] || got[1].ID != fresh[1] {
		t.Fatalf("got %+v", got)
	}
	if snd.Counters()["siem"].Lost != 4 || !strings.Contains(logs.String(), "pruned by [events] retention") {
		t.Fatalf("lost %d; log:\n%s", snd.Counters()["siem"].Lost, logs.String())
	}
	audit, err := s.AuditEvents(context.Background(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(audit, func(a store.AuditEvent) bool { return a.Action == "webhook.events_lost" && a.Subject == "siem" }) {
		t.Fatalf("no audit event: %+v", audit)
	}
}

// TestHTTPSVerified: an https endpoint's certificate is verified against
// the endpoint's roots (ca_file): unknown to them, nothing is sent and the
// failure is retried; trusted, the event arrives.
func TestHTTPSVerified(t *testing.T) {
	s := backends()[0].open(t)(t)
	key := randomKey(t, 32)
	rc := newReceiver(t, key)
	srv := httptest.NewUnstartedServer(rc)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	if _, err := s.StartWebhookCursor(context.Background(), "siem", "gw1"); err != nil {
		t.Fatal(err)
	}
	ids := record(t, s, 1, "delivered")
	var logs syncBuffer
	untrusted := fast(s, "gw1", slog.New(slog.NewJSONHandler(&logs, nil)), Endpoint{Name: "siem", URL: srv.URL + "/hook", Secrets: [][]byte{key},
		Timeout: 5 * time.Second, MaxBackoff: 20 * time.Millisecond})
	stop := start(t, untrusted)
	waitFor(t, "a refused certificate", func() bool { return untrusted.Counters()["siem"].Failed >= 2 })
	stop()
	if len(rc.received()) != 0 || !strings.Contains(logs.String(), "certificate") {
		t.Fatalf("sent to an unverified endpoint (%d), log:\n%s", len(rc.received()), logs.String())
	}
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	start(t, fast(s, "gw1", nil, Endpoint{Name: "siem", URL: srv.URL + "/hook", Secrets: [][]byte{key}, Timeout: 5 * time.Second,
		MaxBackoff: 20 * time.Millisecond, RootCAs: pool}))
	waitFor(t, "the event over verified TLS", func() bool { return len(rc.firsts(t)) == 1 })
	if rc.firsts(t)[0].ID != ids[0] {
		t.Fatalf("got %+v", rc.firsts(t))
	}
}
