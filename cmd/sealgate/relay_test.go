package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/policy"
)

// TestRelayToPostfixNextHop: buildRelay, from the [relay] keys, against a
// real Postfix smart host that offers STARTTLS with a self-signed
// certificate and AUTH only over TLS. Its certificate is trusted only
// through relay.ca_files (a relative path, resolved like the others) and
// must carry the name the relay checks; otherwise neither a copy whose
// rule requires TLS nor the relay password goes to it.
func TestRelayToPostfixNextHop(t *testing.T) {
	const user, password = "gw", "relay-pw-4711"
	hop := testpeer.StartPostfixNextHop(t, testpeer.PostfixNextHopOptions{User: user, Password: password})
	caPEM, err := os.ReadFile(hop.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		relay      string // lines for [relay] besides mode and smarthost
		requireTLS bool   // the rule's tls = "required"
		wantErr    string // "" delivered
	}{
		{name: "rule requires TLS, certificate untrusted: refused", relay: `tls = "opportunistic"`, requireTLS: true, wantErr: "relay.ca_files"},
		{name: "credentials, certificate untrusted: refused before AUTH", relay: `tls = "opportunistic"
auth_user = "gw"
auth_password_file = "relay.pw"`, wantErr: "relay.ca_files"},
		{name: "rule requires TLS, CA in relay.ca_files: delivered with AUTH", relay: `tls = "opportunistic"
auth_user = "gw"
auth_password_file = "relay.pw"
ca_files = ["certs/smarthost-ca.pem"]`, requireTLS: true},
		{name: "relay.tls required, CA in relay.ca_files: delivered with AUTH", relay: `tls = "required"
auth_user = "gw"
auth_password_file = "relay.pw"
ca_files = ["certs/smarthost-ca.pem"]`},
		{name: "name mismatch: refused", relay: `tls = "required"
auth_user = "gw"
auth_password_file = "relay.pw"
ca_files = ["certs/smarthost-ca.pem"]
tls_server_name = "elsewhere.sealgate.test"`, wantErr: "relay.tls_server_name"},
		{name: "tls_server_name the certificate carries: delivered", relay: fmt.Sprintf(`tls = "required"
auth_user = "gw"
auth_password_file = "relay.pw"
ca_files = ["certs/smarthost-ca.pem"]
tls_server_name = %q`, hop.DNSName)},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			testpeer.WriteFile(t, dir, "relay.pw", []byte(password+"\n"))
			if err := os.Mkdir(filepath.Join(dir, "certs"), 0o700); err != nil {
				t.Fatal(err)
			}
			testpeer.WriteFile(t, filepath.Join(dir, "certs"), "smarthost-ca.pem", caPEM)
			doc := fmt.Sprintf("data_dir = \"./data\"\n[relay]\nmode = \"smarthost\"\nsmarthost = %q\n%s\n", hop.SMTPAddr, tc.relay)
			testpeer.WriteFile(t, dir, "sealgate.toml", []byte(doc))
			cfg, err := config.Load(filepath.Join(dir, "sealgate.toml"))
			if err != nil {
				t.Fatal(err)
			}
			relay, err := buildRelay(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer relay.(*gateway.SMTPRelay).Close()
			marker := fmt.Sprintf("relay-test-%d", i)
			msg := fmt.Sprintf("From: a@org.test\r\nTo: b@ext.test\r\nSubject: %s\r\n\r\nbody %s\r\n", marker, marker)
			errs := relay.Deliver(context.Background(), gateway.Delivery{From: "a@org.test", Rcpts: []string{"b@ext.test"}, Data: []byte(msg), RequireTLS: tc.requireTLS})
			if tc.wantErr != "" {
				if errs[0] == nil || gateway.IsPermanent(errs[0]) || !strings.Contains(errs[0].Error(), tc.wantErr) {
					t.Fatalf("err = %v, want a temporary failure with %q", errs[0], tc.wantErr)
				}
				if strings.Contains(errs[0].Error(), password) {
					t.Fatal("the password is in the error")
				}
				for _, m := range hop.Messages(t) {
					if strings.Contains(string(m), marker) {
						t.Fatal("delivered although refused")
					}
				}
				return
			}
			if errs[0] != nil {
				t.Fatalf("%v\npostfix log:\n%s", errs[0], hop.Log())
			}
			got := string(hop.WaitMessage(t, marker, 20*time.Second))
			// Postfix notes both in its Received header.
			for _, want := range []string{"using TLS", "(Authenticated sender: " + user} {
				if !strings.Contains(got, want) {
					t.Errorf("delivered message lacks %q:\n%s", want, got)
				}
			}
		})
	}
	// No refused case got as far as AUTH: Postfix logs each successful
	// login with sasl_method, and each delivered case logs in once (it
	// builds its own relay, so no pooled connection is shared).
	if n := strings.Count(hop.Log(), "sasl_method="); n != 3 {
		t.Errorf("%d successful AUTHs in the Postfix log, want 3 (the delivered cases)\n%s", n, hop.Log())
	}
}

