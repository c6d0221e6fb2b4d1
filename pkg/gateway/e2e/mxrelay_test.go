package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// TestServeDeliversToMX: serve with relay.mode = "mx" looks up the
// recipients' MX hosts at a real unbound and delivers under each rule's
// tls: a "verified" copy reaches the host whose certificate chains to
// relay.ca_files and names it; for a host with a self-signed certificate
// the domain's TLS check (before the message is processed) holds it under
// the rule's tls_fallback (default hold), the reason naming the domain,
// the verdict and the fault, while a default (opportunistic) copy to that
// host leaves over TLS.
func TestServeDeliversToMX(t *testing.T) {
	n := testpeer.StartMXHosts(t,
		testpeer.MXHostSpec{Name: "mx.valid.test", Kind: testpeer.MXValid},
		testpeer.MXHostSpec{Name: "mx.selfsigned.test", Kind: testpeer.MXSelfSigned})
	u := testpeer.StartUnbound(t, testpeer.UnboundConfig{LocalData: []string{
		"valid.test. MX 10 mx.valid.test.", "mx.valid.test. A " + n.Hosts["mx.valid.test"].IP,
		"selfsigned.test. MX 10 mx.selfsigned.test.", "mx.selfsigned.test. A " + n.Hosts["mx.selfsigned.test"].IP,
	}})
	rules := `[[policy.rules]]
name = "verified"
header = ["X-TLS: verified"]
sign = "never"
encrypt = "none"
tls = "verified"

[[policy.rules]]
name = "default"
sign = "never"
encrypt = "none"
`
	g := newGatewayRules(t, rules, "")
	cfg, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	mx := fmt.Sprintf("[relay]\nmode = \"mx\"\nresolver = %q\nmx_port = %d\nca_files = [%q]\nretry_backoff = \"1h\"\n", u.Addr, n.Port, n.CAFile)
	doc := strings.Replace(string(cfg), "[relay]\nmode = \"dir\"\n", mx, 1)
	if doc == string(cfg) {
		t.Fatal("no [relay] section to replace")
	}
	if err := os.WriteFile(g.config, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	g.start()
	swaks(t, g.addr, "alice@example.org", "bob@valid.test", []string{"X-TLS: verified"}, "to the valid host")
	swaks(t, g.addr, "alice@example.org", "carol@selfsigned.test", []string{"X-TLS: verified"}, "must not reach the self-signed host")
	swaks(t, g.addr, "alice@example.org", "dave@selfsigned.test", nil, "opportunistic to the self-signed host")

	valid := n.Hosts["mx.valid.test"].WaitMessages(t, 1, 60*time.Second)
	if !valid[0].TLS || !valid[0].HasRcpt("bob@valid.test") || !strings.Contains(string(valid[0].Data), "to the valid host") {
		t.Fatalf("valid host got %+v", valid[0])
	}
	self := n.Hosts["mx.selfsigned.test"].WaitMessages(t, 1, 60*time.Second)
	if len(self) != 1 || !self[0].HasRcpt("dave@selfsigned.test") || !self[0].TLS {
		t.Fatalf("self-signed host got %+v", self)
	}
	waitUntil(t, 60*time.Second, func() bool {
		for _, e := range g.queueEntries(t) {
			if e.State == "held" && strings.Contains(e.HoldReason, "selfsigned.test") && strings.Contains(e.HoldReason, "check: encrypted") &&
				strings.Contains(e.HoldReason, "self-signed") {
				return true
			}
		}
		return false
	}, func() string {
		return fmt.Sprintf("carol not held with the reason: %+v\n%s", g.queueEntries(t), tail(g.logText(), 20))
	})
	if got := n.Hosts["mx.selfsigned.test"].Messages(); len(got) != 1 {
		t.Fatalf("the self-signed host got the verified copy too: %+v", got)
	}
}
