package mxrelay

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"strings"

	"github.com/miekg/dns"
)

// testResolver asks the test's unbound directly, until pkg/delivery/resolver
// (branch dns) is merged; it answers what the relay needs and no more.
type testResolver struct{ addr string }

func newTestResolver(addr string) Resolver { return testResolver{addr} }

func (r testResolver) query(ctx context.Context, name string, t uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), t)
	m.SetEdns0(1232, true)
	m.AuthenticatedData = true
	in, _, err := new(dns.Client).ExchangeContext(ctx, m, r.addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", name, dns.TypeToString[t], err)
	}
	switch in.Rcode {
	case dns.RcodeSuccess:
		return in, nil
	case dns.RcodeNameError:
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	return nil, fmt.Errorf("%s %s: %s", name, dns.TypeToString[t], dns.RcodeToString[in.Rcode])
}

func (r testResolver) LookupMX(ctx context.Context, domain string) (MXResult, error) {
	in, err := r.query(ctx, domain, dns.TypeMX)
	if err != nil {
		return MXResult{}, err
	}
	res := MXResult{Authentic: in.AuthenticatedData}
	for _, rr := range in.Answer {
		if mx, ok := rr.(*dns.MX); ok {
			if mx.Mx == "." {
				return MXResult{Null: true, Authentic: in.AuthenticatedData}, nil
			}
			res.Hosts = append(res.Hosts, &net.MX{Host: mx.Mx, Pref: mx.Preference})
		}
	}
	if len(res.Hosts) > 0 {
		return res, nil
	}
	ips, ad, err := r.LookupAddrs(ctx, domain)
	if err != nil {
		return MXResult{}, err
	}
	if len(ips) == 0 {
		return MXResult{}, fmt.Errorf("%s: %w", domain, ErrNotFound)
	}
	return MXResult{Hosts: []*net.MX{{Host: domain}}, Implicit: true, Authentic: ad}, nil
}

func (r testResolver) LookupAddrs(ctx context.Context, host string) ([]net.IP, bool, error) {
	in, err := r.query(ctx, host, dns.TypeA)
	if err != nil {
		return nil, false, err
	}
	var ips []net.IP
	for _, rr := range in.Answer {
		if a, ok := rr.(*dns.A); ok {
			ips = append(ips, a.A)
		}
	}
	return ips, in.AuthenticatedData, nil
}

func (r testResolver) LookupTLSA(ctx context.Context, host string, port int) ([]TLSA, bool, error) {
	in, err := r.query(ctx, fmt.Sprintf("_%d._tcp.%s", port, strings.TrimSuffix(host, ".")), dns.TypeTLSA)
	if err != nil {
		return nil, false, err
	}
	var recs []TLSA
	for _, rr := range in.Answer {
		if t, ok := rr.(*dns.TLSA); ok {
			data, _ := hex.DecodeString(t.Certificate)
			recs = append(recs, TLSA{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: data})
		}
	}
	if len(recs) == 0 {
		return nil, in.AuthenticatedData, fmt.Errorf("%s: %w", host, ErrNotFound)
	}
	return recs, in.AuthenticatedData, nil
}
