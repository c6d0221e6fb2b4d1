package mxrelay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/policy"
)

// errDANE marks a DANE verification failure (the chain keeps the reason
// text only: the dane error's detail is already in it).
var errDANE = errors.New("the certificate is not the one DNSSEC publishes")

// hostTLS is what one MX host's connection demands of TLS.
type hostTLS struct {
	mode policy.TLSMode
	// starttls: ask for it; required: no TLS (or a failed handshake)
	// fails the host instead of going on in plain text.
	starttls, required bool
	min                uint16
	// by is how the certificate is verified: "dane", "mta-sts", "pkix",
	// or "" (not checked).
	by    string
	tlsa  []TLSA
	names []string // DANE reference identifiers: the MX host, and its CNAME target first
}

func (p hostTLS) key() string { return p.mode.String() + "/" + p.by + "/" + strings.Join(p.names, ",") }

// stsPolicy is a domain's MTA-STS policy as far as delivery needs it.
type stsPolicy struct {
	enforce bool
	mx      []string
}

// matches says host fits one of the policy's mx patterns (RFC 8461 4.1:
// "*." matches exactly one leftmost label).
func (s stsPolicy) matches(host string) bool {
	for _, p := range s.mx {
		p = strings.ToLower(strings.TrimSuffix(p, "."))
		if rest, ok := strings.CutPrefix(p, "*."); ok {
			label, parent, found := strings.Cut(host, ".")
			if found && label != "" && parent == rest {
				return true
			}
			continue
		}
		if p == host {
			return true
		}
	}
	return false
}

// hostPolicy decides the TLS for host under mode. authentic says the MX
// and address answers that led here were DNSSEC-authenticated, without
// which TLSA records are not looked up (RFC 7672 2.2).
//
// canonical is the end of host's CNAME chain ("" for no alias): with an
// authentic expansion, TLSA records are looked up there first, then at
// host, and a DANE-TA certificate may name either (RFC 7672 2.2.2).
func (r *Relay) hostPolicy(ctx context.Context, host, canonical string, authentic bool, mode policy.TLSMode, sts stsPolicy) (hostTLS, error) {
	switch mode {
	case policy.TLSNone:
		return hostTLS{mode: mode}, nil
	case policy.TLSOpportunistic:
		return hostTLS{mode: mode, starttls: true, min: tls.VersionTLS10}, nil
	case policy.TLSRequired:
		return hostTLS{mode: mode, starttls: true, required: true, min: tls.VersionTLS12}, nil
	case policy.TLSVerified, policy.TLSDANE:
	default:
		return hostTLS{}, fmt.Errorf("unknown tls mode %v", mode)
	}
	pol := hostTLS{mode: mode, starttls: true, required: true, min: tls.VersionTLS12}
	var why string
	switch {
	case r.DANE == nil:
		why = "DANE: no DANE verifier configured"
	case !authentic:
		why = "DANE: the MX or address records are not DNSSEC-authenticated (is relay.resolver a validating resolver?)"
	default:
		bases := []string{host}
		if canonical != "" && canonical != host {
			bases = []string{canonical, host}
		}
		var (
			recs []TLSA
			ok   bool
			err  error
		)
		for _, base := range bases {
			recs, ok, err = r.Resolver.LookupTLSA(ctx, base, r.port())
			if !errors.Is(err, ErrNotFound) {
				break
			}
		}
		pol.names = bases
		switch {
		case errors.Is(err, ErrNotFound):
			why = "DANE: no TLSA records"
		case err != nil:
			// RFC 7672 2.2: a failed TLSA lookup makes the host unusable
			// (it may be an attacker hiding the records), whatever the mode.
			return hostTLS{}, fmt.Errorf("DANE: TLSA lookup failed: %w", err)
		case !ok:
			why = "DANE: the TLSA records are not DNSSEC-authenticated"
		default:
			if usable := r.DANE.Usable(recs); len(usable) > 0 {
				pol.by, pol.tlsa = "dane", usable
				return pol, nil
			}
			why = "DANE: no usable TLSA records"
		}
	}
	switch {
	case mode == policy.TLSDANE:
		return hostTLS{}, errors.New(why + " (tls = dane)")
	case sts.enforce:
		pol.by = "mta-sts"
	default:
		pol.by = "pkix"
	}
	return pol, nil
}

// tlsConfig is the client configuration for host under pol. Verification
// runs in VerifyConnection, so that each way (DANE, MTA-STS, PKIX) says
// exactly what failed.
func (r *Relay) tlsConfig(host string, pol hostTLS) *tls.Config {
	conf := &tls.Config{ServerName: host, MinVersion: pol.min, InsecureSkipVerify: true}
	if pol.by == "" {
		return conf
	}
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no certificate")
		}
		now := r.now()
		if pol.by == "dane" {
			names := pol.names
			if len(names) == 0 {
				names = []string{host}
			}
			if err := r.DANE.Verify(pol.tlsa, cs.PeerCertificates, names, now); err != nil {
				// dane's errors begin "dane: ".
				return fmt.Errorf("DANE: %s: %w", strings.TrimPrefix(err.Error(), "dane: "), errDANE)
			}
			return nil
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: r.RootCAs, Intermediates: inter, DNSName: host, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err != nil {
			return fmt.Errorf("%s: %s", verifierName(pol.by), explain(err))
		}
		return nil
	}
	return conf
}

func verifierName(by string) string {
	if by == "mta-sts" {
		return "MTA-STS (certificate must be PKIX-valid for the MX name)"
	}
	return "PKIX"
}

// explain names the usual certificate faults in words.
func explain(err error) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &unknown):
		if c := unknown.Cert; c != nil && c.Subject.String() == c.Issuer.String() {
			return "self-signed certificate: " + err.Error()
		}
		return "certificate from an unknown authority: " + err.Error()
	case errors.As(err, &hostname):
		return "certificate does not name the MX host: " + err.Error()
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "certificate expired or not yet valid: " + err.Error()
	}
	return err.Error()
}

// hop describes a connection's TLS for the events.
func hop(host string, st tls.ConnectionState, ok bool, pol hostTLS) *events.TLS {
	if !ok {
		return &events.TLS{Host: host, VerifiedBy: "none"}
	}
	h := &events.TLS{Host: host, Version: tls.VersionName(st.Version), Cipher: tls.CipherSuiteName(st.CipherSuite), VerifiedBy: "none"}
	if pol.by != "" {
		// VerifyConnection passed, or there would be no connection.
		h.Verified, h.VerifiedBy = true, pol.by
	}
	return h
}
