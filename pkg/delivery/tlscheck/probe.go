// Package tlscheck probes a recipient domain's mail servers: what
// delivery to each MX host would get (STARTTLS, TLS version and cipher,
// the certificate's facts, DANE, MTA-STS) and the verdict verified |
// encrypted | insecure. The verdicts are cached (memory and store) so the
// pipeline asks once per domain per TTL, not per message.
//
// Everything a probed server says is the attacker's: the probe accepts
// any certificate to look at it, and only the checks here, against the
// configured roots, DNSSEC-authenticated TLSA records and the MTA-STS
// policy, make a host verified.
package tlscheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"strconv"
	"strings"
	"time"

	"github.com/sealgate/sealgate/pkg/delivery/mtasts"
)

// Verdicts, weakest first.
const (
	Insecure  = "insecure"  // no TLS, a TLS below 1.2, or a DANE failure: nothing a TLS rule accepts
	Encrypted = "encrypted" // TLS 1.2 or newer, the server not authenticated
	Verified  = "verified"  // DANE match, or a valid certificate for the MX name (and in the MTA-STS policy where one enforces)
)

// DANE statuses.
const (
	DANEMatch       = "match"        // authentic usable TLSA records, and one matches the server's chain
	DANEMismatch    = "mismatch"     // authentic usable TLSA records, none matches: delivery must fail (RFC 7672)
	DANENone        = "none"         // no TLSA records (authentic denial or none usable)
	DANEInsecureDNS = "insecure-dns" // the MX or TLSA answer was not DNSSEC-authenticated (unsigned zone, non-validating resolver): DANE cannot apply
)

// Resolver is the DNS the probe needs (relay.resolver).
type Resolver interface {
	// MX returns the domain's MX hosts in preference order (the domain
	// itself for an implicit MX); null for a null MX (RFC 7505);
	// authentic when the validating resolver authenticated the answer.
	MX(ctx context.Context, domain string) (hosts []string, null, authentic bool, err error)
	Addrs(ctx context.Context, host string) ([]net.IP, error)
}

// DANE checks the TLSA records of host:port against the chain a server
// presented; nil DANE: every host is DANENone.
type DANE interface {
	Check(ctx context.Context, host string, port int, chain []*x509.Certificate, now time.Time) (status string, err error)
}

// STSPolicies gives a domain's MTA-STS policy (mode "" for none): the
// mtasts.Cache.
type STSPolicies interface {
	Policy(ctx context.Context, domain string) (mode string, mx []string, err error)
}

// Prober probes domains.
type Prober struct {
	DNS  Resolver
	DANE DANE        // nil: DANE not checked (DANENone)
	STS  STSPolicies // nil: no MTA-STS
	// Roots verify MX certificates (system roots plus relay.ca_files);
	// nil: the system roots.
	Roots    *x509.CertPool
	Port     int    // 0: 25 (relay.mx_port, for tests)
	Hostname string // our EHLO name
	Timeout  time.Duration
	Now      func() time.Time
}

// Certificate is what the server's certificate is, judged for the MX
// host name.
type Certificate struct {
	Valid         bool `json:"valid"` // PKIX: chain to a trusted root, in date, name matches
	SelfSigned    bool `json:"self_signed"`
	Expired       bool `json:"expired"` // or not yet valid
	ChainComplete bool `json:"chain_complete"`
	NameMatch     bool `json:"name_match"`
}

// STS is a host's standing under the domain's MTA-STS policy.
type STS struct {
	Mode  string `json:"mode"`  // enforce | testing | none ("none" also when there is no policy)
	Match bool   `json:"match"` // the host is one the policy names
}

// Host is one MX host's result.
type Host struct {
	Host        string       `json:"host"`
	Address     string       `json:"address,omitempty"`
	StartTLS    bool         `json:"starttls"`
	TLSVersion  string       `json:"tls_version"`
	Cipher      string       `json:"cipher"`
	Certificate *Certificate `json:"certificate"`
	DANE        string       `json:"dane"`
	MTASTS      STS          `json:"mta_sts"`
	Verdict     string       `json:"verdict"`
	Reason      string       `json:"reason,omitempty"`
	Error       string       `json:"error,omitempty"` // the host could not be probed
}

