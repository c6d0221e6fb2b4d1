// Package dane checks a TLS server's certificate chain against the TLSA
// records of its MX host, as SMTP DANE does it (RFC 7672, with RFC 6698
// and RFC 7671): DANE-EE(3) pins the server's own certificate or key,
// DANE-TA(2) a trust anchor in the chain the server presented.
//
// The records must come from an authenticated (DNSSEC-validated) answer;
// that is the resolver's business, not this package's.
package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// TLSA is one TLSA record (RFC 6698 2.1).
type TLSA struct {
	Usage, Selector, MatchingType uint8
	Data                          []byte
}

// Certificate usages, selectors and matching types (RFC 6698, RFC 7218
// names).
const (
	UsagePKIXTA uint8 = 0 // not used by SMTP DANE
	UsagePKIXEE uint8 = 1 // not used by SMTP DANE
	UsageDANETA uint8 = 2
	UsageDANEEE uint8 = 3

	SelectorCert uint8 = 0 // the whole certificate (DER)
	SelectorSPKI uint8 = 1 // its SubjectPublicKeyInfo (DER)

	MatchFull   uint8 = 0
	MatchSHA256 uint8 = 1
	MatchSHA512 uint8 = 2
)

func (r TLSA) String() string {
	return fmt.Sprintf("%d %d %d %X", r.Usage, r.Selector, r.MatchingType, r.Data)
}

// Usable drops records SMTP DANE does not use: PKIX-TA(0) and PKIX-EE(1)
// (RFC 7672 3.1.3), unknown usages, selectors and matching types, and
// digests of the wrong length (RFC 7671 5.1 and 5.2: such records are
// unusable, not errors). An empty result means DANE does not apply.
func Usable(recs []TLSA) []TLSA {
	var out []TLSA
	for _, r := range recs {
		if r.Usage != UsageDANETA && r.Usage != UsageDANEEE {
			continue
		}
		if r.Selector != SelectorCert && r.Selector != SelectorSPKI {
			continue
		}
		switch r.MatchingType {
		case MatchFull:
			if len(r.Data) == 0 {
				continue
			}
		case MatchSHA256:
			if len(r.Data) != sha256.Size {
				continue
			}
		case MatchSHA512:
			if len(r.Data) != sha512.Size {
				continue
			}
		default:
			continue
		}
		out = append(out, r)
	}
	return out
}

// Reason says why a chain does not satisfy the records.
type Reason string

// The reasons, from "nothing to check" to "almost".
const (
	ReasonNoUsableRecords Reason = "no usable TLSA records"
	ReasonNoCertificate   Reason = "server presented no certificate"
	ReasonNoMatch         Reason = "no certificate matches a TLSA record"
	ReasonChain           Reason = "certificate does not chain to the TLSA trust anchor"
	ReasonExpired         Reason = "certificate expired or not yet valid"
	ReasonName            Reason = "certificate name does not match the MX host"
)

// rank orders reasons by how far the check got, to report the closest
// miss when several records fail.
func (r Reason) rank() int {
	switch r {
	case ReasonName:
		return 5
	case ReasonExpired:
		return 4
	case ReasonChain:
		return 3
	case ReasonNoMatch:
		return 2
	case ReasonNoCertificate:
		return 1
	}
	return 0
}

// Error is why Verify refused a chain.
type Error struct {
	Reason Reason
	Detail string // which record or names; never key material
	Err    error  // the x509 error for chain and expiry failures
}

