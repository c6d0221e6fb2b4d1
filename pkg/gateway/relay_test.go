package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// trusting is a client TLS configuration whose only anchor is the
// certificate server presents (self-signed in these tests), checked for
// the name serverName.
func trusting(t *testing.T, server *tls.Config, serverName string) *tls.Config {
	t.Helper()
	cert, err := x509.ParseCertificate(server.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{RootCAs: pool, ServerName: serverName}
}

func TestSMTPRelay(t *testing.T) {
	serverTLS := selfSigned(t) // names gw.test
	tlsSink := testpeer.StartSink(t, testpeer.SinkOptions{TLS: serverTLS, Users: map[string]string{"gw": "pw"}})
	openTLSSink := testpeer.StartSink(t, testpeer.SinkOptions{TLS: serverTLS})
	plainSink := testpeer.StartSink(t, testpeer.SinkOptions{})
	trusted := trusting(t, serverTLS, "gw.test")
	untrusted := &tls.Config{ServerName: "gw.test"} // the system roots only
	tests := []struct {
		name    string
		relay   *SMTPRelay
		sink    *testpeer.Sink
		wantErr string
		wantTLS bool
	}{
		{"opportunistic with credentials: verified STARTTLS, then AUTH", &SMTPRelay{Addr: tlsSink.Addr, TLS: "opportunistic", User: "gw", Password: "pw", TLSConf: trusted}, tlsSink, "", true},
		{"opportunistic without credentials takes an unverified certificate", &SMTPRelay{Addr: openTLSSink.Addr, TLS: "opportunistic"}, openTLSSink, "", true},
		{"opportunistic without STARTTLS sends plain", &SMTPRelay{Addr: plainSink.Addr, TLS: "opportunistic"}, plainSink, "", false},
		{"required refuses a host without STARTTLS", &SMTPRelay{Addr: plainSink.Addr, TLS: "required"}, plainSink, "does not offer STARTTLS", false},
		{"required verifies the certificate", &SMTPRelay{Addr: tlsSink.Addr, TLS: "required", User: "gw", Password: "pw", TLSConf: untrusted}, tlsSink, "relay.ca_files", false},
		{"required with a trusted certificate", &SMTPRelay{Addr: tlsSink.Addr, TLS: "required", User: "gw", Password: "pw", TLSConf: trusted}, tlsSink, "", true},
		{"opportunistic with credentials refuses an untrusted certificate", &SMTPRelay{Addr: tlsSink.Addr, TLS: "opportunistic", User: "gw", Password: "pw", TLSConf: untrusted}, tlsSink, "relay.ca_files", false},
		{"required refuses a certificate for another name", &SMTPRelay{Addr: tlsSink.Addr, TLS: "required", TLSConf: trusting(t, serverTLS, "other.test")}, tlsSink, "relay.tls_server_name", false},
		{"InsecureSkipVerify handed in does not switch verification off", &SMTPRelay{Addr: tlsSink.Addr, TLS: "required", TLSConf: &tls.Config{ServerName: "gw.test", InsecureSkipVerify: true}}, tlsSink, "relay.ca_files", false},
		{"wrong password", &SMTPRelay{Addr: tlsSink.Addr, TLS: "opportunistic", User: "gw", Password: "bad", TLSConf: trusted}, tlsSink, "AUTH", false},
		{"next hop down", &SMTPRelay{Addr: "127.0.0.1:1", TLS: "none", Timeout: 2 * time.Second}, nil, "refused", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.relay.Hostname = "gw.test"
			before := 0
			if tc.sink != nil {
				before = len(tc.sink.Messages())
			}
			errs := tc.relay.Deliver(context.Background(), Delivery{From: "a@org.test", Rcpts: []string{"b@ext.test"}, Data: []byte("Subject: x\r\n\r\nhi\r\n")})
			if tc.wantErr != "" {
				if errs[0] == nil || !strings.Contains(errs[0].Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", errs[0], tc.wantErr)
				}
				if IsPermanent(errs[0]) {
					t.Fatal("a connection-level failure must be retried, not bounced")
				}
				if tc.sink != nil && len(tc.sink.Messages()) != before {
					t.Fatal("delivered although refused")
				}
				return
			}
			if errs[0] != nil {
				t.Fatal(errs[0])
			}
			msgs := tc.sink.Messages()
			if len(msgs) != before+1 || msgs[len(msgs)-1].TLS != tc.wantTLS {
				t.Fatalf("sink: %d messages, last TLS=%v", len(msgs)-before, msgs[len(msgs)-1].TLS)
			}
		})
	}
}

