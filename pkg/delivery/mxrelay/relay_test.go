package mxrelay

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/policy"
)

// Every rule tls × kind of MX host: where the mail went (which host got
// it, over TLS or not) or why it stayed queued, and the TLS the event
// reports. A stricter mode never falls back to a weaker connection: the
// host that failed got nothing.
func TestRuleTLSByServerKind(t *testing.T) {
	w := startWorld(t)
	const (
		tls13 = "TLS 1.3"
		tls10 = "TLS 1.0"
	)
	ok := func(ver, by string) outcome { return outcome{delivered: true, tlsVer: ver, by: by} }
	fail := func(reason string) outcome { return outcome{reason: reason} }
	want := map[policy.TLSMode]map[testpeer.MXKind]outcome{
		policy.TLSNone: {
			testpeer.MXValid: ok("", "none"), testpeer.MXSelfSigned: ok("", "none"), testpeer.MXExpired: ok("", "none"),
			testpeer.MXWrongName: ok("", "none"), testpeer.MXPlain: ok("", "none"), testpeer.MXTLS10: ok("", "none"),
			testpeer.MXBrokenTLS: ok("", "none"),
		},
		policy.TLSOpportunistic: {
			testpeer.MXValid: ok(tls13, "none"), testpeer.MXSelfSigned: ok(tls13, "none"), testpeer.MXExpired: ok(tls13, "none"),
			testpeer.MXWrongName: ok(tls13, "none"), testpeer.MXPlain: ok("", "none"), testpeer.MXTLS10: ok(tls10, "none"),
			// RFC 7435: opportunistic TLS goes on in plain text.
			testpeer.MXBrokenTLS: ok("", "none"),
		},
		policy.TLSRequired: {
			testpeer.MXValid: ok(tls13, "none"), testpeer.MXSelfSigned: ok(tls13, "none"), testpeer.MXExpired: ok(tls13, "none"),
			testpeer.MXWrongName: ok(tls13, "none"), testpeer.MXPlain: fail("does not offer STARTTLS"),
			testpeer.MXTLS10:     fail("TLS handshake failed, not retried in plain text"),
			testpeer.MXBrokenTLS: fail("TLS handshake failed, not retried in plain text"),
		},
		policy.TLSVerified: {
			testpeer.MXValid: ok(tls13, "pkix"), testpeer.MXSelfSigned: fail("PKIX: self-signed certificate"),
			testpeer.MXExpired: fail("PKIX: certificate expired"), testpeer.MXWrongName: fail("PKIX: certificate does not name the MX host"),
			testpeer.MXPlain: fail("does not offer STARTTLS"), testpeer.MXTLS10: fail("TLS handshake failed, not retried in plain text"),
			testpeer.MXBrokenTLS: fail("TLS handshake failed, not retried in plain text"),
		},
		// Local data is not DNSSEC-signed: no DANE anywhere, and "dane"
		// never settles for less.
		policy.TLSDANE: {
			testpeer.MXValid: fail("DANE: the MX or address records are not DNSSEC-authenticated"), testpeer.MXSelfSigned: fail("DANE: the MX or address records are not DNSSEC-authenticated"),
			testpeer.MXExpired: fail("DANE: the MX or address records are not DNSSEC-authenticated"), testpeer.MXWrongName: fail("DANE: the MX or address records are not DNSSEC-authenticated"),
			testpeer.MXPlain: fail("DANE: the MX or address records are not DNSSEC-authenticated"), testpeer.MXTLS10: fail("DANE: the MX or address records are not DNSSEC-authenticated"),
			testpeer.MXBrokenTLS: fail("DANE: the MX or address records are not DNSSEC-authenticated"),
		},
	}
	for _, mode := range []policy.TLSMode{policy.TLSNone, policy.TLSOpportunistic, policy.TLSRequired, policy.TLSVerified, policy.TLSDANE} {
		for _, kind := range allKinds {
			t.Run(mode.String()+"/"+string(kind), func(t *testing.T) {
				r := w.relay(t)
				host := w.net.Hosts[hostOf(kind)]
				before := len(host.Messages())
				rcpt := "bob@" + domainOf(kind)
				errs, hops := r.DeliverEach(context.Background(), delivery(mode, rcpt))
				got := describeOutcome(errs[0], hops[0])
				exp := want[mode][kind]
				msgs := host.Messages()[before:]
				if exp.delivered {
					if got != exp {
						t.Fatalf("got %+v, want %+v", got, exp)
					}
					if hops[0].Host != hostOf(kind) || (hops[0].Verified != (exp.by != "none")) {
						t.Fatalf("hop %+v", hops[0])
					}
					if len(msgs) != 1 || !msgs[0].HasRcpt(rcpt) || msgs[0].TLS != (exp.tlsVer != "") {
						t.Fatalf("host got %+v", msgs)
					}
					return
				}
				if got.delivered || got.permanent || !strings.Contains(got.reason, exp.reason) || !strings.Contains(got.reason, hostOf(kind)) {
					t.Fatalf("got %+v, want a temporary failure naming %s and %q", got, hostOf(kind), exp.reason)
				}
				if len(msgs) != 0 {
					t.Fatalf("the host that failed the rule got the message anyway: %+v", msgs)
				}
			})
		}
	}
}

