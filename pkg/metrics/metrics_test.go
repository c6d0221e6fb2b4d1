package metrics

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

// samples gathers m and returns every sample as `name{l="v",...}` →
// value (histograms: their _count and _sum).
func samples(t testing.TB, m *Metrics) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			var ls []string
			for _, l := range s.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := mf.GetName() + "{" + strings.Join(ls, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = s.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = s.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[strings.Replace(key, "{", "_count{", 1)] = float64(s.GetHistogram().GetSampleCount())
				out[strings.Replace(key, "{", "_sum{", 1)] = s.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

func TestObserveDelivery(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		d    events.Delivery
		want map[string]float64 // samples that must have these values
	}{
		{"delivered over verified TLS 1.3", events.Delivery{Outcome: events.Delivered, Method: "smime", Received: t0, Time: t0.Add(1500 * time.Millisecond),
			TLS: &events.TLS{Version: "TLS 1.3", Verified: true}}, map[string]float64{
			`sealgate_delivery_events_total{method="smime",outcome="delivered"}`:  1,
			`sealgate_delivery_latency_seconds_count{method="smime"}`:             1,
			`sealgate_delivery_latency_seconds_sum{method="smime"}`:               1.5,
			`sealgate_delivery_tls_total{tls_version="1.3",verified="true"}`:      1,
			`sealgate_delivery_tls_total{tls_version="unknown",verified="false"}`: 0,
		}},
		{"delivered to the outbox: no TLS known", events.Delivery{Outcome: events.Delivered, Method: "pdf", Received: t0, Time: t0.Add(time.Second)},
			map[string]float64{
				`sealgate_delivery_events_total{method="pdf",outcome="delivered"}`:    1,
				`sealgate_delivery_tls_total{tls_version="unknown",verified="false"}`: 1,
			}},
		{"delivered in clear", events.Delivery{Outcome: events.Delivered, Method: "signed", TLS: &events.TLS{}},
			map[string]float64{
				`sealgate_delivery_tls_total{tls_version="none",verified="false"}`: 1,
				`sealgate_delivery_latency_seconds_count{method="signed"}`:         0, // no Received: no latency
			}},
		{"held: counted, no latency, no TLS", events.Delivery{Outcome: events.Held, Received: t0, Time: t0.Add(time.Second)},
			map[string]float64{
				`sealgate_delivery_events_total{method="none",outcome="held"}`:        1,
				`sealgate_delivery_latency_seconds_count{method="none"}`:              0,
				`sealgate_delivery_tls_total{tls_version="unknown",verified="false"}`: 0,
			}},
		{"a clock step back is not a negative latency", events.Delivery{Outcome: events.Delivered, Method: "plain", Received: t0, Time: t0.Add(-time.Minute)},
			map[string]float64{
				`sealgate_delivery_events_total{method="plain",outcome="delivered"}`: 1,
				`sealgate_delivery_latency_seconds_count{method="plain"}`:            0,
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := New(Options{})
			m.ObserveDelivery(tc.d)
			got := samples(t, m)
			for k, v := range tc.want {
				if g, ok := got[k]; !ok || g != v {
					t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
				}
			}
		})
	}
}

// TestLabelsBoundedAgainstHostileValues plays a sender who controls what
// ends up in an event (a made-up method or outcome from a future or
// confused component, TLS versions a server announced, addresses): the
// number of series must not grow with distinct values, and none of those
// values may appear in the exposition.
func TestLabelsBoundedAgainstHostileValues(t *testing.T) {
	m := New(Options{})
	before := len(samples(t, m))
	for i := range 500 {
		evil := fmt.Sprintf("victim%d@example.org", i)
		m.ObserveDelivery(events.Delivery{Outcome: "out-" + evil, Method: "m-" + evil, Recipient: evil, Sender: evil,
			QueueID: evil, Rule: evil, Reason: evil, TLS: &events.TLS{Version: "TLS " + evil, Cipher: evil}})
		m.ObserveDelivery(events.Delivery{Outcome: events.Delivered, Method: evil, Recipient: evil, TLS: &events.TLS{Version: evil}})
	}
	got := samples(t, m)
	if len(got) != before {
		t.Fatalf("%d series before, %d after 1000 events with distinct hostile values", before, len(got))
	}
	for k := range got {
		if strings.Contains(k, "victim") {
			t.Fatalf("a value from the event became a label: %s", k)
		}
	}
	for _, k := range []string{`sealgate_delivery_events_total{method="other",outcome="other"}`,
		`sealgate_delivery_events_total{method="other",outcome="delivered"}`, `sealgate_delivery_tls_total{tls_version="other",verified="false"}`} {
		if got[k] != 500 {
			t.Errorf("%s = %v, want 500", k, got[k])
		}
	}
}

