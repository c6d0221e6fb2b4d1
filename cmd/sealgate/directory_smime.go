package main

import (
	"context"
	"errors"

	"github.com/sealgate/sealgate/pkg/directory"
)

// smimeVerifier adapts pkg/smime's verification to the harvester.
type smimeVerifier struct{}

func (smimeVerifier) VerifySignature(ctx context.Context, msg []byte) (directory.VerifiedSignature, error) {
	return directory.VerifiedSignature{}, errors.New("this build cannot verify S/MIME signatures yet (pkg/smime not merged)")
}
