package tlscheck

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/sealgate/sealgate/pkg/delivery/dane"
	"github.com/sealgate/sealgate/pkg/delivery/resolver"
)

// FromResolver adapts the validating resolver (relay.resolver) to the
// probe's Resolver and DANE.
func FromResolver(r *resolver.Resolver) (Resolver, DANE) {
	return resolverDNS{r}, resolverDANE{r}
}

type resolverDNS struct{ r *resolver.Resolver }

func (d resolverDNS) MX(ctx context.Context, domain string) ([]string, bool, bool, error) {
	res, err := d.r.LookupMX(ctx, domain)
	if err != nil {
		return nil, false, false, err
	}
	if res.Null {
		return nil, true, res.Authentic, nil
	}
	hosts := make([]string, 0, len(res.Hosts))
	for _, mx := range res.Hosts {
		hosts = append(hosts, mx.Host)
	}
	return hosts, false, res.Authentic, nil
}

func (d resolverDNS) Addrs(ctx context.Context, host string) ([]net.IP, error) {
	ips, _, err := d.r.LookupAddrs(ctx, host)
	return ips, err
}

type resolverDANE struct{ r *resolver.Resolver }

// Check looks up _PORT._tcp.HOST TLSA. Only records the validating
// resolver authenticated count (RFC 7672); records it could not
// authenticate are DANEInsecureDNS, an authenticated denial DANENone. A
// lookup that fails (a bogus answer is SERVFAIL) is an error: the caller
// must not take it for "no DANE".
func (d resolverDANE) Check(ctx context.Context, host string, port int, chain []*x509.Certificate, now time.Time) (string, error) {
	recs, authentic, err := d.r.LookupTLSA(ctx, host, port)
	switch {
	case errors.Is(err, resolver.ErrNotFound):
		return DANENone, nil
	case err != nil:
		return "", fmt.Errorf("TLSA of %s: %w", host, err)
	case !authentic:
		return DANEInsecureDNS, nil
	}
	usable := dane.Usable(recs)
	if len(usable) == 0 {
		return DANENone, nil
	}
	if dane.Verify(usable, chain, []string{host}, now) == nil {
		return DANEMatch, nil
	}
	return DANEMismatch, nil
}
