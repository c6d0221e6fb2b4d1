package directory

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
)

// OwnCertificates gives the certificates of the organisation's own users
// (pkg/pki satisfies it): a message to a colleague is encrypted to the
// certificate we issued. It returns the user's current certificates (and
// may add the issuing CA certificates), none when email is not one of our
// users.
type OwnCertificates interface {
	OwnCertificates(ctx context.Context, email string) ([]*x509.Certificate, error)
}

// OwnSource is the "own users" source over pkg/pki.
func OwnSource(o OwnCertificates) Source { return ownSource{o} }

type ownSource struct{ o OwnCertificates }

func (ownSource) Name() string { return "own users" }

func (s ownSource) Find(ctx context.Context, email string) ([]Candidate, error) {
	certs, err := s.o.OwnCertificates(ctx, email)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return nil, sourceError(s.Name(), err)
		}
		return nil, sourceError(s.Name(), fmt.Errorf("read own certificates: %w", err))
	}
	return candidatesFrom(certs, nil), nil
}
