package inbound

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/sealgate/sealgate/pkg/directory"
)

// Evaluator is how the directory judges a certificate for an address
// (*directory.Validator): chain to the trust store, validity, key usage,
// revocation per trust.revocation, address.
type Evaluator interface {
	Evaluate(ctx context.Context, c directory.Candidate, email string) directory.Evaluated
}

// DirectorySigners checks signers exactly as the directory validates
// recipient certificates.
type DirectorySigners struct{ Validator Evaluator }

// CheckSigner implements SignerCheck.
func (d DirectorySigners) CheckSigner(ctx context.Context, signer *x509.Certificate, certs []*x509.Certificate, from string) error {
	addr, err := directory.NormalizeAddress(from)
	if err != nil {
		return fmt.Errorf("the From address %q is not an address", clean(from))
	}
	ev := d.Validator.Evaluate(ctx, directory.Candidate{Certificate: signer, Intermediates: certs}, addr)
	if ev.Valid {
		return nil
	}
	var failed []string
	for _, c := range ev.Checks {
		if !c.OK {
			name := c.Name
			switch c.Name {
			case directory.CheckAddress:
				name = "signer is not the From address " + addr
			case directory.CheckChain:
				name = "untrusted signer"
			case directory.CheckRevocation:
				name = "signer revocation"
			}
			failed = append(failed, name+": "+c.Detail)
		}
	}
	if len(failed) == 0 {
		return errors.New("signer certificate not valid")
	}
	return errors.New(strings.Join(failed, "; "))
}