// Report is a domain's result, as `sealgate tls check --output json`
// prints it.
type Report struct {
	Domain    string    `json:"domain"`
	MX        []Host    `json:"mx"`
	Verdict   string    `json:"verdict"` // the weakest of the hosts probed
	DANE      bool      `json:"dane"`    // every host probed matched DANE
	Reason    string    `json:"reason,omitempty"`
	CheckedAt time.Time `json:"checked_at"`
}

// ErrUnreachable: no MX host of the domain could be probed; nothing can
// be said about the TLS delivery would get.
var ErrUnreachable = errors.New("tlscheck: no MX host could be probed")

// Check probes every MX host of domain. The domain's verdict is that of
// its weakest host that answered: delivery may reach any of them. Hosts
// that did not answer are listed with their error and left out of the
// verdict (the relay checks each connection anyway); when none answered,
// the error is ErrUnreachable.
func (p *Prober) Check(ctx context.Context, domain string) (Report, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	r := Report{Domain: domain, MX: []Host{}, CheckedAt: p.now().UTC()}
	hosts, null, mxAuthentic, err := p.DNS.MX(ctx, domain)
	if err != nil {
		return r, fmt.Errorf("tlscheck: MX of %s: %w", domain, err)
	}
	if null {
		r.Verdict, r.Reason = Insecure, "null MX: the domain accepts no mail"
		return r, nil
	}
	mode, patterns := "", []string(nil)
	if p.STS != nil {
		if mode, patterns, err = p.STS.Policy(ctx, domain); err != nil {
			return r, fmt.Errorf("tlscheck: MTA-STS policy of %s: %w", domain, err)
		}
	}
	probed := 0
	r.DANE = true
	for _, h := range hosts {
		host := p.probe(ctx, h, mxAuthentic, mode, patterns)
		r.MX = append(r.MX, host)
		if host.Error != "" {
			continue
		}
		probed++
		if r.Verdict == "" || rank(host.Verdict) < rank(r.Verdict) {
			r.Verdict, r.Reason = host.Verdict, host.Host+": "+host.Reason
		}
		if host.DANE != DANEMatch {
			r.DANE = false
		}
	}
	if probed == 0 {
		r.DANE, r.Verdict = false, ""
		return r, fmt.Errorf("%w (%s, %d hosts)", ErrUnreachable, domain, len(hosts))
	}
	return r, nil
}

func rank(v string) int {
	switch v {
	case Verified:
		return 2
	case Encrypted:
		return 1
	}
	return 0
}

