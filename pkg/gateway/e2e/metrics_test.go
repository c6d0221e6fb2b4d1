package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// httpGet fetches url from serve's internal listener.
func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, body
}

// TestPrometheusAlertsOnHeldMail is the "done when": a real
// Prometheus scrapes a running serve every second with the shipped rules
// file as it is, a confidential message to a recipient without a
// certificate is held, and SealgateMailHeld fires. promtool lints a real
// scrape on the way, and /readyz answers for store, spool and issuer.
func TestPrometheusAlertsOnHeldMail(t *testing.T) {
	testpeer.Require(t, "promtool")
	rules, err := filepath.Abs("../../../docs/prometheus-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	g := newGateway(t, "")
	g.start()
	if g.http == "" {
		t.Fatalf("serve logged no HTTP address:\n%s", g.logText())
	}

	code, body := httpGet(t, "http://"+g.http+"/readyz")
	var ready struct {
		Status string `json:"status"`
		Checks []struct {
			Name string `json:"name"`
			OK   bool   `json:"ok"`
		} `json:"checks"`
	}
	if err := json.Unmarshal(body, &ready); err != nil || code != http.StatusOK || ready.Status != "ready" || len(ready.Checks) != 3 {
		t.Fatalf("/readyz: %d %s (%v)", code, body, err)
	}

	prom := testpeer.StartPrometheus(t, testpeer.PrometheusOptions{Targets: []string{g.http}, RuleFiles: []string{rules}, Interval: time.Second})
	waitUntil(t, 30*time.Second, func() bool {
		ts := prom.Targets(t)
		return len(ts) == 1 && ts[0].Health == "up"
	}, func() string { return "Prometheus never scraped serve successfully: " + prom.Log() })
	if alerts := prom.Alerts(t); len(alerts) != 0 {
		t.Fatalf("alerts before any mail: %+v", alerts)
	}

	// encrypt = "smime-required" (the confidential rule) and no
	// certificate for the recipient: held.
	msg := rfc5322(append(fields("alice@example.org", "partner@elsewhere.test", "Quarterly figures"),
		"X-Classification: Confidential"), "the figures\r\n")
	if r := submit(t, g.addr, submission{From: "alice@example.org", To: []string{"partner@elsewhere.test"}, Data: msg}); !r.is(250, "") {
		t.Fatalf("submission: %s", r)
	}
	if o := g.waitOutcome(t, "partner@elsewhere.test"); o.Entry == nil || o.Entry.State != "held" {
		t.Fatalf("partner@elsewhere.test: %s, want held", o)
	}

	var firing testpeer.PromAlert
	waitUntil(t, 60*time.Second, func() bool {
		for _, a := range prom.Alerts(t) {
			if a.Labels["alertname"] == "SealgateMailHeld" && a.State == "firing" {
				firing = a
				return true
			}
		}
		return false
	}, func() string { return "SealgateMailHeld not firing in Prometheus" })
	if firing.Labels["instance"] != g.http || firing.Annotations["summary"] != "1 message(s) held on "+g.http {
		t.Errorf("alert: %+v", firing)
	}
	// What Prometheus stored agrees with the event: one held recipient,
	// counted by outcome, and no label carrying the address.
	held := prom.Query(t, `sum(sealgate_delivery_events_total{outcome="held"})`)
	if len(held) != 1 || held[0].Value[1] != "1" {
		t.Errorf(`sum(sealgate_delivery_events_total{outcome="held"}) in Prometheus: %+v`, held)
	}

	_, scrape := httpGet(t, "http://"+g.http+"/metrics")
	if res := testpeer.Run(t, scrape, "promtool", "check", "metrics"); res.ExitCode != 0 {
		t.Errorf("promtool check metrics on serve's scrape: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	for _, leak := range []string{"partner@", "elsewhere.test", "alice@", "Quarterly"} {
		if strings.Contains(string(scrape), leak) {
			t.Errorf("the scrape names %q", leak)
		}
	}
	for _, want := range []string{`sealgate_queue_messages{state="held"} 1`, "sealgate_pki_renew_before_seconds 2.592e+06",
		"sealgate_pki_sync_interval_seconds 3600", "sealgate_spool_files 1", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(string(scrape), want) {
			t.Errorf("the scrape lacks %q", want)
		}
	}

	// A spool that cannot take a file makes the node unready, by name.
	spool := filepath.Join(g.dir, "data", "spool")
	if err := os.Rename(spool, spool+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(spool, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, body = httpGet(t, "http://"+g.http+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), `"failed":["spool"]`) {
		t.Errorf("/readyz with the spool gone: %d %s", code, body)
	}
	if err := os.Remove(spool); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(spool+".moved", spool); err != nil {
		t.Fatal(err)
	}
}