func (e *Error) Error() string {
	s := "dane: " + string(e.Reason)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Verify reports whether the chain the server presented (leaf first)
// satisfies recs for the MX host name(s) in names (A-labels; the MX host
// first, then for example the next-hop domain).
//
// DANE-EE(3): the leaf's certificate or public key matches; neither its
// names nor its validity dates are checked (RFC 7672 3.1.1). DANE-TA(2):
// a certificate the server presented above the leaf matches, the leaf
// chains to it (signatures, validity at now, CA constraints) and one of
// the leaf's names matches one of names (RFC 7672 3.2.2, 3.2.3). One
// matching record is enough. The error is an *Error.
func Verify(recs []TLSA, chain []*x509.Certificate, names []string, now time.Time) error {
	usable := Usable(recs)
	if len(usable) == 0 {
		return &Error{Reason: ReasonNoUsableRecords, Detail: fmt.Sprintf("%d records, none DANE-TA(2)/DANE-EE(3) with a known selector and matching type", len(recs))}
	}
	if len(chain) == 0 || chain[0] == nil {
		return &Error{Reason: ReasonNoCertificate}
	}
	for _, c := range chain {
		if c == nil {
			return &Error{Reason: ReasonNoCertificate, Detail: "a nil certificate in the chain"}
		}
	}
	best := &Error{Reason: ReasonNoMatch, Detail: fmt.Sprintf("%d usable records, %d certificates", len(usable), len(chain))}
	for _, r := range usable {
		var err *Error
		switch r.Usage {
		case UsageDANEEE:
			if matches(r, chain[0]) {
				return nil
			}
			continue
		case UsageDANETA:
			err = verifyTA(r, chain, names, now)
		}
		if err == nil {
			return nil
		}
		if err.Reason.rank() > best.Reason.rank() {
			best = err
		}
	}
	return best
}

// verifyTA checks one DANE-TA(2) record: a presented issuer certificate
// matches, the leaf chains to it, and the leaf's name matches.
func verifyTA(r TLSA, chain []*x509.Certificate, names []string, now time.Time) *Error {
	var best *Error
	// The leaf itself is never the trust anchor of a DANE-TA record: the
	// anchor issues (directly or through intermediates) the leaf.
	for i := 1; i < len(chain); i++ {
		if !matches(r, chain[i]) {
			continue
		}
		err := chainsTo(chain, i, now)
		if err == nil {
			if nameMatches(chain[0], names) {
				return nil
			}
			err = &Error{Reason: ReasonName, Detail: fmt.Sprintf("certificate names %s, MX host %s", certNames(chain[0]), strings.Join(names, ", "))}
		}
		if best == nil || err.Reason.rank() > best.Reason.rank() {
			best = err
		}
	}
	if best == nil {
		return &Error{Reason: ReasonNoMatch}
	}
	return best
}

// chainsTo verifies the leaf up to chain[ta], the matched anchor, with
// the certificates in between as intermediates.
func chainsTo(chain []*x509.Certificate, ta int, now time.Time) *Error {
	roots := x509.NewCertPool()
	roots.AddCert(chain[ta])
	inter := x509.NewCertPool()
	for _, c := range chain[1:ta] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		// SMTP servers' certificates carry serverAuth, or nothing, or
		// whatever their CA put there: DANE does not judge usage.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err == nil {
		return nil
	}
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Reason == x509.Expired {
		return &Error{Reason: ReasonExpired, Detail: "at " + now.UTC().Format(time.RFC3339), Err: err}
	}
	return &Error{Reason: ReasonChain, Err: err}
}

// matches reports whether the record's data matches cert.
func matches(r TLSA, cert *x509.Certificate) bool {
	var data []byte
	switch r.Selector {
	case SelectorCert:
		data = cert.Raw
	case SelectorSPKI:
		data = cert.RawSubjectPublicKeyInfo
	default:
		return false
	}
	if len(data) == 0 {
		return false
	}
	switch r.MatchingType {
	case MatchFull:
		return bytes.Equal(data, r.Data)
	case MatchSHA256:
		sum := sha256.Sum256(data)
		return bytes.Equal(sum[:], r.Data)
	case MatchSHA512:
		sum := sha512.Sum512(data)
		return bytes.Equal(sum[:], r.Data)
	}
	return false
}

// nameMatches applies RFC 7672 3.2.3: the DNS names of the subject
// alternative name extension, or, only when there are none, the subject's
// common name, against each reference name. A wildcard is allowed as the
// whole leftmost label and matches exactly one label.
func nameMatches(cert *x509.Certificate, names []string) bool {
	presented := cert.DNSNames
	if len(presented) == 0 && cert.Subject.CommonName != "" {
		presented = []string{cert.Subject.CommonName}
	}
	for _, ref := range names {
		ref = normalize(ref)
		if ref == "" {
			continue
		}
		for _, p := range presented {
			if matchName(normalize(p), ref) {
				return true
			}
		}
	}
	return false
}

func normalize(name string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
}

func matchName(pattern, host string) bool {
	if pattern == "" || host == "" {
		return false
	}
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		// "*.example.com" matches "mx.example.com", not "example.com"
		// nor "a.mx.example.com"; a bare "*." or "*.com"-like pattern
		// needs at least two labels after the wildcard.
		if !strings.Contains(rest, ".") || strings.Contains(rest, "*") {
			return false
		}
		label, parent, ok := strings.Cut(host, ".")
		return ok && label != "" && parent == rest
	}
	if strings.Contains(pattern, "*") {
		return false // partial wildcards ("mx*.example.com") are not honoured
	}
	return pattern == host
}

func certNames(c *x509.Certificate) string {
	if len(c.DNSNames) > 0 {
		return strings.Join(c.DNSNames, ", ")
	}
	return "CN=" + c.Subject.CommonName
}
