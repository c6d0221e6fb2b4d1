package main

import (
	"context"

	"github.com/sealgate/sealgate/pkg/directory"
	"github.com/sealgate/sealgate/pkg/smime"
)

// smimeVerifier adapts pkg/smime to the directory's harvester: the
// signature must be intact; trust is decided at each lookup.
type smimeVerifier struct{}

func (smimeVerifier) VerifySignature(ctx context.Context, msg []byte) (directory.VerifiedSignature, error) {
	signer, certs, caps, err := smime.SignerInfo(msg)
	if err != nil {
		return directory.VerifiedSignature{}, err
	}
	return directory.VerifiedSignature{Signer: signer, Certificates: certs, Capabilities: caps}, nil
}
