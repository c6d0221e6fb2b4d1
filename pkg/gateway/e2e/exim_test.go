package e2e

import (
	"bytes"
	"fmt"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// TestEximSendsBDATThroughSealgate: Exim, a real MTA that uses CHUNKING
// when offered (as Exchange does), relays over STARTTLS with AUTH through
// sealgate; the S/MIME result decrypts and verifies with openssl. A
// message larger than exim's write buffer checks that several BDAT chunks
// make one message.
func TestEximSendsBDATThroughSealgate(t *testing.T) {
	testpeer.RequireExim(t)
	g, carol := newRelayGateway(t)
	g.start()
	ex := testpeer.NewExim(t, testpeer.EximOptions{RelayHost: g.addr, TLS: true, User: relayUser, Password: relayPassword})

	// A line of 76 characters, as base64 bodies have.
	line := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz", 2) + "ABCDEFGH\n"
	tests := []struct {
		name       string
		subject    string
		body       string
		multiChunk bool
		internal   bool // bob@example.org in the same transaction: his copy passes untouched
	}{
		{name: "small message, one BDAT LAST", subject: "via exim", body: "the exim secret\n"},
		{name: "partner and colleague in one transaction", subject: "shared via exim", body: "the shared exim secret\n", internal: true},
		{name: "2 MB message, several chunks", subject: "large via exim", body: "the large exim secret\n" + strings.Repeat(line, 2<<20/len(line)), multiChunk: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rcpts := []string{"carol@partner.test"}
			if tc.internal {
				rcpts = append(rcpts, "bob@example.org")
			}
			msg := "From: Alice <alice@example.org>\nTo: " + strings.Join(rcpts, ", ") + "\nSubject: " + tc.subject + "\n\n" + tc.body
			d := ex.Send(t, "alice@example.org", rcpts, []byte(msg))
			if len(d.BDAT) == 0 || !strings.HasSuffix(d.BDAT[len(d.BDAT)-1], " LAST") {
				t.Fatalf("exim did not send BDAT ... LAST; dialogue:\n%s", d.Dialogue)
			}
			if d.DATA {
				t.Fatalf("exim fell back to DATA:\n%s", d.Dialogue)
			}
			if n := strings.Count(d.Dialogue, "> RCPT TO:"); n != len(rcpts) {
				t.Fatalf("want one transaction with %d RCPT, exim sent %d:\n%s", len(rcpts), n, d.Dialogue)
			}
			if tc.multiChunk && len(d.BDAT) < 2 {
				t.Fatalf("want several BDAT chunks, exim sent %v", d.BDAT)
			}
			t.Logf("exim sent %d BDAT: %s ... %s", len(d.BDAT), d.BDAT[0], d.BDAT[len(d.BDAT)-1])

			if tc.internal {
				b := findOutbox(t, g, tc.subject, "bob@example.org")
				if !bytes.Contains(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte(tc.body)) || bytes.Contains(b, []byte("pkcs7")) {
					t.Errorf("internal copy changed:\n%s", b)
				}
			}
			enc := findOutbox(t, g, tc.subject, "carol@partner.test")
			if !bytes.Contains(enc, []byte("application/pkcs7-mime")) {
				t.Fatalf("not S/MIME:\n%s", enc[:min(len(enc), 800)])
			}
			// sealgate's trace field: exim used TLS and AUTH.
			if !bytes.Contains(enc, []byte("(sealgate) with ESMTPSA id")) {
				t.Errorf("no ESMTPSA trace from sealgate in:\n%s", enc[:min(len(enc), 800)])
			}
			if bytes.Contains(enc, []byte("exim secret")) {
				t.Fatal("body readable in the encrypted mail")
			}
			f := filepath.Join(t.TempDir(), "enc.eml")
			os.WriteFile(f, stripEnvelopeFields(enc), 0o600)
			dec := testpeer.MustRun(t, nil, "openssl", "cms", "-decrypt", "-in", f, "-recip", carol.CertFile, "-inkey", carol.KeyFile)
			root := filepath.Join(g.dir, "data", "ca", "root.crt")
			res := testpeer.Run(t, dec, "openssl", "cms", "-verify", "-CAfile", root, "-purpose", "smimesign")
			if res.ExitCode != 0 {
				t.Fatalf("openssl cms -verify: exit %d\n%s", res.ExitCode, res.Stderr)
			}
			plain := bytes.ReplaceAll(res.Stdout, []byte("\r\n"), []byte("\n"))
			if !bytes.Contains(plain, []byte(tc.body)) {
				t.Fatalf("verified content lacks the body exim sent (%d bytes out, want %d body bytes)", len(plain), len(tc.body))
			}
		})
	}
}

// The credentials the sending MTA (Exchange's role) relays with.
const relayUser, relayPassword = "exchange", "relay-pw"

// newRelayGateway configures (without starting) a gateway in the role the
// MTA tests need: AUTH required from relayUser, and a partner recipient,
// carol@partner.test, whose certificate is in the directory.
func newRelayGateway(t *testing.T) (*gw, *testpeer.Identity) {
	t.Helper()
	testpeer.Require(t, "openssl")
	partners := testpeer.NewPKI(t)
	carol := partners.Issue(t, "carol@partner.test", testpeer.IssueOptions{})
	g := newGateway(t, fmt.Sprintf("\n[trust]\nca_files = [%q, %q]\nsystem_roots = false\n", partners.RootFile, partners.InterFile))
	g.requireAuth(relayUser, relayPassword)
	g.cli("directory", "import", carol.CertFile)
	return g, carol
}

// requireAuth makes the gateway require AUTH from user with password (a
// bcrypt users file next to the config; user is the relay account).
func (g *gw) requireAuth(user, password string) {
	g.t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		g.t.Fatal(err)
	}
	users := filepath.Join(g.dir, "users")
	if err := os.WriteFile(users, []byte(user+":"+string(hash)+":relay\n"), 0o600); err != nil {
		g.t.Fatal(err)
	}
	g.editConfig(`allowed_networks = ["127.0.0.0/8"]`, fmt.Sprintf("allowed_networks = [\"127.0.0.0/8\"]\nauth_users_file = %q", users))
}

// editConfig replaces the first old in the gateway's config with new.
func (g *gw) editConfig(old, new string) {
	g.t.Helper()
	cfg, err := os.ReadFile(g.config)
	if err != nil {
		g.t.Fatal(err)
	}
	if !bytes.Contains(cfg, []byte(old)) {
		g.t.Fatalf("config lacks %q", old)
	}
	if err := os.WriteFile(g.config, bytes.Replace(cfg, []byte(old), []byte(new), 1), 0o600); err != nil {
		g.t.Fatal(err)
	}
}

// findOutbox waits for the file delivered to rcpt whose message has
// subject (the outer header: sealgate keeps Subject on the S/MIME envelope).
func findOutbox(t *testing.T, g *gw, subject, rcpt string) []byte {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(g.dir, "outbox", "*.eml"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			m, err := mail.ReadMessage(bytes.NewReader(b))
			if err == nil && m.Header.Get("Subject") == subject && slices.Contains(strings.Split(m.Header.Get("X-Sealgate-Rcpt-To"), ", "), rcpt) {
				return b
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message with subject %q delivered to %s; log:\n%s", subject, rcpt, tail(g.logText(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
