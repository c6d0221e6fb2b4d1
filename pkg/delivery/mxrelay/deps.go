// Package mxrelay delivers parcels straight to the recipient domains' MX
// hosts (relay.mode = "mx"): MX and address lookups through a resolver,
// hosts tried in preference order, and TLS as each parcel's rule demands
// (none, opportunistic, required, verified by DANE / MTA-STS / PKIX, or
// DANE only). It implements the gateway's Relay and HopRelay; temporary
// failures go back to the gateway's queue, which retries them.
package mxrelay

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"time"

	"github.com/sealgate/sealgate/pkg/delivery/dane"
)

// Resolver is the DNS the relay needs (pkg/delivery/resolver satisfies it
// through FromResolver). Authentic says the answer came with the AD bit
// from the configured validating resolver.
type Resolver interface {
	LookupMX(ctx context.Context, domain string) (MXResult, error)
	LookupHost(ctx context.Context, host string) (HostResult, error)
	LookupTLSA(ctx context.Context, host string, port int) (recs []TLSA, authentic bool, err error)
}

// MXResult is a domain's MX answer. Hosts come in preference order; Null
// is RFC 7505's "MX 0 ." (the domain takes no mail); Implicit means the
// domain has no MX and its own address records stand in (RFC 5321 5.1).
type MXResult struct {
	Hosts     []*net.MX
	Null      bool
	Implicit  bool
	Authentic bool
}

// HostResult is a host's addresses. Canonical is the end of its CNAME
// chain ("" when it is no alias); Authentic covers every answer used.
type HostResult struct {
	IPs       []net.IP
	Canonical string
	Authentic bool
}

// ErrNotFound is what a Resolver returns (wrapped) for a name that does
// not exist (NXDOMAIN, or no MX and no address). Every other error is
// temporary: a resolver that times out never makes a domain "unknown".
var ErrNotFound = errors.New("no such domain")

// TLSA is one TLSA record (RFC 6698).
type TLSA = dane.TLSA

// DANE checks a server's chain against TLSA records (pkg/delivery/dane
// through FromDANE).
type DANE interface {
	// Usable keeps the records RFC 7672 lets SMTP use (DANE-TA, DANE-EE
	// with known selectors and matching types).
	Usable(recs []TLSA) []TLSA
	// Verify says whether chain (leaf first) matches one of recs; names
	// are the reference identifiers for DANE-TA.
	Verify(recs []TLSA, chain []*x509.Certificate, names []string, now time.Time) error
}

// STSPolicies hands out a domain's MTA-STS policy (RFC 8461): mode
// "enforce", "testing", "none", or "" when the domain has none; mx the
// policy's mx patterns ("mx1.example.org", "*.example.org").
type STSPolicies interface {
	Policy(ctx context.Context, domain string) (mode string, mx []string, err error)
}
