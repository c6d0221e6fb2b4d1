package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/gateway"
)

const fallbackConfig = `data_dir = %q
[smtp]
hostname = "gw.example.org"
[relay]
mode = "mx"
resolver = %q
mx_port = %d
ca_files = [%q]
timeout = "10s"
[pki]
key_type = "p256"
[users]
source = "static"
groups = ["smime-users"]
[[users.static]]
email = "alice@example.org"
groups = ["smime-users"]
[policy]
internal_domains = ["example.org"]
[[policy.rules]]
name = "to-pdf"
recipient_domain = ["pdf.test", "good.test"]
encrypt = "none"
sign = "never"
tls = "verified"
tls_fallback = "pdf"
[[policy.rules]]
name = "to-hold"
recipient_domain = ["hold.test"]
encrypt = "none"
sign = "never"
tls = "verified"
tls_fallback = "hold"
[pdf]
password = ["subject"]
subject_tag = "[pw:"
`

// TestTLSFallbackEndToEnd: the pipeline serve builds for relay.mode = "mx"
// and the MX relay serve builds, against real MX hosts found through a
// real unbound. A rule with tls = "verified" and tls_fallback = "pdf" to a
// domain whose MX host has a self-signed certificate: the MX host gets a
// PDF carrier (encrypted PDF, body not readable), over the TLS it has. The
// same rule to a domain with a valid certificate: the message as it is,
// verified. tls_fallback = "hold": held, the reason naming the domain and
// the verdict, and nothing reaches the host.
func TestTLSFallbackEndToEnd(t *testing.T) {
	testpeer.Require(t, "openssl")
	n := testpeer.StartMXHosts(t,
		testpeer.MXHostSpec{Name: "mx.pdf.test", Kind: testpeer.MXSelfSigned},
		testpeer.MXHostSpec{Name: "mx.hold.test", Kind: testpeer.MXSelfSigned},
		testpeer.MXHostSpec{Name: "mx.good.test", Kind: testpeer.MXValid})
	u := testpeer.StartUnbound(t, testpeer.UnboundConfig{LocalData: []string{
		"pdf.test. MX 10 mx.pdf.test.", "mx.pdf.test. A " + n.Hosts["mx.pdf.test"].IP,
		"hold.test. MX 10 mx.hold.test.", "mx.hold.test. A " + n.Hosts["mx.hold.test"].IP,
		"good.test. MX 10 mx.good.test.", "mx.good.test. A " + n.Hosts["mx.good.test"].IP,
	}})
	cfg, _, p, _ := servePipeline(t, t.TempDir(), func(dataDir string) string {
		return fmt.Sprintf(fallbackConfig, dataDir, u.Addr, n.Port, n.CAFile)
	})
	ctx := context.Background()
	if p.TLSVerdicts == nil {
		t.Fatal("relay.mode = mx built a pipeline without the TLS check")
	}
	relay, err := buildRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.(interface{ Close() error }).Close()
	hop := relay.(gateway.RcptHopRelay)

	const marker = "CONFIDENTIAL-BODY-7781"
	rcpts := []string{"x@pdf.test", "y@hold.test", "z@good.test"}
	msg := []byte("From: alice@example.org\r\nTo: x@pdf.test, y@hold.test, z@good.test\r\nSubject: report [pw:Secret-Pass-42]\r\n" +
		"Message-ID: <fallback@example.org>\r\n\r\n" + marker + "\r\n")
	plan, err := p.Process(ctx, &gateway.Envelope{From: "alice@example.org"}, rcpts, msg)
	if err != nil {
		t.Fatal(err)
	}
	why := plan.Held["y@hold.test"]
	if !strings.Contains(why, "hold.test") || !strings.Contains(why, "encrypted") || !strings.Contains(why, "self-signed") {
		t.Fatalf("hold.test: held %q, want the domain, verdict and fault named; plan %+v", why, plan)
	}
	for _, pc := range plan.Parcels {
		errs, _ := hop.DeliverEach(ctx, gateway.Delivery{From: "alice@example.org", Rcpts: pc.Rcpts, Data: pc.Data, TLS: pc.TLS, RequireTLS: pc.RequireTLS})
		for i, e := range errs {
			if e != nil {
				t.Fatalf("parcel %s to %s: %v", pc.Method, pc.Rcpts[i], e)
			}
		}
		if pc.Method == "pdf" && !strings.Contains(pc.Reason, "pdf.test") {
			t.Fatalf("pdf parcel reason %q", pc.Reason)
		}
	}
	got := n.Hosts["mx.pdf.test"].Messages()
	if len(got) != 1 || !got[0].TLS || !got[0].HasRcpt("x@pdf.test") {
		t.Fatalf("pdf.test host got %+v", got)
	}
	checkPDFCarrier(t, got[0].Data, marker)
	if strings.Contains(string(got[0].Data), "Secret-Pass-42") {
		t.Fatal("the carrier shows the subject password")
	}
	good := n.Hosts["mx.good.test"].Messages()
	if len(good) != 1 || !good[0].TLS || !strings.Contains(string(good[0].Data), marker) {
		t.Fatalf("good.test host got %d messages (verified TLS: the message as the rule says)", len(good))
	}
	if held := n.Hosts["mx.hold.test"].Messages(); len(held) != 0 {
		t.Fatalf("hold.test host got %d messages", len(held))
	}
}