// The domain-level outcomes: null MX and NXDOMAIN bounce, an implicit MX
// is the domain's own address, the next MX is tried when the first is
// down, and a resolver that does not answer is a temporary failure.
func TestDomains(t *testing.T) {
	w := startWorld(t)
	valid := w.net.Hosts[hostOf(testpeer.MXValid)]
	tests := []struct {
		name      string
		rcpt      string
		resolver  string
		delivered bool
		permanent bool
		reason    string
		host      string
		mode      policy.TLSMode
	}{
		{"null MX", "bob@null.test", "", false, true, "null.test publishes a null MX (RFC 7505)", "", policy.TLSVerified},
		{"no such domain", "bob@nowhere.test", "", false, true, "nowhere.test: no such domain", "", policy.TLSVerified},
		// The valid host's certificate does not name implicit.test.
		{"implicit MX", "bob@implicit.test", "", true, false, "", "implicit.test", policy.TLSRequired},
		{"implicit MX, verified", "bob@implicit.test", "", false, false, "certificate does not name the MX host", "", policy.TLSVerified},
		{"first MX down", "bob@fallback.test", "", true, false, "", hostOf(testpeer.MXValid), policy.TLSVerified},
		{"resolver down", "bob@valid.test", "127.0.0.1:9", false, false, "MX lookup failed, will retry", "", policy.TLSVerified},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := w.relay(t)
			if tc.resolver != "" {
				r.Resolver = newResolver(tc.resolver)
			}
			before := len(valid.Messages())
			errs, hops := r.DeliverEach(context.Background(), delivery(tc.mode, tc.rcpt))
			if tc.delivered {
				if errs[0] != nil || hops[0].Host != tc.host {
					t.Fatalf("err %v hop %+v, want delivered via %s", errs[0], hops[0], tc.host)
				}
				if len(valid.Messages()) != before+1 {
					t.Fatal("the valid host did not get the message")
				}
				return
			}
			if errs[0] == nil || gateway.IsPermanent(errs[0]) != tc.permanent || !strings.Contains(errs[0].Error(), tc.reason) {
				t.Fatalf("err %v (permanent %v), want permanent=%v %q", errs[0], gateway.IsPermanent(errs[0]), tc.permanent, tc.reason)
			}
		})
	}
}

// MTA-STS (policy stub; the real cache is pkg/delivery/mtasts): under
// "verified" an enforce policy restricts the MX hosts and reports
// mta-sts; a host outside it gets nothing, even with a valid certificate.
func TestMTASTS(t *testing.T) {
	w := startWorld(t)
	valid := w.net.Hosts[hostOf(testpeer.MXValid)]
	tests := []struct {
		name   string
		pats   []string
		mode   policy.TLSMode
		by     string // "" not delivered
		reason string
	}{
		{"host listed", []string{hostOf(testpeer.MXValid)}, policy.TLSVerified, "mta-sts", ""},
		{"wildcard", []string{"*.valid.test"}, policy.TLSVerified, "mta-sts", ""},
		{"wildcard is one label", []string{"*.test"}, policy.TLSVerified, "", "not listed in the domain's MTA-STS policy"},
		{"host not listed", []string{"mx.elsewhere.test"}, policy.TLSVerified, "", "not listed in the domain's MTA-STS policy"},
		{"only verified asks", []string{"mx.elsewhere.test"}, policy.TLSRequired, "none", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := w.relay(t)
			r.STS = stsStub{domainOf(testpeer.MXValid): tc.pats}
			before := len(valid.Messages())
			errs, hops := r.DeliverEach(context.Background(), delivery(tc.mode, "bob@"+domainOf(testpeer.MXValid)))
			delivered := len(valid.Messages()) - before
			if tc.by == "" {
				if errs[0] == nil || !strings.Contains(errs[0].Error(), tc.reason) || delivered != 0 {
					t.Fatalf("err %v, delivered %d; want %q and nothing sent", errs[0], delivered, tc.reason)
				}
				return
			}
			if errs[0] != nil || hops[0].VerifiedBy != tc.by || delivered != 1 {
				t.Fatalf("err %v hop %+v delivered %d", errs[0], hops[0], delivered)
			}
		})
	}
}