func TestObserveLookupAndSync(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := New(Options{SyncInterval: 15 * time.Minute, RenewBefore: 720 * time.Hour, Now: func() time.Time { return now }})
	m.ObserveLookup("store", "found")
	m.ObserveLookup("store", "found")
	m.ObserveLookup("keyserver partners", "unavailable")
	m.ObserveSync(SyncRound{Result: SyncPartial, Issued: 3, Failed: 1})
	m.ObserveSync(SyncRound{Result: SyncSkipped})
	got := samples(t, m)
	for k, v := range map[string]float64{
		`sealgate_directory_lookups_total{result="found",source="store"}`:                    2,
		`sealgate_directory_lookups_total{result="unavailable",source="keyserver partners"}`: 1,
		`sealgate_pki_syncs_total{result="partial"}`:                                         1,
		`sealgate_pki_syncs_total{result="skipped"}`:                                         1,
		`sealgate_pki_syncs_total{result="success"}`:                                         0,
		`sealgate_pki_sync_certificates_total{action="issued"}`:                              3,
		`sealgate_pki_sync_certificates_total{action="failed"}`:                              1,
		`sealgate_pki_sync_last_success_timestamp_seconds{}`:                                 0, // a partial round is no success
		`sealgate_pki_sync_interval_seconds{}`:                                               900,
		`sealgate_pki_renew_before_seconds{}`:                                                2592000,
	} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	m.ObserveSync(SyncRound{Result: SyncSuccess, Renewed: 2})
	if g := samples(t, m)[`sealgate_pki_sync_last_success_timestamp_seconds{}`]; g != 1_800_000_000 {
		t.Errorf("last success = %v after a successful round, want %v", g, 1_800_000_000)
	}
	var nilM *Metrics // the Observe methods are no-ops on nil (metrics off)
	nilM.ObserveDelivery(events.Delivery{Outcome: events.Delivered})
	nilM.ObserveLookup("store", "found")
	nilM.ObserveSync(SyncRound{Result: SyncSuccess})
}

type fakeQueue struct {
	stats []store.QueueStat
	err   error
	node  string // the node asked for
}

func (f *fakeQueue) QueueStats(_ context.Context, node string) ([]store.QueueStat, error) {
	f.node = node
	return f.stats, f.err
}

type fakeCerts struct {
	soonest time.Time
	valid   int64
	err     error
}

func (f fakeCerts) CertificateExpiry(context.Context, time.Time) (time.Time, int64, error) {
	return f.soonest, f.valid, f.err
}

