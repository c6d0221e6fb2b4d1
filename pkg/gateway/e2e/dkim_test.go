package e2e

// DKIM after encryption (issue #15): `sealgate serve` signs what leaves,
// after S/MIME signing, S/MIME encryption and the PDF carrier, over the
// bytes the next hop receives. The keys come from `sealgate dkim keygen`,
// their records from `sealgate dkim record` are served by a real unbound,
// and OpenDKIM's opendkim-testmsg (resolving through that unbound) and
// go-msgauth decide.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"github.com/sealgate/sealgate/internal/testpeer"
)

const dkimRules = `[[policy.rules]]
name = "signed-only"
recipient_domain = ["signed.test"]
sign = "always"
encrypt = "none"

[[policy.rules]]
name = "default"
sign = "always"
encrypt = "smime-or-pdf"
on_failure = "hold"
`

// dkimGateway is a gateway with [dkim] for example.org, its key made by
// `sealgate dkim keygen`, and a user erin@unlisted.test whose domain is
// not signed for.
func dkimGateway(t *testing.T, algorithm, selector string, partners *testpeer.PKI) (*gw, []string) {
	t.Helper()
	g := newGatewayRules(t, dkimRules, fmt.Sprintf("\n[trust]\nca_files = [%q, %q]\nsystem_roots = false\n\n[dkim]\nselector = %q\ndomains = [\"example.org\"]\n",
		partners.RootFile, partners.InterFile, selector))
	g.editConfig("\n[policy]\n", "\n[[users.static]]\nemail = \"erin@unlisted.test\"\nname = \"Erin Unlisted\"\ngroups = [\"smime-users\"]\n\n[policy]\n")
	g.cli("dkim", "keygen", "--algorithm", algorithm)
	var rec struct {
		Algorithm string
		Records   []struct{ Domain, Zone string }
	}
	if err := json.Unmarshal(g.cli("dkim", "record", "--output", "json"), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Algorithm != algorithm || len(rec.Records) != 1 || rec.Records[0].Domain != "example.org" {
		t.Fatalf("dkim record: %+v", rec)
	}
	return g, []string{rec.Records[0].Zone}
}

// dkimVerifiers: OpenDKIM and go-msgauth, both asking one unbound.
type dkimVerifiers struct {
	unbound  *testpeer.Unbound
	opendkim *testpeer.OpenDKIM
}

func startDKIMVerifiers(t *testing.T, records []string) *dkimVerifiers {
	u := testpeer.StartUnbound(t, testpeer.UnboundConfig{LocalData: records})
	return &dkimVerifiers{unbound: u, opendkim: testpeer.StartOpenDKIM(t, u.Addr)}
}

func (v *dkimVerifiers) lookupTXT(name string) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	in, _, err := (&dns.Client{Net: "tcp"}).ExchangeContext(ctx, m, v.unbound.Addr)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range in.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	return out, nil
}

// check fails the test unless msg carries exactly one DKIM signature for
// example.org that both verifiers accept.
func (v *dkimVerifiers) check(t *testing.T, what string, msg []byte) {
	t.Helper()
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(msg), &msgdkim.VerifyOptions{LookupTXT: v.lookupTXT})
	if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "example.org" {
		t.Errorf("%s: go-msgauth: %v %+v\n%s", what, err, vs, clip(msg))
	}
	if r := v.opendkim.Verify(t, msg); r.ExitCode != 0 {
		t.Errorf("%s: opendkim-testmsg: exit %d %s\n%s", what, r.ExitCode, r.Stderr, clip(msg))
	}
}

// rejects fails the test if either verifier accepts msg.
func (v *dkimVerifiers) rejects(t *testing.T, what string, msg []byte) {
	t.Helper()
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(msg), &msgdkim.VerifyOptions{LookupTXT: v.lookupTXT})
	if err == nil && len(vs) > 0 && vs[0].Err == nil {
		t.Errorf("%s: go-msgauth accepts it", what)
	}
	if r := v.opendkim.Verify(t, msg); r.ExitCode == 0 {
		t.Errorf("%s: opendkim-testmsg accepts it", what)
	}
}

func hasDKIMSignature(msg []byte) bool {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	return bytes.Contains(bytes.ToLower(msg[:end]), []byte("dkim-signature:"))
}

