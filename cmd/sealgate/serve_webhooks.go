package main

import (
	"crypto/x509"
	"fmt"
	"log/slog"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/webhook"
)

// buildWebhooks reads the [[webhooks]] endpoints' secrets and CA files;
// nil when there are none.
func buildWebhooks(cfg *config.Config, rt *runtime, log *slog.Logger) (*webhook.Sender, error) {
	if len(cfg.Webhooks) == 0 {
		return nil, nil
	}
	s := &webhook.Sender{Store: rt.store, Node: rt.node, Log: log}
	for i, w := range cfg.Webhooks {
		secrets, err := config.ReadWebhookSecrets(cfg.Path(w.SecretFile))
		if err != nil {
			return nil, fmt.Errorf("webhooks[%d].secret_file: %w", i, err)
		}
		ep := webhook.Endpoint{Name: w.Name, URL: w.URL, Secrets: secrets, Events: w.Events,
			Timeout: w.Timeout.Duration, MaxBackoff: w.MaxBackoff.Duration}
		if w.CAFile != "" {
			roots, err := x509.SystemCertPool()
			if err != nil {
				return nil, fmt.Errorf("webhooks[%d].ca_file: the system roots: %w", i, err)
			}
			certs, err := config.PEMCertificates(cfg.Path(w.CAFile))
			if err != nil {
				return nil, fmt.Errorf("webhooks[%d].ca_file: %w", i, err)
			}
			for _, c := range certs {
				roots.AddCert(c)
			}
			ep.RootCAs = roots
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s, nil
}
