package main

import (
	"context"
	"errors"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/pki"
)

// openStepCA connects the remote step-ca issuer.
func openStepCA(_ context.Context, _ *config.Config) (pki.Issuer, error) {
	return nil, errors.New("pki.issuer = \"stepca\" is not available in this build yet")
}
