package directory

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/sealgate/sealgate/pkg/store"
)

// RecipientWriter is the part of *store.Store that imports write to.
type RecipientWriter interface {
	PutRecipientCert(ctx context.Context, c store.RecipientCert) error
}

// Stored is one certificate saved by an import or a harvest.
type Stored struct {
	Email        string    `json:"email"`
	Fingerprint  string    `json:"fingerprint_sha256"`
	Subject      string    `json:"subject"`
	NotAfter     time.Time `json:"not_after"`
	Source       string    `json:"source"`
	CA           bool      `json:"ca"`
	Capabilities bool      `json:"capabilities"`
}

// ImportCertificates stores the certificates in data (PEM, DER or a
// PKCS #7 .p7c) for every email address they are issued to. CA
// certificates in the same file are stored under the same addresses so
// that lookups can build the chain. Nothing is validated here: the lookup
// validates every time, so an import cannot make an untrusted or expired
// certificate usable.
func ImportCertificates(ctx context.Context, w RecipientWriter, data []byte) ([]Stored, error) {
	certs, err := ParseCertificates(data)
	if err != nil {
		return nil, err
	}
	return storeCertificates(ctx, w, certs, store.SourceImport, nil)
}

// storeCertificates saves leaves under each of their addresses, with caps
// (DER SMIMECapabilities, may be nil), and the CA certificates of the
// bag under the same addresses.
func storeCertificates(ctx context.Context, w RecipientWriter, certs []*x509.Certificate, source string, caps []byte) ([]Stored, error) {
	leaves, cas := splitCerts(certs)
	if len(leaves) == 0 {
		return nil, errors.New("no end-entity certificate (only CA certificates): add CAs to trust.ca_files instead")
	}
	var out []Stored
	var addrs []string
	seen := map[string]bool{}
	put := func(c *x509.Certificate, email string, caps []byte, ca bool) error {
		err := w.PutRecipientCert(ctx, store.RecipientCert{Email: email, DER: c.Raw, Source: source, Capabilities: caps})
		if err != nil {
			return fmt.Errorf("store certificate %q for %s: %w", c.Subject.String(), email, err)
		}
		out = append(out, Stored{Email: email, Fingerprint: Fingerprint(c), Subject: c.Subject.String(),
			NotAfter: c.NotAfter, Source: source, CA: ca, Capabilities: len(caps) > 0})
		return nil
	}
	for _, l := range leaves {
		la := CertAddresses(l)
		if len(la) == 0 {
			return out, fmt.Errorf("certificate %q names no email address: nobody to file it under", l.Subject.String())
		}
		for _, a := range la {
			if err := put(l, a, caps, false); err != nil {
				return out, err
			}
			if !seen[a] {
				seen[a] = true
				addrs = append(addrs, a)
			}
		}
	}
	for _, ca := range cas {
		for _, a := range addrs {
			if err := put(ca, a, nil, true); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}
