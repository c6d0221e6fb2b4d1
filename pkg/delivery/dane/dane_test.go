package dane_test

import (
	"crypto/x509"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/delivery/dane"
)

// certs are made by openssl, not by our code.
type certs struct {
	pki, evil                 *testpeer.PKI
	leaf, rsaLeaf, wild, cn   *testpeer.Identity
	self, evilLeaf, otherLeaf *testpeer.Identity
}

// openssl makes the hierarchy with the test's temp dirs (the files go
// with the test).
func openssl(t *testing.T) *certs {
	t.Helper()
	testpeer.Require(t, "openssl")
	c := &certs{pki: testpeer.NewPKI(t), evil: testpeer.NewPKI(t)}
	c.leaf = c.pki.IssueHost(t, testpeer.HostCertOptions{Names: []string{"mx1.example.test", "mail.example.test"}, Days: 30})
	c.rsaLeaf = c.pki.IssueHost(t, testpeer.HostCertOptions{Names: []string{"mx2.example.test"}, KeyType: "rsa2048"})
	c.wild = c.pki.IssueHost(t, testpeer.HostCertOptions{Names: []string{"*.example.test"}})
	c.cn = c.pki.IssueHost(t, testpeer.HostCertOptions{CN: "mx3.example.test"})
	c.otherLeaf = c.pki.IssueHost(t, testpeer.HostCertOptions{Names: []string{"mx1.example.test"}})
	c.self = testpeer.SelfSignedHost(t, t.TempDir(), testpeer.HostCertOptions{Names: []string{"self.example.test"}})
	c.evilLeaf = c.evil.IssueHost(t, testpeer.HostCertOptions{Names: []string{"mx1.example.test"}})
	return c
}

// rec parses "U S M HEX" as testpeer.TLSA (openssl) prints it.
func rec(t *testing.T, s string) dane.TLSA {
	t.Helper()
	f := strings.Fields(s)
	if len(f) != 4 {
		t.Fatalf("TLSA %q", s)
	}
	n := func(x string) uint8 {
		v, err := strconv.ParseUint(x, 10, 8)
		if err != nil {
			t.Fatalf("TLSA %q: %v", s, err)
		}
		return uint8(v)
	}
	data, err := hex.DecodeString(f[3])
	if err != nil {
		t.Fatalf("TLSA %q: %v", s, err)
	}
	return dane.TLSA{Usage: n(f[0]), Selector: n(f[1]), MatchingType: n(f[2]), Data: data}
}