// TestSMTPRelayNeverAuthsWithoutTLS plays the man in the middle who
// removes STARTTLS from the smart host's EHLO (or refuses it) and accepts
// any AUTH: with credentials configured, the relay password must never
// be written, nor any part of the message, and the delivery is deferred
// with a reason that says what to do.
func TestSMTPRelayNeverAuthsWithoutTLS(t *testing.T) {
	const password = "s3cret-relay-pw"
	stripped := "250-mitm\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN"
	offered := "250-mitm\r\n250-8BITMIME\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN"
	tests := []struct {
		name     string
		relayTLS string
		host     *scriptedHost
		wantErr  string
	}{
		{"STARTTLS stripped, relay.tls opportunistic", "opportunistic", &scriptedHost{ehlo: stripped}, "does not offer STARTTLS and relay.auth_user is set"},
		{"STARTTLS stripped, relay.tls none", "none", &scriptedHost{ehlo: stripped}, "does not offer STARTTLS and relay.auth_user is set"},
		{"STARTTLS offered, then refused 454", "opportunistic", &scriptedHost{ehlo: offered, starttls: "454 4.7.0 TLS not available"}, "STARTTLS"},
		{"STARTTLS offered, then refused 554", "opportunistic", &scriptedHost{ehlo: offered, starttls: "554 5.7.0 no"}, "STARTTLS"},
		{"STARTTLS offered, then no TLS spoken", "required", &scriptedHost{ehlo: offered, starttls: "220 2.0.0 go ahead"}, "STARTTLS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := startScriptedHost(t, tc.host)
			r := &SMTPRelay{Addr: h.addr, Hostname: "gw.test", TLS: tc.relayTLS, User: "gw", Password: password, Timeout: 5 * time.Second}
			defer r.Close()
			errs := r.Deliver(context.Background(), Delivery{From: "a@org.test", Rcpts: []string{"b@ext.test"}, Data: []byte("Subject: x\r\n\r\nhi\r\n")})
			if errs[0] == nil || !strings.Contains(errs[0].Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", errs[0], tc.wantErr)
			}
			if IsPermanent(errs[0]) {
				t.Fatalf("must be deferred (retried), not bounced: %v", errs[0])
			}
			if strings.Contains(errs[0].Error(), password) {
				t.Fatal("the password is in the error")
			}
			plain := base64.StdEncoding.EncodeToString([]byte("\x00gw\x00" + password))
			for _, line := range h.transcript() {
				verb := strings.ToUpper(strings.Fields(line + " x")[0])
				if verb == "AUTH" || verb == "MAIL" || strings.Contains(line, plain) || strings.Contains(line, password) {
					t.Fatalf("sent without TLS: %q (transcript %q)", line, h.transcript())
				}
			}
		})
	}
}

func TestSMTPRelayPerRecipientAnswers(t *testing.T) {
	sink := testpeer.StartSink(t, testpeer.SinkOptions{})
	sink.Fail(550, "no such user")
	errs := (&SMTPRelay{Addr: sink.Addr, TLS: "none"}).Deliver(context.Background(), Delivery{From: "a@org.test", Rcpts: []string{"x@ext.test"}, Data: []byte("\r\n")})
	if !IsPermanent(errs[0]) || !strings.Contains(describe(errs[0]), "550") {
		t.Fatalf("550 not permanent: %v", errs[0])
	}
	sink.Fail(451, "greylisted")
	errs = (&SMTPRelay{Addr: sink.Addr, TLS: "none"}).Deliver(context.Background(), Delivery{From: "a@org.test", Rcpts: []string{"x@ext.test"}, Data: []byte("\r\n")})
	if errs[0] == nil || IsPermanent(errs[0]) {
		t.Fatalf("451 must be temporary: %v", errs[0])
	}
}

func TestDirRelay(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	errs := DirRelay{Dir: dir}.Deliver(context.Background(), Delivery{QueueID: "abc", Index: 2, From: "a@org.test", Rcpts: []string{"b@x.test", "c@x.test"}, Data: []byte("Subject: x\r\n\r\nhi\r\n")})
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	b, err := os.ReadFile(filepath.Join(dir, "abc-2.eml"))
	if err != nil || string(b) != "Return-Path: <a@org.test>\r\nX-Sealgate-Rcpt-To: b@x.test, c@x.test\r\nSubject: x\r\n\r\nhi\r\n" {
		t.Fatalf("%q %v", b, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temp files left: %v", ents)
	}
}

// TestSMTPRelayPolicyRequiresTLS: a copy whose rule says tls = "required"
// goes only over TLS to a smart host whose certificate is verified, whatever
// relay.tls says; an unverified certificate could be a man in the middle's.
func TestSMTPRelayPolicyRequiresTLS(t *testing.T) {
	serverTLS := selfSigned(t) // names gw.test
	plain := testpeer.StartSink(t, testpeer.SinkOptions{})
	tlsSink := testpeer.StartSink(t, testpeer.SinkOptions{TLS: serverTLS})
	tests := []struct {
		name     string
		sink     *testpeer.Sink
		relayTLS string
		conf     *tls.Config
		wantErr  string // "" delivered over TLS
	}{
		{"plain hop", plain, "none", nil, "does not offer STARTTLS and a policy rule requires TLS"},
		{"untrusted certificate, relay.tls opportunistic", tlsSink, "opportunistic", &tls.Config{ServerName: "gw.test"}, "relay.ca_files"},
		{"untrusted certificate, relay.tls none", tlsSink, "none", &tls.Config{ServerName: "gw.test"}, "a policy rule requires TLS"},
		{"trusted certificate for another name", tlsSink, "opportunistic", trusting(t, serverTLS, "other.test"), "relay.tls_server_name"},
		{"trusted certificate", tlsSink, "none", trusting(t, serverTLS, "gw.test"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(tc.sink.Messages())
			r := &SMTPRelay{Addr: tc.sink.Addr, TLS: tc.relayTLS, TLSConf: tc.conf}
			defer r.Close()
			errs := r.Deliver(context.Background(), Delivery{From: "a@org.test", Rcpts: []string{"b@ext.test"}, Data: []byte("\r\n"), RequireTLS: true})
			msgs := tc.sink.Messages()
			if tc.wantErr == "" {
				if errs[0] != nil {
					t.Fatal(errs[0])
				}
				if len(msgs) != before+1 || !msgs[len(msgs)-1].TLS {
					t.Fatal("not delivered over TLS")
				}
				return
			}
			if errs[0] == nil || IsPermanent(errs[0]) || !strings.Contains(errs[0].Error(), tc.wantErr) {
				t.Fatalf("err = %v, want a temporary failure with %q", errs[0], tc.wantErr)
			}
			if len(msgs) != before {
				t.Fatal("delivered although refused")
			}
		})
	}
}
