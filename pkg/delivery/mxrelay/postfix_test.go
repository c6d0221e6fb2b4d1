package mxrelay

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/policy"
)

// A real Postfix as the recipient domain's MX host: under "verified" its
// certificate (trusted as a private root, naming the MX host) is checked
// by PKIX and the message lands in its maildir over the TLS that Postfix
// itself records in its Received header; under "opportunistic" it arrives
// encrypted too, reported as not verified.
func TestPostfixAsMX(t *testing.T) {
	pf := testpeer.StartPostfixNextHop(t, testpeer.PostfixNextHopOptions{DNSName: "mx.postfix.test"})
	host, port, err := net.SplitHostPort(pf.SMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	u := testpeer.StartUnbound(t, testpeer.UnboundConfig{LocalData: []string{
		"postfix.test. MX 10 mx.postfix.test.", "mx.postfix.test. A " + host,
	}})
	p, _ := strconv.Atoi(port)
	r := &Relay{Resolver: newResolver(u.Addr), DANE: DANEVerifier{}, Port: p, RootCAs: rootsOf(t, pf.CAFile), Hostname: "gw.sealgate.test", Timeout: 20 * time.Second}
	defer r.Close()
	for _, mode := range []policy.TLSMode{policy.TLSVerified, policy.TLSOpportunistic} {
		marker := "mx-postfix-" + mode.String()
		d := delivery(mode, "bob@postfix.test")
		d.Data = []byte("From: alice@example.org\r\nSubject: " + marker + "\r\n\r\n" + marker + "\r\n")
		errs, hops := r.DeliverEach(context.Background(), d)
		if errs[0] != nil {
			t.Fatalf("%s: %v\npostfix log:\n%s", mode, errs[0], pf.Log())
		}
		wantBy := map[policy.TLSMode]string{policy.TLSVerified: "pkix", policy.TLSOpportunistic: "none"}[mode]
		if hops[0].Host != "mx.postfix.test" || hops[0].VerifiedBy != wantBy || !strings.HasPrefix(hops[0].Version, "TLS 1.") {
			t.Fatalf("%s: hop %+v", mode, hops[0])
		}
		got := pf.WaitMessage(t, marker, 30*time.Second)
		// Postfix writes "(using TLSv1.3 with cipher ...)" for a TLS session.
		if !strings.Contains(string(got), "using TLSv1.") {
			t.Fatalf("%s: Postfix did not receive it over TLS:\n%s", mode, got)
		}
	}
}
