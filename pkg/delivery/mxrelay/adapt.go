package mxrelay

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/sealgate/sealgate/pkg/delivery/dane"
	"github.com/sealgate/sealgate/pkg/delivery/resolver"
)

// FromResolver adapts pkg/delivery/resolver to the Resolver the relay
// uses: its ErrNotFound becomes ours, every other error stays temporary.
func FromResolver(r *resolver.Resolver) Resolver { return dnsResolver{r} }

type dnsResolver struct{ r *resolver.Resolver }

func notFound(err error) error {
	if errors.Is(err, resolver.ErrNotFound) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

func (d dnsResolver) LookupMX(ctx context.Context, domain string) (MXResult, error) {
	res, err := d.r.LookupMX(ctx, domain)
	if err != nil {
		return MXResult{}, notFound(err)
	}
	return MXResult{Hosts: res.Hosts, Null: res.Null, Implicit: res.Implicit, Authentic: res.Authentic}, nil
}

func (d dnsResolver) LookupHost(ctx context.Context, host string) (HostResult, error) {
	h, err := d.r.LookupHost(ctx, host)
	return HostResult{IPs: h.IPs, Canonical: h.Canonical, Authentic: h.Authentic}, notFound(err)
}

func (d dnsResolver) LookupTLSA(ctx context.Context, host string, port int) ([]TLSA, bool, error) {
	recs, ad, err := d.r.LookupTLSA(ctx, host, port)
	return recs, ad, notFound(err)
}

// DANEVerifier is pkg/delivery/dane as the relay's DANE.
type DANEVerifier struct{}

// Usable implements DANE.
func (DANEVerifier) Usable(recs []TLSA) []TLSA { return dane.Usable(recs) }

// Verify implements DANE.
func (DANEVerifier) Verify(recs []TLSA, chain []*x509.Certificate, names []string, now time.Time) error {
	return dane.Verify(recs, chain, names, now)
}