// TestRelayModeMX: buildRelay with relay.mode = "mx" from the file's keys
// (resolver, mx_port, ca_files) delivers to the MX host the real unbound
// names, verified against relay.ca_files, and refuses the host whose
// certificate names another host.
func TestRelayModeMX(t *testing.T) {
	n := testpeer.StartMXHosts(t,
		testpeer.MXHostSpec{Name: "mx.good.test", Kind: testpeer.MXValid},
		testpeer.MXHostSpec{Name: "mx.bad.test", Kind: testpeer.MXWrongName})
	u := testpeer.StartUnbound(t, testpeer.UnboundConfig{LocalData: []string{
		"good.test. MX 10 mx.good.test.", "mx.good.test. A " + n.Hosts["mx.good.test"].IP,
		"bad.test. MX 10 mx.bad.test.", "mx.bad.test. A " + n.Hosts["mx.bad.test"].IP,
	}})
	dir := t.TempDir()
	doc := fmt.Sprintf("data_dir = \"./data\"\n[relay]\nmode = \"mx\"\nresolver = %q\nmx_port = %d\nca_files = [%q]\n", u.Addr, n.Port, n.CAFile)
	testpeer.WriteFile(t, dir, "sealgate.toml", []byte(doc))
	cfg, err := config.Load(filepath.Join(dir, "sealgate.toml"))
	if err != nil {
		t.Fatal(err)
	}
	relay, err := buildRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hop, ok := relay.(gateway.RcptHopRelay)
	if !ok {
		t.Fatalf("relay %T does not report hops per recipient", relay)
	}
	defer relay.(interface{ Close() error }).Close()
	msg := []byte("From: a@org.test\r\nSubject: mx\r\n\r\nbody\r\n")
	errs, hops := hop.DeliverEach(context.Background(), gateway.Delivery{From: "a@org.test", Rcpts: []string{"b@good.test", "c@bad.test"}, Data: msg, TLS: policy.TLSVerified, RequireTLS: true})
	if errs[0] != nil || hops[0] == nil || hops[0].VerifiedBy != "pkix" || hops[0].Host != "mx.good.test" {
		t.Fatalf("good.test: err %v hop %+v", errs[0], hops[0])
	}
	if errs[1] == nil || gateway.IsPermanent(errs[1]) || !strings.Contains(errs[1].Error(), "certificate does not name the MX host") {
		t.Fatalf("bad.test: err %v, want a temporary failure naming the certificate fault", errs[1])
	}
	if got := n.Hosts["mx.good.test"].Messages(); len(got) != 1 || !got[0].TLS || !got[0].HasRcpt("b@good.test") {
		t.Fatalf("good host got %+v", got)
	}
	if got := n.Hosts["mx.bad.test"].Messages(); len(got) != 0 {
		t.Fatalf("the wrong-name host got %+v", got)
	}
}