func TestScrapeGauges(t *testing.T) {
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	spool := t.TempDir()
	for i, size := range []int{100, 250} {
		if err := os.WriteFile(filepath.Join(spool, fmt.Sprintf("m%d.msg", i)), make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(spool, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	q := &fakeQueue{stats: []store.QueueStat{
		{State: "held", Count: 2, Bytes: 300, Oldest: now.Add(-90 * time.Second)},
		{State: "queued", Count: 1, Bytes: 10, Oldest: now.Add(-5 * time.Second)},
		{State: "weird-new-state", Count: 4, Bytes: 40, Oldest: now.Add(-time.Hour)},
	}}
	m := New(Options{Queue: q, Certs: fakeCerts{soonest: now.Add(48 * time.Hour), valid: 7}, Node: "gw1", SpoolDir: spool,
		Now: func() time.Time { return now }})
	got := samples(t, m)
	if q.node != "gw1" {
		t.Errorf("queue statistics asked for node %q, want gw1", q.node)
	}
	for k, v := range map[string]float64{
		`sealgate_queue_messages{state="held"}`:               2,
		`sealgate_queue_bytes{state="held"}`:                  300,
		`sealgate_queue_oldest_age_seconds{state="held"}`:     90,
		`sealgate_queue_messages{state="queued"}`:             1,
		`sealgate_queue_oldest_age_seconds{state="queued"}`:   5,
		`sealgate_queue_messages{state="deferred"}`:           0, // reported although empty
		`sealgate_queue_oldest_age_seconds{state="deferred"}`: 0,
		`sealgate_queue_messages{state="other"}`:              4,
		`sealgate_store_up{}`:                                 1,
		`sealgate_spool_files{}`:                              2,
		`sealgate_spool_bytes{}`:                              350,
		`sealgate_user_certificate_soonest_expiry_seconds{}`:  48 * 3600,
		`sealgate_user_certificates_valid{}`:                  7,
	} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for k := range got {
		if strings.Contains(k, "weird") {
			t.Errorf("a queue state this build does not know became a label: %s", k)
		}
	}
}

func TestScrapeStoreUnreadable(t *testing.T) {
	m := New(Options{Queue: &fakeQueue{err: errors.New("database is locked")}, Certs: fakeCerts{err: errors.New("gone")}})
	got := samples(t, m)
	if g, ok := got[`sealgate_store_up{}`]; !ok || g != 0 {
		t.Errorf("sealgate_store_up = %v (present %v), want 0", g, ok)
	}
	for k := range got {
		if strings.HasPrefix(k, "sealgate_queue_") || strings.HasPrefix(k, "sealgate_user_certificate") {
			t.Errorf("%s reported from an unreadable store", k)
		}
	}
	// No valid certificate: the expiry is absent, not 0 (which would fire
	// the expiry alerts), and the count says 0.
	got = samples(t, New(Options{Certs: fakeCerts{}}))
	if _, ok := got[`sealgate_user_certificate_soonest_expiry_seconds{}`]; ok {
		t.Error("soonest expiry reported without any valid certificate")
	}
	if g, ok := got[`sealgate_user_certificates_valid{}`]; !ok || g != 0 {
		t.Errorf("sealgate_user_certificates_valid = %v (present %v), want 0", g, ok)
	}
}

// testStore is a real SQLite store in a temp dir.
func testStore(t testing.TB) *store.Store {
	t.Helper()
	k := make([]byte, secret.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	kr, err := secret.NewKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), store.Options{Driver: "sqlite", Path: filepath.Join(t.TempDir(), "sealgate.db"), Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// scrapeText fetches the exposition over HTTP as Prometheus would.
func scrapeText(t testing.TB, h http.Handler) []byte {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s %v", resp.Status, err)
	}
	return body
}

// TestPromtoolChecksTheExposition has promtool lint a scrape of every
// metric with data in it (a real store, events of every kind).
func TestPromtoolChecksTheExposition(t *testing.T) {
	testpeer.Require(t, "promtool")
	st := testStore(t)
	ctx := context.Background()
	if err := st.PutQueueEntry(ctx, store.QueueEntry{ID: "q1", Node: "gw1", Sender: "a@org.test", Recipients: []string{"b@ext.test"},
		State: "held", Size: 123}); err != nil {
		t.Fatal(err)
	}
	m := New(Options{Queue: st, Certs: st, Node: "gw1", SpoolDir: t.TempDir(), RenewBefore: time.Hour, SyncInterval: time.Minute})
	now := time.Now()
	for _, o := range events.Outcomes {
		m.ObserveDelivery(events.Delivery{Outcome: o, Method: "smime", Received: now.Add(-time.Second), Time: now, TLS: &events.TLS{Version: "TLS 1.2"}})
	}
	m.ObserveLookup("store", "found")
	m.ObserveSync(SyncRound{Result: SyncSuccess, Issued: 1})
	body := scrapeText(t, m.Handler())
	res := testpeer.Run(t, body, "promtool", "check", "metrics")
	if res.ExitCode != 0 {
		t.Fatalf("promtool check metrics: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	for _, want := range []string{`sealgate_queue_messages{state="held"} 1`, "go_goroutines", "process_start_time_seconds"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the scrape lacks %q", want)
		}
	}
}

// TestAlertRules checks docs/prometheus-rules.yml with promtool and runs
// its unit tests (testdata/rules_test.yml).
func TestAlertRules(t *testing.T) {
	testpeer.Require(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "../../docs/prometheus-rules.yml"},
		{"test", "rules", "testdata/rules_test.yml"},
	} {
		res := testpeer.Run(t, nil, "promtool", args...)
		if res.ExitCode != 0 || !strings.Contains(string(res.Stdout)+string(res.Stderr), "SUCCESS") {
			t.Errorf("promtool %s: exit %d\n%s%s", strings.Join(args, " "), res.ExitCode, res.Stdout, res.Stderr)
		}
	}
}