func TestDKIMAfterEncryption(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"openssl", "opendkim-testmsg", "unbound"} {
		testpeer.Require(t, p)
	}
	partners := testpeer.NewPKI(t)
	carol := partners.Issue(t, "carol@partner.test", testpeer.IssueOptions{})

	// RSA, through the smart host: signed, encrypted, PDF, unlisted
	// domain, a retry.
	t.Run("rsa to the smart host", func(t *testing.T) {
		g, records := dkimGateway(t, "rsa", "sg2026", partners)
		g.cli("directory", "import", carol.CertFile)
		v := startDKIMVerifiers(t, records)
		sink := testpeer.StartSink(t, testpeer.SinkOptions{})
		g.editConfig(`mode = "dir"`, fmt.Sprintf("mode = \"smarthost\"\nsmarthost = %q\ntls = \"none\"\nretry_backoff = \"500ms\"", sink.Addr))
		g.start()
		byRcpt := func(rcpt string) []byte {
			t.Helper()
			var got []byte
			waitUntil(t, 60*time.Second, func() bool {
				for _, m := range sink.Messages() {
					if m.HasRcpt(rcpt) {
						got = m.Data
						return true
					}
				}
				return false
			}, func() string { return rcpt + " never reached the sink:\n" + tail(g.logText(), 20) })
			return got
		}
		send := func(from, to, subject, body string) {
			t.Helper()
			if r := submit(t, g.addr, submission{From: from, To: []string{to}, Data: rfc5322(fields(from, to, subject), body)}); r.Code != 250 {
				t.Fatalf("submission to %s: %v", to, r)
			}
		}
		send(alice, "bob@signed.test", "signed only", "signed body")
		send(alice, "carol@partner.test", "encrypted", "marker-dkim-encrypted")
		send(alice, "dave@nocert.test", "pdf [pw:Dkim-Pdf-Pass-2026]", "marker-dkim-pdf")
		send("erin@unlisted.test", "bob@signed.test", "unlisted domain", "erin's body")

		signed := byRcpt("bob@signed.test")
		if !bytes.Contains(signed, []byte("multipart/signed")) {
			t.Fatalf("not S/MIME-signed:\n%s", clip(signed))
		}
		v.check(t, "S/MIME-signed", signed)

		enc := byRcpt("carol@partner.test")
		if leaf(enc, "application/pkcs7-mime") == nil {
			t.Fatalf("not S/MIME-encrypted:\n%s", clip(enc))
		}
		v.check(t, "S/MIME-encrypted", enc)
		if r := cmsDecrypt(t, enc, carol); r.ExitCode != 0 || !bytes.Contains(r.Stdout, []byte("marker-dkim-encrypted")) {
			t.Fatalf("the signed envelope no longer decrypts: %s", r.Stderr)
		}

		pdf := byRcpt("dave@nocert.test")
		if leaf(pdf, "application/pdf") == nil {
			t.Fatalf("no PDF carrier:\n%s", clip(pdf))
		}
		v.check(t, "PDF carrier", pdf)

		// The attacker relays our signed mail with a second author, or
		// with the content changed: neither verifies.
		v.rejects(t, "second From", append([]byte("From: ceo@example.org\r\n"), enc...))
		v.rejects(t, "body changed", bytes.Replace(pdf, []byte("Content-Type: application/pdf"), []byte("Content-Type: application/x-pdf"), 1))

		waitUntil(t, 30*time.Second, func() bool {
			n := 0
			for _, m := range sink.Messages() {
				if m.HasRcpt("bob@signed.test") {
					n++
				}
			}
			return n == 2
		}, func() string { return "erin's message did not arrive:\n" + tail(g.logText(), 20) })
		for _, m := range sink.Messages() {
			if m.HasRcpt("bob@signed.test") && bytes.Contains(m.Data, []byte("From: erin@unlisted.test")) {
				if hasDKIMSignature(m.Data) {
					t.Errorf("signed for a From domain not in dkim.domains:\n%s", clip(m.Data))
				}
				if !bytes.Contains(m.Data, []byte("multipart/signed")) {
					t.Errorf("erin's message lost its S/MIME signature")
				}
			}
		}

		// A temporary failure, then the retry: what arrives verifies.
		sink.Fail(451, "try again later")
		send(alice, "carol@partner.test", "retried", "marker-dkim-retry")
		waitUntil(t, 30*time.Second, func() bool { return strings.Contains(g.logText(), `"outcome":"deferred"`) },
			func() string { return "no deferral:\n" + tail(g.logText(), 20) })
		sink.Fail(0, "")
		var retried []byte
		waitUntil(t, 30*time.Second, func() bool {
			for _, m := range sink.Messages() {
				if m.HasRcpt("carol@partner.test") && bytes.Contains(m.Data, []byte("Subject: retried")) {
					retried = m.Data
					return true
				}
			}
			return false
		}, func() string { return "the retry did not arrive:\n" + tail(g.logText(), 20) })
		v.check(t, "retried", retried)
	})

	// Ed25519 (RFC 8463), into the outbox directory.
	t.Run("ed25519 to the outbox", func(t *testing.T) {
		g, records := dkimGateway(t, "ed25519", "ed2026", partners)
		g.cli("directory", "import", carol.CertFile)
		v := startDKIMVerifiers(t, records)
		g.start()
		for _, m := range []struct{ to, subject string }{
			{"carol@partner.test", "encrypted"},
			{"dave@nocert.test", "pdf [pw:Dkim-Pdf-Pass-2026]"},
		} {
			if r := submit(t, g.addr, submission{From: alice, To: []string{m.to}, Data: rfc5322(fields(alice, m.to, m.subject), "body")}); r.Code != 250 {
				t.Fatalf("submission: %v", r)
			}
		}
		enc := g.waitDelivered(t, "carol@partner.test")
		if !bytes.Contains(enc.Msg, []byte("a=ed25519-sha256")) {
			t.Fatalf("no Ed25519 signature:\n%s", clip(enc.Msg))
		}
		v.check(t, "S/MIME-encrypted (Ed25519)", enc.Msg)
		v.check(t, "PDF carrier (Ed25519)", g.waitDelivered(t, "dave@nocert.test").Msg)
	})
}