func (p *Prober) probe(ctx context.Context, name string, mxAuthentic bool, stsMode string, stsMX []string) Host {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	h := Host{Host: name, DANE: DANENone, MTASTS: STS{Mode: "none"}}
	if p.DANE != nil && !mxAuthentic {
		// RFC 7672 §2.2.1: an MX answer that is not authenticated may
		// name the attacker's host, whose own signed zone would match
		// any TLSA it likes: no DANE from such a name.
		h.DANE = DANEInsecureDNS
	}
	if stsMode != "" {
		h.MTASTS = STS{Mode: stsMode, Match: matchMX(stsMX, name)}
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ips, err := p.DNS.Addrs(ctx, name)
	if err != nil || len(ips) == 0 {
		h.Error = fmt.Sprintf("no address: %v", err)
		return h
	}
	port := p.Port
	if port == 0 {
		port = 25
	}
	var conn net.Conn
	var d net.Dialer
	for _, ip := range ips {
		addr := net.JoinHostPort(ip.String(), strconv.Itoa(port))
		if conn, err = d.DialContext(ctx, "tcp", addr); err == nil {
			h.Address = addr
			break
		}
	}
	if conn == nil {
		h.Error = fmt.Sprintf("connecting: %v", err)
		return h
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c, err := smtp.NewClient(conn, name)
	if err != nil {
		h.Error = fmt.Sprintf("greeting: %v", err)
		return h
	}
	defer c.Close()
	helo := p.Hostname
	if helo == "" {
		helo = "localhost"
	}
	if err := c.Hello(helo); err != nil {
		h.Error = fmt.Sprintf("EHLO: %v", err)
		return h
	}
	if h.StartTLS, _ = c.Extension("STARTTLS"); !h.StartTLS {
		h.Verdict, h.Reason = Insecure, "no STARTTLS"
		return p.judge(h)
	}
	// Any certificate is accepted to look at it; the verdict comes from
	// the checks below, never from the handshake having succeeded.
	cfg := &tls.Config{ServerName: name, InsecureSkipVerify: true, MinVersion: tls.VersionTLS10} //nolint:gosec // inspected below
	if err := c.StartTLS(cfg); err != nil {
		h.Verdict, h.Reason = Insecure, "TLS handshake failed: "+err.Error()
		return p.judge(h)
	}
	st, _ := c.TLSConnectionState()
	h.TLSVersion, h.Cipher = tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite)
	now := p.now()
	h.Certificate = p.certificate(st.PeerCertificates, name, now)
	if p.DANE != nil && mxAuthentic {
		status, err := p.DANE.Check(ctx, name, port, st.PeerCertificates, now)
		if err != nil {
			// A TLSA lookup that fails is no reason to believe there is
			// none: treated like records that do not match.
			status = DANEMismatch
			h.Reason = "TLSA lookup failed: " + err.Error()
		}
		h.DANE = status
	}
	_ = c.Quit()
	return p.judge(h)
}

// judge sets the verdict of a host that answered (see the constants).
func (p *Prober) judge(h Host) Host {
	if h.Verdict != "" { // no STARTTLS or no handshake
		if h.DANE == DANEMismatch || h.MTASTS.Mode == "enforce" {
			h.Reason += " (the domain publishes DANE or enforces MTA-STS: delivery would fail)"
		}
		return h
	}
	switch {
	case h.DANE == DANEMismatch:
		h.Verdict = Insecure
		if h.Reason == "" {
			h.Reason = "DANE: no TLSA record matches the server's certificate"
		}
	case h.DANE == DANEMatch && tlsAtLeast12(h.TLSVersion):
		h.Verdict, h.Reason = Verified, "DANE: the certificate matches an authenticated TLSA record"
	case !tlsAtLeast12(h.TLSVersion):
		h.Verdict, h.Reason = Insecure, h.TLSVersion+" is below the TLS 1.2 minimum"
	case h.MTASTS.Mode == "enforce" && !h.MTASTS.Match:
		h.Verdict, h.Reason = Encrypted, "MTA-STS enforce: the host is not in the policy's mx list"
	case h.Certificate.Valid && h.MTASTS.Mode == "enforce":
		h.Verdict, h.Reason = Verified, "MTA-STS enforce: the host is in the policy and its certificate is valid"
	case h.Certificate.Valid:
		h.Verdict, h.Reason = Verified, "PKIX: the certificate is valid for the MX name"
	default:
		h.Verdict, h.Reason = Encrypted, "TLS, but the certificate is not valid for the MX name ("+h.Certificate.Problems()+")"
	}
	return h
}

func tlsAtLeast12(v string) bool { return v == "TLS 1.2" || v == "TLS 1.3" }

// Problems names what is wrong with a certificate that is not valid for
// the MX name ("not trusted" when none of the facts says why).
func (c *Certificate) Problems() string {
	var p []string
	if c.Expired {
		p = append(p, "expired")
	}
	if c.SelfSigned {
		p = append(p, "self-signed")
	}
	if !c.NameMatch {
		p = append(p, "wrong name")
	}
	if !c.ChainComplete && !c.SelfSigned {
		p = append(p, "no chain to a trusted root")
	}
	if len(p) == 0 {
		p = append(p, "not trusted")
	}
	return strings.Join(p, ", ")
}

func (p *Prober) certificate(chain []*x509.Certificate, name string, now time.Time) *Certificate {
	c := &Certificate{}
	if len(chain) == 0 {
		return c
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	c.Expired = now.Before(leaf.NotBefore) || now.After(leaf.NotAfter)
	c.SelfSigned = leaf.Subject.String() == leaf.Issuer.String() && leaf.CheckSignatureFrom(leaf) == nil
	c.NameMatch = leaf.VerifyHostname(name) == nil
	opts := x509.VerifyOptions{Roots: p.Roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	_, err := leaf.Verify(opts)
	if c.Expired {
		// Whether the chain is complete does not depend on the date.
		opts.CurrentTime = leaf.NotAfter.Add(-time.Second)
		_, err = leaf.Verify(opts)
	}
	c.ChainComplete = err == nil
	opts.DNSName, opts.CurrentTime = name, now
	_, err = leaf.Verify(opts)
	c.Valid = err == nil
	return c
}

// matchMX is RFC 8461 §4.1 matching.
func matchMX(patterns []string, host string) bool {
	return (&mtasts.Policy{MX: patterns}).Match(host)
}

func (p *Prober) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}
