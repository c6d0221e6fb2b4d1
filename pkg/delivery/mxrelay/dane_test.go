package mxrelay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/policy"
)

// DANE against a zone knot signed and unbound validates: a matching TLSA
// record verifies even a self-signed certificate; a mismatch is never
// downgraded to PKIX (that host gets nothing, the next MX is tried); a
// host without TLSA gets PKIX under "verified" and nothing under "dane";
// a TLSA record altered after signing (bogus) fails the host; an MX name
// that is an alias finds its TLSA records at the alias's target.
func TestDANE(t *testing.T) {
	n := testpeer.StartMXHosts(t,
		testpeer.MXHostSpec{Name: "mx1.dane.test", Kind: testpeer.MXValid},
		testpeer.MXHostSpec{Name: "mx2.dane.test", Kind: testpeer.MXValid},
		testpeer.MXHostSpec{Name: "mx3.dane.test", Kind: testpeer.MXSelfSigned},
		testpeer.MXHostSpec{Name: "mx4.dane.test", Kind: testpeer.MXValid},
		testpeer.MXHostSpec{Name: "mx5.dane.test", Kind: testpeer.MXValid},
	)
	h := func(name string) *testpeer.MXHost { return n.Hosts[name+".dane.test"] }
	tlsa := func(name, data string) string { return fmt.Sprintf("_%d._tcp.%s TLSA 3 1 1 %s", n.Port, name, data) }
	// The record data is computed by openssl from the certificate file.
	spki := func(name string) string {
		return strings.Fields(testpeer.TLSA(t, h(name).CertFile, 3, 1, 1))[3]
	}
	other := sha256.Sum256([]byte("not the key"))
	bogus := tlsa("mx5", spki("mx5"))
	records := []string{
		"match MX 10 mx1", tlsa("mx1", spki("mx1")),
		// mx2's certificate is PKIX-valid, but DNSSEC says another key.
		"mismatch MX 10 mx2", tlsa("mx2", hex.EncodeToString(other[:])),
		"selfsigned MX 10 mx3", tlsa("mx3", spki("mx3")),
		"notlsa MX 10 mx4",
		"both MX 10 mx2", "both MX 20 mx1",
		"bogus MX 10 mx5", bogus,
		// The MX name is an alias: TLSA is found at its target (RFC 7672 2.2.2).
		"alias MX 10 mxalias", "mxalias CNAME mx1",
	}
	for _, name := range []string{"mx1", "mx2", "mx3", "mx4", "mx5"} {
		records = append(records, name+" A "+h(name).IP)
	}
	k := testpeer.StartKnotWith(t, "dane.test", records, testpeer.KnotOptions{Replace: map[string]string{bogus: tlsa("mx5", hex.EncodeToString(other[:]))}})
	u := testpeer.StartUnbound(t, testpeer.UnboundConfig{Stubs: []testpeer.Stub{k.Stub()}, TrustAnchors: k.DS()})
	w := &mxWorld{net: n, resolver: u.Addr}
	w.roots = rootsOf(t, n.CAFile)

	tests := []struct {
		domain string
		mode   policy.TLSMode
		host   string // "" not delivered
		by     string
		reason string
	}{
		{"match", policy.TLSVerified, "mx1", "dane", ""},
		{"match", policy.TLSDANE, "mx1", "dane", ""},
		{"selfsigned", policy.TLSDANE, "mx3", "dane", ""},
		{"selfsigned", policy.TLSVerified, "mx3", "dane", ""},
		{"mismatch", policy.TLSVerified, "", "", "mx2.dane.test [" + h("mx2").IP + "]: TLS handshake failed, not retried in plain text (tls = verified): DANE: no certificate matches a TLSA record"},
		{"mismatch", policy.TLSDANE, "", "", "DANE: no certificate matches a TLSA record"},
		{"both", policy.TLSVerified, "mx1", "dane", ""},
		{"notlsa", policy.TLSVerified, "mx4", "pkix", ""},
		{"notlsa", policy.TLSDANE, "", "", "mx4.dane.test: DANE: no TLSA records (tls = dane)"},
		{"bogus", policy.TLSVerified, "", "", "mx5.dane.test: DANE: TLSA lookup failed"},
		{"alias", policy.TLSDANE, "mxalias", "dane", ""},
		// Opportunistic and required do not look at TLSA at all.
		{"mismatch", policy.TLSRequired, "mx2", "none", ""},
	}
	for _, tc := range tests {
		t.Run(tc.domain+"/"+tc.mode.String(), func(t *testing.T) {
			r := w.relay(t)
			before := map[string]int{}
			for name, host := range n.Hosts {
				before[name] = len(host.Messages())
			}
			errs, hops := r.DeliverEach(context.Background(), delivery(tc.mode, "bob@"+tc.domain+".dane.test"))
			got := map[string]int{}
			for name, host := range n.Hosts {
				if d := len(host.Messages()) - before[name]; d > 0 {
					got[name] = d
				}
			}
			if tc.host == "" {
				if errs[0] == nil || !strings.Contains(errs[0].Error(), tc.reason) || len(got) != 0 {
					t.Fatalf("err %v, hosts that got it %v; want nothing delivered and %q", errs[0], got, tc.reason)
				}
				return
			}
			want := tc.host + ".dane.test"
			sink := want
			if tc.host == "mxalias" {
				sink = "mx1.dane.test"
			}
			if errs[0] != nil || hops[0].Host != want || hops[0].VerifiedBy != tc.by || len(got) != 1 || got[sink] != 1 {
				t.Fatalf("err %v hop %+v hosts %v; want %s verified by %s", errs[0], hops[0], got, want, tc.by)
			}
		})
	}
}