func TestVerify(t *testing.T) {
	c := openssl(t)
	tlsa := func(id string, u, s, m int) dane.TLSA { return rec(t, testpeer.TLSA(t, id, u, s, m)) }
	leafChain := []*x509.Certificate{c.leaf.Cert, c.pki.Inter, c.pki.Root}
	afterExpiry := c.leaf.Cert.NotAfter.Add(time.Hour)
	now := time.Now()
	mx1 := []string{"mx1.example.test", "example.test"}

	tests := []struct {
		name  string
		recs  []dane.TLSA
		chain []*x509.Certificate
		names []string
		now   time.Time
		want  dane.Reason // "" = verified
	}{
		// DANE-EE(3): the leaf, by certificate or key, any digest.
		{"EE SPKI SHA-256", []dane.TLSA{tlsa(c.leaf.CertFile, 3, 1, 1)}, leafChain, mx1, now, ""},
		{"EE cert SHA-256", []dane.TLSA{tlsa(c.leaf.CertFile, 3, 0, 1)}, leafChain, mx1, now, ""},
		{"EE SPKI SHA-512", []dane.TLSA{tlsa(c.leaf.CertFile, 3, 1, 2)}, leafChain, mx1, now, ""},
		{"EE full cert", []dane.TLSA{tlsa(c.leaf.CertFile, 3, 0, 0)}, leafChain, mx1, now, ""},
		{"EE RSA key", []dane.TLSA{tlsa(c.rsaLeaf.CertFile, 3, 1, 1)}, []*x509.Certificate{c.rsaLeaf.Cert}, []string{"mx2.example.test"}, now, ""},
		{"EE ignores name and expiry (RFC 7672 3.1.1)", []dane.TLSA{tlsa(c.leaf.CertFile, 3, 1, 1)}, leafChain, []string{"other.test"}, afterExpiry, ""},
		{"EE self-signed", []dane.TLSA{tlsa(c.self.CertFile, 3, 1, 1)}, []*x509.Certificate{c.self.Cert}, []string{"self.example.test"}, now, ""},
		{"EE another key of the same CA", []dane.TLSA{tlsa(c.otherLeaf.CertFile, 3, 1, 1)}, leafChain, mx1, now, dane.ReasonNoMatch},
		{"EE pins the intermediate, not the leaf", []dane.TLSA{tlsa(c.pki.InterFile, 3, 1, 1)}, leafChain, mx1, now, dane.ReasonNoMatch},
		{"one good record among bad ones", []dane.TLSA{tlsa(c.otherLeaf.CertFile, 3, 1, 1), tlsa(c.leaf.CertFile, 3, 0, 2)}, leafChain, mx1, now, ""},

		// DANE-TA(2): an issuer in the chain, signature, validity, name.
		{"TA intermediate cert", []dane.TLSA{tlsa(c.pki.InterFile, 2, 0, 1)}, leafChain, mx1, now, ""},
		{"TA root SPKI", []dane.TLSA{tlsa(c.pki.RootFile, 2, 1, 1)}, leafChain, mx1, now, ""},
		{"TA second name (next-hop domain list)", []dane.TLSA{tlsa(c.pki.InterFile, 2, 0, 1)}, leafChain, []string{"mail.example.test."}, now, ""},
		{"TA name case and trailing dot", []dane.TLSA{tlsa(c.pki.InterFile, 2, 0, 1)}, leafChain, []string{"MX1.Example.TEST."}, now, ""},
		{"TA wrong name", []dane.TLSA{tlsa(c.pki.InterFile, 2, 0, 1)}, leafChain, []string{"mx9.example.test"}, now, dane.ReasonName},
		{"TA expired leaf", []dane.TLSA{tlsa(c.pki.InterFile, 2, 0, 1)}, leafChain, mx1, afterExpiry, dane.ReasonExpired},
		{"TA not yet valid", []dane.TLSA{tlsa(c.pki.InterFile, 2, 0, 1)}, leafChain, mx1, c.leaf.Cert.NotBefore.Add(-time.Hour), dane.ReasonExpired},
		{"TA record for the leaf is no anchor", []dane.TLSA{tlsa(c.leaf.CertFile, 2, 0, 1)}, leafChain, mx1, now, dane.ReasonNoMatch},
		{"TA anchor not presented", []dane.TLSA{tlsa(c.pki.RootFile, 2, 0, 1)}, []*x509.Certificate{c.leaf.Cert, c.pki.Inter}, mx1, now, dane.ReasonNoMatch},
		{"TA wildcard", []dane.TLSA{tlsa(c.pki.InterFile, 2, 0, 1)}, []*x509.Certificate{c.wild.Cert, c.pki.Inter}, []string{"mx7.example.test"}, now, ""},
		{"TA wildcard is one label", []dane.TLSA{tlsa(c.pki.InterFile, 2, 0, 1)}, []*x509.Certificate{c.wild.Cert, c.pki.Inter}, []string{"a.mx7.example.test"}, now, dane.ReasonName},
		{"TA wildcard not the parent", []dane.TLSA{tlsa(c.pki.InterFile, 2, 0, 1)}, []*x509.Certificate{c.wild.Cert, c.pki.Inter}, []string{"example.test"}, now, dane.ReasonName},
		{"TA CN when there is no SAN", []dane.TLSA{tlsa(c.pki.InterFile, 2, 0, 1)}, []*x509.Certificate{c.cn.Cert, c.pki.Inter}, []string{"mx3.example.test"}, now, ""},
		{"TA SAN wins over CN", []dane.TLSA{tlsa(c.pki.InterFile, 2, 0, 1)}, leafChain, []string{c.leaf.Cert.Subject.CommonName, "x.invalid"}, now, ""},

		// The attacker: his own leaf with the real CA appended to the chain.
		{"TA anchor appended to a foreign leaf", []dane.TLSA{tlsa(c.pki.InterFile, 2, 0, 1)}, []*x509.Certificate{c.evilLeaf.Cert, c.pki.Inter, c.pki.Root}, mx1, now, dane.ReasonChain},
		{"TA anchor appended, foreign intermediate", []dane.TLSA{tlsa(c.pki.RootFile, 2, 1, 1)}, []*x509.Certificate{c.evilLeaf.Cert, c.evil.Inter, c.pki.Root}, mx1, now, dane.ReasonChain},

		// Nothing usable: no DANE, and Verify fails closed if asked anyway.
		{"PKIX usages only", []dane.TLSA{tlsa(c.leaf.CertFile, 1, 1, 1), tlsa(c.pki.RootFile, 0, 0, 1)}, leafChain, mx1, now, dane.ReasonNoUsableRecords},
		{"no records", nil, leafChain, mx1, now, dane.ReasonNoUsableRecords},
		{"no certificate", []dane.TLSA{tlsa(c.leaf.CertFile, 3, 1, 1)}, nil, mx1, now, dane.ReasonNoCertificate},
		{"truncated digest is unusable", []dane.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: rec(t, testpeer.TLSA(t, c.leaf.CertFile, 3, 1, 1)).Data[:31]}}, leafChain, mx1, now, dane.ReasonNoUsableRecords},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := dane.Verify(tc.recs, tc.chain, tc.names, tc.now)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			var de *dane.Error
			if !errors.As(err, &de) {
				t.Fatalf("Verify = %v, want a *dane.Error with reason %q", err, tc.want)
			}
			if de.Reason != tc.want {
				t.Fatalf("reason %q (%v), want %q", de.Reason, err, tc.want)
			}
		})
	}
}

