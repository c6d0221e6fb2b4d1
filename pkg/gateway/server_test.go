package gateway

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"
)

func selfSigned(t testing.TB) *tls.Config {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gw.test"},
		DNSNames: []string{"gw.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func startListener(t *testing.T, cfg ListenerConfig, q *Queue) string {
	t.Helper()
	if cfg.Hostname == "" {
		cfg.Hostname = "gw.test"
	}
	if cfg.AllowedNetworks == nil {
		cfg.AllowedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	cfg.Log = q.Log
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(cfg, q)
	go l.Serve(ln)
	t.Cleanup(func() { l.Shutdown(context.Background()) })
	return ln.Addr().String()
}

// converse sends lines and returns the server's replies, one per command
// (multi-line replies joined).
func converse(t *testing.T, addr string, cmds ...string) []string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	read := func() string {
		var out []string
		for {
			line, err := r.ReadString('\n')
			out = append(out, strings.TrimRight(line, "\r\n"))
			if err != nil || len(line) < 4 || line[3] != '-' {
				return strings.Join(out, "|")
			}
		}
	}
	replies := []string{read()}
	for _, cmd := range cmds {
		if _, err := c.Write([]byte(cmd)); err != nil {
			break
		}
		if strings.HasSuffix(cmd, "\r\n") || strings.HasPrefix(cmd, "BDAT") {
			replies = append(replies, read())
		}
	}
	return replies
}

func TestListenerBDATAndCapabilities(t *testing.T) {
	relay := &recordingRelay{}
	q, _ := testQueue(t, passAll{}, relay)
	runQueue(t, q)
	addr := startListener(t, ListenerConfig{TLS: selfSigned(t), MaxMessageBytes: 1 << 20}, q)
	chunk1 := "Subject: bdat\r\n\r\nfirst "
	chunk2 := "second\r\n"
	rep := converse(t, addr, "EHLO client.test\r\n", "MAIL FROM:<a@org.test> RET=HDRS ENVID=e1\r\n",
		"RCPT TO:<b@ext.test> NOTIFY=FAILURE\r\n",
		fmt.Sprintf("BDAT %d\r\n%s", len(chunk1), chunk1), fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk2), chunk2), "QUIT\r\n")
	for _, cap := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING", "STARTTLS", "SMTPUTF8", "DSN", "SIZE 1048576"} {
		if !strings.Contains(rep[1], cap) {
			t.Errorf("EHLO lacks %s: %s", cap, rep[1])
		}
	}
	if strings.Contains(rep[1], "AUTH") {
		t.Error("AUTH offered before TLS")
	}
	if !strings.HasPrefix(rep[5], "250 2.0.0 OK: queued as ") {
		t.Fatalf("BDAT LAST: %v", rep)
	}
	waitFor(t, "delivery", func() bool { return len(relay.deliveries()) == 1 })
	got := string(relay.deliveries()[0].Data)
	if !strings.HasPrefix(got, "Received: from client.test ([127.0.0.1])\r\n\tby gw.test (sealgate) with ESMTP id ") ||
		!strings.HasSuffix(got, "Subject: bdat\r\n\r\nfirst second\r\n") {
		t.Fatalf("delivered:\n%q", got)
	}
}

func TestListenerRefusals(t *testing.T) {
	q, _ := testQueue(t, passAll{}, &recordingRelay{})
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	open := startListener(t, ListenerConfig{TLS: selfSigned(t)}, q)
	closed := startListener(t, ListenerConfig{AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, q)
	authed := startListener(t, ListenerConfig{TLS: selfSigned(t), Accounts: map[string]Account{"exchange": {Hash: hash, Role: RoleRelay}}}, q)
	tests := []struct {
		name string
		addr string
		cmds []string
		want string // prefix of the last reply
	}{
		{"outside allowed_networks", closed, nil, "554 5.7.1"},
		{"bare LF smuggling", open, []string{"EHLO c\r\n", "MAIL FROM:<a@org.test>\r\n", "RCPT TO:<b@ext.test>\r\n", "DATA\r\n",
			"Subject: x\r\n\r\nhi\n.\nMAIL FROM:<evil@x>\r\n.\r\n"}, "554 5.6.0 bare LF"},
		{"NUL", open, []string{"EHLO c\r\n", "MAIL FROM:<a@org.test>\r\n", "RCPT TO:<b@ext.test>\r\n", "DATA\r\n",
			"Subject: x\r\n\r\nh\x00i\r\n.\r\n"}, "554 5.6.0 NUL"},
		{"AUTH required", authed, []string{"EHLO c\r\n", "MAIL FROM:<a@org.test>\r\n"}, "530 5.7.0"},
		{"AUTH refused without TLS", authed, []string{"EHLO c\r\n", "AUTH PLAIN AGV4Y2hhbmdlAHB3\r\n"}, "523 5.7.10"},
		{"relative recipient", open, []string{"EHLO c\r\n", "MAIL FROM:<a@org.test>\r\n", "RCPT TO:<postmaster>\r\n"}, "501 5.5.2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep := converse(t, tc.addr, tc.cmds...)
			if last := rep[len(rep)-1]; !strings.HasPrefix(last, tc.want) {
				t.Fatalf("last reply %q, want %q (all: %v)", last, tc.want, rep)
			}
		})
	}
	ids, _ := q.Spool.IDs()
	if len(ids) != 0 {
		t.Fatalf("refused messages were spooled: %v", ids)
	}
}

func TestListenerAuthOverTLS(t *testing.T) {
	relay := &recordingRelay{}
	q, _ := testQueue(t, passAll{}, relay)
	runQueue(t, q)
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	addr := startListener(t, ListenerConfig{TLS: selfSigned(t), Accounts: map[string]Account{"exchange": {Hash: hash, Role: RoleRelay}}}, q)
	for _, tc := range []struct {
		name string
		auth sasl.Client
		ok   bool
	}{
		{"PLAIN good", sasl.NewPlainClient("", "exchange", "s3cret"), true},
		{"PLAIN bad", sasl.NewPlainClient("", "exchange", "nope"), false},
		{"LOGIN good", sasl.NewLoginClient("exchange", "s3cret"), true},
		{"unknown user", sasl.NewPlainClient("", "mallory", "s3cret"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := smtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Auth(tc.auth)
			if (err == nil) != tc.ok {
				t.Fatalf("auth err = %v, want ok=%v", err, tc.ok)
			}
			if !tc.ok {
				return
			}
			if err := c.SendMail("a@org.test", []string{"b@ext.test"}, strings.NewReader("Subject: t\r\n\r\nx\r\n")); err != nil {
				t.Fatal(err)
			}
		})
	}
	waitFor(t, "two deliveries", func() bool { return len(relay.deliveries()) == 2 })
	if !strings.Contains(string(relay.deliveries()[0].Data), "with ESMTPSA id") {
		t.Error("Received: does not record TLS+AUTH")
	}
}

func TestListenerConnectionLimit(t *testing.T) {
	q, _ := testQueue(t, passAll{}, &recordingRelay{})
	addr := startListener(t, ListenerConfig{MaxConnections: 1}, q)
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	greeting, _ := bufio.NewReader(first).ReadString('\n')
	if !strings.HasPrefix(greeting, "220 ") {
		t.Fatalf("first connection: %q", greeting)
	}
	if rep := converse(t, addr); !strings.HasPrefix(rep[0], "421 4.7.0") {
		t.Fatalf("second connection: %q", rep[0])
	}
	first.Close()
	waitFor(t, "slot released", func() bool {
		return strings.HasPrefix(converse(t, addr, "QUIT\r\n")[0], "220 ")
	})
}
