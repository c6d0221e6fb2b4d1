package gateway

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
)

func TestSMTPRelay(t *testing.T) {
	tlsSink := testpeer.StartSink(t, testpeer.SinkOptions{TLS: selfSigned(t), Users: map[string]string{"gw": "pw"}})
	plainSink := testpeer.StartSink(t, testpeer.SinkOptions{})
	tests := []struct {
		name    string
		relay   *SMTPRelay
		sink    *testpeer.Sink
		wantErr string
		wantTLS bool
	}{
		{"opportunistic uses STARTTLS and AUTH", &SMTPRelay{Addr: tlsSink.Addr, TLS: "opportunistic", User: "gw", Password: "pw"}, tlsSink, "", true},
		{"opportunistic without STARTTLS sends plain", &SMTPRelay{Addr: plainSink.Addr, TLS: "opportunistic"}, plainSink, "", false},
		{"required refuses a host without STARTTLS", &SMTPRelay{Addr: plainSink.Addr, TLS: "required"}, plainSink, "does not offer STARTTLS", false},
		{"required verifies the certificate", &SMTPRelay{Addr: tlsSink.Addr, TLS: "required", User: "gw", Password: "pw"}, tlsSink, "certificate", false},
		{"required with a trusted certificate", &SMTPRelay{Addr: tlsSink.Addr, TLS: "required", User: "gw", Password: "pw",
			TLSConf: &tls.Config{InsecureSkipVerify: true}}, tlsSink, "", true},
		{"wrong password", &SMTPRelay{Addr: tlsSink.Addr, TLS: "opportunistic", User: "gw", Password: "bad"}, tlsSink, "AUTH", false},
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

func TestSMTPRelayPolicyRequiresTLS(t *testing.T) {
	plain := testpeer.StartSink(t, testpeer.SinkOptions{})
	tlsSink := testpeer.StartSink(t, testpeer.SinkOptions{TLS: selfSigned(t)})
	d := Delivery{From: "a@org.test", Rcpts: []string{"b@ext.test"}, Data: []byte("\r\n"), RequireTLS: true}
	if errs := (&SMTPRelay{Addr: plain.Addr, TLS: "none"}).Deliver(context.Background(), d); errs[0] == nil || IsPermanent(errs[0]) {
		t.Fatalf("policy TLS over a plain hop: %v", errs[0])
	}
	if len(plain.Messages()) != 0 {
		t.Fatal("sent without TLS")
	}
	if errs := (&SMTPRelay{Addr: tlsSink.Addr, TLS: "none"}).Deliver(context.Background(), d); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if m := tlsSink.Messages(); len(m) != 1 || !m[0].TLS {
		t.Fatal("not delivered over TLS")
	}
}
