package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/pki"
	"github.com/sealgate/sealgate/pkg/pki/stepca"
)

// openStepCA connects the remote step-ca issuer ([pki.stepca]).
func openStepCA(ctx context.Context, cfg *config.Config) (pki.Issuer, error) {
	s := cfg.PKI.StepCA
	pw, err := os.ReadFile(cfg.Path(s.ProvisionerPasswordFile))
	if err != nil {
		return nil, asUsage(fmt.Errorf("pki.stepca.provisioner_password_file: %w", err))
	}
	return stepca.New(ctx, stepca.Config{
		URL:         s.URL,
		RootFile:    cfg.Path(s.RootFile),
		Provisioner: s.Provisioner,
		Password:    []byte(strings.TrimRight(string(pw), "\r\n")),
	})
}
