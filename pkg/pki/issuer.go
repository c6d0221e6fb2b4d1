// Package pki keeps every eligible user's S/MIME certificate alive: it
// generates and stores per-user keys (sealed at rest), asks an Issuer for
// certificates, renews them before expiry, revokes them when a user leaves
// the configured groups and publishes them back to the directory.
//
// The pieces are small interfaces so that the CA (embedded smallstep
// authority, remote step-ca), the key storage (store today, an HSM later)
// and the user directory (static config, LDAP/AD) can be swapped.
package pki

import (
	"context"
	"crypto/x509"
	"time"
)

// OIDs and revocation reasons used across the package (RFC 5280 5.3.1).
const (
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
)

// ReasonCodes maps the names accepted on the command line (`cert revoke
// --reason`) to RFC 5280 reason codes.
var ReasonCodes = map[string]int{
	"unspecified":          ReasonUnspecified,
	"keyCompromise":        ReasonKeyCompromise,
	"affiliationChanged":   ReasonAffiliationChanged,
	"superseded":           ReasonSuperseded,
	"cessationOfOperation": ReasonCessationOfOperation,
}

// IssueRequest is what an Issuer needs to sign one user's certificate.
type IssueRequest struct {
	// CSR carries the user's public key and proves we hold the private key.
	CSR *x509.CertificateRequest
	// Emails are the rfc822Name SANs; the first is the primary address and
	// goes into the subject as well.
	Emails []string
	// Name is the user's display name for the subject CN ("" uses the email).
	Name string
	// Validity is the wanted lifetime; an issuer may shorten it (a step-ca
	// provisioner's maximum), never lengthen it.
	Validity time.Duration
}

// Issued is a signed certificate with the chain up to (not including) the root.
type Issued struct {
	Leaf  *x509.Certificate
	Chain []*x509.Certificate // intermediates, leaf's issuer first
}

// Issuer signs and revokes per-user S/MIME certificates. Implementations:
// embeddedca.CA (smallstep authority in-process) and stepca.Client (remote
// step-ca through its API).
type Issuer interface {
	Issue(ctx context.Context, req IssueRequest) (Issued, error)
	// Revoke makes the certificate appear on the CA's CRL. Revoking an
	// already revoked certificate is not an error (rollouts are retried).
	Revoke(ctx context.Context, cert *x509.Certificate, reasonCode int) error
	// Roots are the trust anchors recipients must install; Intermediates
	// are sent along with signed mail.
	Roots(ctx context.Context) ([]*x509.Certificate, error)
	Intermediates(ctx context.Context) ([]*x509.Certificate, error)
}
