package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/health"
	"github.com/sealgate/sealgate/pkg/metrics"
	"github.com/sealgate/sealgate/pkg/pki"
	"github.com/sealgate/sealgate/pkg/pki/embeddedca"
)

// syncObserver sees every PKI sync round of serve (the metrics).
type syncObserver interface {
	ObserveSync(metrics.SyncRound)
}

// newServeMetrics builds serve's metrics: this node's queue and spool,
// the store's certificates, and the PKI settings the alerting rules
// compare against (the sync interval only when serve runs the sync).
func newServeMetrics(cfg *config.Config, rt *runtime) *metrics.Metrics {
	return metrics.New(metrics.Options{Queue: rt.store, Certs: rt.store, Node: rt.node, SpoolDir: rt.spool.Dir(),
		RenewBefore: cfg.PKI.RenewBefore.Duration, SyncInterval: cfg.PKI.SyncInterval.Duration, Logger: rt.log})
}

// syncRound is what the metrics count of one sync round.
func syncRound(res pki.Result, err error) metrics.SyncRound {
	r := metrics.SyncRound{Result: metrics.SyncSuccess, Issued: res.Issued, Renewed: res.Renewed, Revoked: res.Revoked, Failed: res.Failed}
	switch {
	case err != nil:
		r.Result = metrics.SyncFailure
	case res.Failed > 0:
		r.Result = metrics.SyncPartial
	}
	return r
}

// readiness is /readyz: the store answers, the spool takes a file, the
// issuer is there (the embedded CA loaded with a valid issuing
// certificate, or step-ca's /health answering).
func readiness(rt *runtime, ca *embeddedca.CA, iss pki.Issuer) *health.Ready {
	return &health.Ready{Logger: rt.log, Checks: []health.Check{
		{Name: "store", Run: rt.store.Ping},
		{Name: "spool", Run: health.DirWritable(rt.spool.Dir())},
		{Name: "issuer", Run: issuerReady(ca, iss, time.Now)},
	}}
}

// healthChecker is an issuer that can be asked whether it is up
// (stepca.Client).
type healthChecker interface {
	Health(ctx context.Context) error
}

func issuerReady(ca *embeddedca.CA, iss pki.Issuer, now func() time.Time) func(context.Context) error {
	return func(ctx context.Context) error {
		if ca != nil {
			c := ca.IssuingCert()
			if c == nil {
				return errors.New("embedded CA: no issuing certificate loaded")
			}
			if t := now(); t.Before(c.NotBefore) || !t.Before(c.NotAfter) {
				return fmt.Errorf("embedded CA: the issuing certificate is valid %s to %s only", c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339))
			}
			return nil
		}
		if h, ok := iss.(healthChecker); ok {
			return h.Health(ctx)
		}
		if iss == nil {
			return errors.New("no certificate issuer configured")
		}
		return nil // an issuer without a health check: opened at start, assumed up
	}
}

type noSyncObserver struct{}

func (noSyncObserver) ObserveSync(metrics.SyncRound) {}