// One parcel for several domains: each domain's recipients go to their
// own MX host with their own TLS, and each recipient's hop says which.
// A recipient one host refuses does not hold back the others.
func TestParcelAcrossDomains(t *testing.T) {
	w := startWorld(t)
	r := w.relay(t)
	plain, valid := w.net.Hosts[hostOf(testpeer.MXPlain)], w.net.Hosts[hostOf(testpeer.MXValid)]
	valid.Fail(0, "")
	rcpts := []string{"a@" + domainOf(testpeer.MXValid), "b@" + domainOf(testpeer.MXPlain), "c@" + domainOf(testpeer.MXValid), "d@null.test"}
	bp, bv := len(plain.Messages()), len(valid.Messages())
	errs, hops := r.DeliverEach(context.Background(), delivery(policy.TLSOpportunistic, rcpts...))
	if errs[0] != nil || errs[1] != nil || errs[2] != nil || !gateway.IsPermanent(errs[3]) {
		t.Fatalf("errs %v", errs)
	}
	if hops[0].Host != hostOf(testpeer.MXValid) || hops[0].Version == "" || hops[1].Host != hostOf(testpeer.MXPlain) || hops[1].Version != "" || hops[3] != nil {
		t.Fatalf("hops %+v %+v %+v", hops[0], hops[1], hops[3])
	}
	pm, vm := plain.Messages()[bp:], valid.Messages()[bv:]
	if len(pm) != 1 || len(pm[0].Rcpts) != 1 || len(vm) != 1 || len(vm[0].Rcpts) != 2 {
		t.Fatalf("plain host got %+v, valid host got %+v", pm, vm)
	}
}

// Per-recipient answers: a 5xx is permanent, a 4xx temporary, and the
// host is not swapped for another after it answered.
func TestRecipientAnswers(t *testing.T) {
	w := startWorld(t)
	valid := w.net.Hosts[hostOf(testpeer.MXValid)]
	for _, tc := range []struct {
		code      int
		permanent bool
	}{{550, true}, {450, false}} {
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			r := w.relay(t)
			valid.Fail(tc.code, "no such user")
			defer valid.Fail(0, "")
			errs := r.Deliver(context.Background(), delivery(policy.TLSVerified, "bob@"+domainOf(testpeer.MXValid)))
			if errs[0] == nil || gateway.IsPermanent(errs[0]) != tc.permanent || !strings.Contains(errs[0].Error(), "no such user") {
				t.Fatalf("err %v, want permanent=%v", errs[0], tc.permanent)
			}
		})
	}
}

// A connection is reused for the next message to the same host under the
// same TLS demand, and not under another.
func TestConnectionReuse(t *testing.T) {
	w := startWorld(t)
	r := w.relay(t)
	rcpt := "bob@" + domainOf(testpeer.MXValid)
	for i, mode := range []policy.TLSMode{policy.TLSVerified, policy.TLSVerified, policy.TLSRequired} {
		if errs := r.Deliver(context.Background(), delivery(mode, rcpt)); errs[0] != nil {
			t.Fatalf("delivery %d: %v", i, errs[0])
		}
	}
	if idle := r.pool.Conns(); len(idle) != 2 || idle[0].used+idle[1].used != 3 {
		t.Fatalf("idle connections %d, want 2 (verified used twice, required once)", len(idle))
	}
}

// relay.tls = "required" is a floor under the rules: an opportunistic
// rule's copy does not go to a host without STARTTLS then.
func TestRequireTLSFloor(t *testing.T) {
	w := startWorld(t)
	plain := w.net.Hosts[hostOf(testpeer.MXPlain)]
	for _, tc := range []struct {
		require   bool
		delivered bool
	}{{false, true}, {true, false}} {
		t.Run(strconv.FormatBool(tc.require), func(t *testing.T) {
			r := w.relay(t)
			r.RequireTLS = tc.require
			before := len(plain.Messages())
			errs := r.Deliver(context.Background(), delivery(policy.TLSOpportunistic, "bob@"+domainOf(testpeer.MXPlain)))
			got := len(plain.Messages()) - before
			if (errs[0] == nil) != tc.delivered || got != map[bool]int{true: 1, false: 0}[tc.delivered] {
				t.Fatalf("err %v, host got %d", errs[0], got)
			}
		})
	}
}
