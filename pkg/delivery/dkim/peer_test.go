package dkim

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"strings"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// dnsPeer serves the signing keys' TXT records from a real unbound, and
// verifies with OpenDKIM (through that unbound) and with go-msgauth
// (asking the same unbound).
type dnsPeer struct {
	unbound *testpeer.Unbound
	dkim    *testpeer.OpenDKIM
}

func startDNSPeer(t *testing.T, keys map[string]crypto.Signer) *dnsPeer {
	t.Helper()
	var data []string
	for name, k := range keys {
		rec, err := Record(strings.SplitN(name, "._domainkey.", 2)[0], strings.SplitN(name, "._domainkey.", 2)[1], k)
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, rec)
	}
	u := testpeer.StartUnbound(t, testpeer.UnboundConfig{LocalData: data})
	return &dnsPeer{unbound: u, dkim: testpeer.StartOpenDKIM(t, u.Addr)}
}

// lookupTXT asks the unbound, as a receiver's resolver would.
func (p *dnsPeer) lookupTXT(name string) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	m.SetEdns0(4096, false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	in, _, err := (&dns.Client{Net: "tcp"}).ExchangeContext(ctx, m, p.unbound.Addr)
	if err != nil {
		return nil, fmt.Errorf("TXT %s: %w", name, err)
	}
	var out []string
	for _, rr := range in.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("TXT %s: no answer (rcode %d)", name, in.Rcode)
	}
	return out, nil
}

func (p *dnsPeer) goVerify(t *testing.T, msg []byte) error {
	t.Helper()
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(msg), &msgdkim.VerifyOptions{LookupTXT: p.lookupTXT})
	if err != nil {
		return err
	}
	if len(vs) != 1 {
		return fmt.Errorf("%d signatures", len(vs))
	}
	return vs[0].Err
}

func TestOpenDKIMVerifies(t *testing.T) {
	rsaK, edK := rsaKey(t), edKey(t)
	p := startDNSPeer(t, map[string]crypto.Signer{
		"rsa._domainkey.example.org": rsaK,
		"ed._domainkey.example.org":  edK,
	})
	for _, tc := range []struct {
		name, selector string
		key            crypto.Signer
		msg            string
	}{
		{"rsa plain", "rsa", rsaK, plainMsg},
		{"rsa enveloped", "rsa", rsaK, envelopedMsg},
		{"ed25519 plain", "ed", edK, plainMsg},
		{"ed25519 enveloped", "ed", edK, envelopedMsg},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Config{Selector: tc.selector, Domains: []string{"example.org"}, Key: tc.key})
			if err != nil {
				t.Fatal(err)
			}
			out, res, err := s.Sign([]byte(tc.msg))
			if err != nil || !res.Signed {
				t.Fatalf("%+v %v", res, err)
			}
			before := p.dkim.Queries()
			if r := p.dkim.Verify(t, out); r.ExitCode != 0 {
				t.Fatalf("opendkim-testmsg: exit %d\n%s%s", r.ExitCode, r.Stdout, r.Stderr)
			}
			if p.dkim.Queries() == before {
				t.Fatal("opendkim-testmsg verified without asking DNS")
			}
			if err := p.goVerify(t, out); err != nil {
				t.Fatalf("go-msgauth: %v", err)
			}
			// The attacker's changes: each must fail at both verifiers.
			// OpenDKIM refuses two From fields before it checks any
			// signature (RFC 5322 syntax); an added Cc shows the
			// oversigning at the signature itself.
			for _, bad := range []struct{ name, msg, opendkim string }{
				{"second From added", "From: ceo@example.org\r\n" + string(out), "Syntax error"},
				{"Cc added", "Cc: eve@evil.test\r\n" + string(out), "Bad signature"},
				{"body altered", strings.Replace(strings.Replace(string(out), "AAAA", "AAAB", 1), "see you.", "send money", 1), "Bad signature"},
			} {
				if r := p.dkim.Verify(t, []byte(bad.msg)); r.ExitCode == 0 || !strings.Contains(string(r.Stderr), bad.opendkim) {
					t.Errorf("%s: opendkim-testmsg exit %d %s, want a failure saying %q", bad.name, r.ExitCode, r.Stderr, bad.opendkim)
				}
				if err := p.goVerify(t, []byte(bad.msg)); err == nil {
					t.Errorf("%s: go-msgauth accepts it", bad.name)
				}
			}
		})
	}
	t.Run("a key not in DNS fails", func(t *testing.T) {
		s, _ := New(Config{Selector: "absent", Domains: []string{"example.org"}, Key: rsaK})
		out, _, _ := s.Sign([]byte(plainMsg))
		if r := p.dkim.Verify(t, out); r.ExitCode == 0 {
			t.Fatal("opendkim-testmsg verified a signature whose key is not published")
		}
	})
}