func TestUsable(t *testing.T) {
	d32, d64 := make([]byte, 32), make([]byte, 64)
	tests := []struct {
		name string
		rec  dane.TLSA
		want bool
	}{
		{"DANE-EE SPKI SHA-256", dane.TLSA{3, 1, 1, d32}, true},
		{"DANE-TA cert SHA-512", dane.TLSA{2, 0, 2, d64}, true},
		{"DANE-EE full SPKI", dane.TLSA{3, 1, 0, []byte{0x30, 0x03, 0x01, 0x01, 0xff}}, true},
		{"PKIX-TA", dane.TLSA{0, 0, 1, d32}, false},
		{"PKIX-EE", dane.TLSA{1, 1, 1, d32}, false},
		{"unknown usage", dane.TLSA{4, 1, 1, d32}, false},
		{"unknown selector", dane.TLSA{3, 2, 1, d32}, false},
		{"unknown matching type", dane.TLSA{3, 1, 3, d32}, false},
		{"SHA-256 of 64 bytes", dane.TLSA{3, 1, 1, d64}, false},
		{"SHA-512 of 32 bytes", dane.TLSA{3, 1, 2, d32}, false},
		{"full, empty", dane.TLSA{3, 0, 0, nil}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := dane.Usable([]dane.TLSA{tc.rec})
			if (len(got) == 1) != tc.want {
				t.Fatalf("Usable(%v) = %v, want usable %v", tc.rec, got, tc.want)
			}
		})
	}
}

// BenchmarkVerify: one DANE-EE(3) SPKI match and one DANE-TA(2) check
// (signature chain and name) of an openssl-made P-256 chain.
func BenchmarkVerify(b *testing.B) {
	pki := testpeer.NewPKI(b)
	leaf := pki.IssueHost(b, testpeer.HostCertOptions{Names: []string{"mx1.example.test"}})
	chain := []*x509.Certificate{leaf.Cert, pki.Inter, pki.Root}
	parse := func(s string) dane.TLSA {
		f := strings.Fields(s)
		data, _ := hex.DecodeString(f[3])
		return dane.TLSA{Usage: f[0][0] - '0', Selector: f[1][0] - '0', MatchingType: f[2][0] - '0', Data: data}
	}
	for _, bc := range []struct {
		name string
		rec  dane.TLSA
	}{
		{"DANE-EE 3 1 1", parse(testpeer.TLSA(b, leaf.CertFile, 3, 1, 1))},
		{"DANE-TA 2 0 1", parse(testpeer.TLSA(b, pki.InterFile, 2, 0, 1))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			now := time.Now()
			for b.Loop() {
				if err := dane.Verify([]dane.TLSA{bc.rec}, chain, []string{"mx1.example.test"}, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