// TestDKIMThroughMX: with relay.mode = "mx" the copy the recipient's MX
// host receives (here a PDF carrier, found through MX records at the same
// unbound that serves the DKIM key) carries our signature, and OpenDKIM
// and go-msgauth verify it there: the signer wraps the MX relay too.
func TestDKIMThroughMX(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"openssl", "opendkim-testmsg", "unbound"} {
		testpeer.Require(t, p)
	}
	partners := testpeer.NewPKI(t)
	g, records := dkimGateway(t, "ed25519", "mx2026", partners)
	n := testpeer.StartMXHosts(t, testpeer.MXHostSpec{Name: "mx.nocert.test", Kind: testpeer.MXValid})
	v := startDKIMVerifiers(t, append(records,
		"nocert.test. MX 10 mx.nocert.test.", "mx.nocert.test. A "+n.Hosts["mx.nocert.test"].IP))
	g.editConfig("[relay]\nmode = \"dir\"\n", fmt.Sprintf("[relay]\nmode = \"mx\"\nresolver = %q\nmx_port = %d\nca_files = [%q]\n", v.unbound.Addr, n.Port, n.CAFile))
	g.start()
	if r := submit(t, g.addr, submission{From: alice, To: []string{"dave@nocert.test"},
		Data: rfc5322(fields(alice, "dave@nocert.test", "pdf [pw:Dkim-Mx-Pass-2026]"), "marker-dkim-mx")}); r.Code != 250 {
		t.Fatalf("submission: %v", r)
	}
	got := n.Hosts["mx.nocert.test"].WaitMessages(t, 1, 60*time.Second)
	if !got[0].TLS || !got[0].HasRcpt("dave@nocert.test") {
		t.Fatalf("the MX host got %+v", got[0])
	}
	if bytes.Contains(got[0].Data, []byte("marker-dkim-mx")) || bytes.Contains(got[0].Data, []byte("Dkim-Mx-Pass-2026")) {
		t.Fatal("body or password in the clear at the MX host")
	}
	v.check(t, "PDF carrier through mx", got[0].Data)
}
