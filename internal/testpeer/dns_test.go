package testpeer

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// The DNS peers as the other packages use them: unbound answering local
// data, and unbound validating a zone knot signed (secure), did not sign
// (insecure), signed and then had a record altered (bogus) or signed with
// signatures that have expired (bogus).
func TestDNSPeers(t *testing.T) {
	const tlsa = "_25._tcp.mx1 TLSA 3 1 1 0101010101010101010101010101010101010101010101010101010101010101"
	const forged = "_25._tcp.mx1 TLSA 3 1 1 0202020202020202020202020202020202020202020202020202020202020202"
	records := []string{"@ MX 10 mx1", "mx1 A 127.0.0.2", tlsa}

	signed := StartKnot(t, "secure.test", records)
	plain := StartKnotWith(t, "plain.test", records, KnotOptions{Unsigned: true})
	broken := StartKnotWith(t, "broken.test", records, KnotOptions{Replace: map[string]string{tlsa: forged}})
	expired := StartKnotWith(t, "expired.test", records, KnotOptions{Expired: true})
	if len(signed.DS()) == 0 || len(signed.DNSKEY()) == 0 || len(plain.DS()) != 0 {
		t.Fatalf("trust anchors: signed DS %v DNSKEY %v, unsigned DS %v", signed.DS(), signed.DNSKEY(), plain.DS())
	}
	longTXT := "v=DKIM1; k=rsa; p=" + strings.Repeat("MIIBIjAN", 50) + `"quoted\`
	u := StartUnbound(t, UnboundConfig{
		LocalData: []string{`sel._domainkey.example.org. TXT "v=DKIM1; k=ed25519; " "p=abc"`, "mx.example.org. A 127.0.0.7",
			TXT("long._domainkey.example.org.", longTXT)},
		Stubs:        []Stub{signed.Stub(), plain.Stub(), broken.Stub(), expired.Stub()},
		TrustAnchors: append(append(signed.DS(), broken.DNSKEY()...), expired.DS()...),
	})

	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		ad     bool
		answer string // a substring of the answer section
	}{
		{"secure TLSA", "_25._tcp.mx1.secure.test.", dns.TypeTLSA, dns.RcodeSuccess, true, "0101010101"},
		{"secure MX", "secure.test.", dns.TypeMX, dns.RcodeSuccess, true, "mx1.secure.test."},
		{"secure NXDOMAIN", "nope.secure.test.", dns.TypeA, dns.RcodeNameError, true, ""},
		{"insecure TLSA", "_25._tcp.mx1.plain.test.", dns.TypeTLSA, dns.RcodeSuccess, false, "0101010101"},
		{"bogus TLSA", "_25._tcp.mx1.broken.test.", dns.TypeTLSA, dns.RcodeServerFailure, false, ""},
		{"untouched record in the altered zone", "mx1.broken.test.", dns.TypeA, dns.RcodeSuccess, true, "127.0.0.2"},
		{"expired signatures", "mx1.expired.test.", dns.TypeA, dns.RcodeServerFailure, false, ""},
		{"local TXT", "sel._domainkey.example.org.", dns.TypeTXT, dns.RcodeSuccess, false, `"v=DKIM1; k=ed25519; " "p=abc"`},
		{"local A", "mx.example.org.", dns.TypeA, dns.RcodeSuccess, false, "127.0.0.7"},
		{"anything else", "www.example.com.", dns.TypeA, dns.RcodeNameError, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := dnsQuery(u.Addr, tc.qname, tc.qtype, "udp")
			if err != nil {
				t.Fatalf("query: %v", err)
			}
			if in.Rcode != tc.rcode || in.AuthenticatedData != tc.ad {
				t.Fatalf("rcode %s ad %v, want %s ad %v\n%s\nunbound:\n%s", dns.RcodeToString[in.Rcode], in.AuthenticatedData,
					dns.RcodeToString[tc.rcode], tc.ad, in, u.Log())
			}
			var ans strings.Builder
			for _, rr := range in.Answer {
				ans.WriteString(rr.String() + "\n")
			}
			if tc.answer != "" && !strings.Contains(ans.String(), tc.answer) {
				t.Fatalf("answer lacks %q:\n%s", tc.answer, ans.String())
			}
			if tc.answer == "" && len(in.Answer) != 0 {
				t.Fatalf("want no answer, got:\n%s", ans.String())
			}
		})
	}
	// A record longer than one string: split, and joined again it is the text.
	in, err := dnsQuery(u.Addr, "long._domainkey.example.org.", dns.TypeTXT, "tcp")
	if err != nil || len(in.Answer) != 1 {
		t.Fatalf("long TXT: %v %v", in, err)
	}
	// miekg/dns keeps the strings in presentation form (\" and \\).
	got := strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(strings.Join(in.Answer[0].(*dns.TXT).Txt, ""))
	if got != longTXT {
		t.Fatalf("long TXT reads back as %q", got)
	}
	// The bogus answer is a validation failure, not a lost server.
	if !u.LogContains("validation failure") {
		t.Errorf("unbound logged no validation failure:\n%s", u.Log())
	}
}
