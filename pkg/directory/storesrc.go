package directory

import (
	"context"
	"crypto/x509"
	"fmt"

	"github.com/sealgate/sealgate/pkg/store"
)

// RecipientStore is the part of *store.Store the store source reads.
type RecipientStore interface {
	RecipientCerts(ctx context.Context, email string) ([]store.RecipientCert, error)
}

// StoreSource offers the certificates imported by an admin or harvested
// from signed mail. CA certificates stored next to a recipient's (the chain
// of an imported .p7c) serve as intermediates.
func StoreSource(s RecipientStore) Source { return storeSource{s} }

type storeSource struct{ s RecipientStore }

func (storeSource) Name() string { return "store" }

func (s storeSource) Find(ctx context.Context, email string) ([]Candidate, error) {
	rows, err := s.s.RecipientCerts(ctx, email)
	if err != nil {
		return nil, sourceError(s.Name(), err)
	}
	var cas []*x509.Certificate
	type leaf struct {
		c      *x509.Certificate
		caps   []byte
		origin string
	}
	var leaves []leaf
	for _, r := range rows {
		c, err := x509.ParseCertificate(r.DER)
		if err != nil {
			// A bad row must not hide the good ones; it cannot be used.
			continue
		}
		if c.IsCA {
			cas = append(cas, c)
		} else {
			origin := "imported"
			if r.Source == store.SourceHarvest {
				origin = "harvested"
			}
			leaves = append(leaves, leaf{c, r.Capabilities, origin})
		}
	}
	out := make([]Candidate, 0, len(leaves))
	for _, l := range leaves {
		out = append(out, Candidate{Certificate: l.c, Intermediates: cas, Capabilities: l.caps, Origin: l.origin})
	}
	return out, nil
}

// OwnCertStore is the part of *store.Store that holds our own users'
// certificates (written by pkg/pki).
type OwnCertStore interface {
	Certificates(ctx context.Context, email string) ([]store.Certificate, error)
}

// OwnFromStore reads our users' active certificates from the store, so
// the directory does not need pkg/pki at hand. A user's aliases are found
// when the certificate names them.
func OwnFromStore(s OwnCertStore) OwnCertificates { return ownStore{s} }

type ownStore struct{ s OwnCertStore }

func (o ownStore) OwnCertificates(ctx context.Context, email string) ([]*x509.Certificate, error) {
	rows, err := o.s.Certificates(ctx, email)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for _, r := range rows {
		if r.State != "active" {
			continue
		}
		c, err := x509.ParseCertificate(r.DER)
		if err != nil {
			return nil, fmt.Errorf("certificate %s of %s: %w", r.Serial, r.Email, err)
		}
		out = append(out, c)
	}
	return out, nil
}
