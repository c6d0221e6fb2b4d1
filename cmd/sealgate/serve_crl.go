package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/sealgate/sealgate/pkg/pki/embeddedca"
)

// crlCheckEvery is how often serve asks the embedded CA whether its CRL
// needs re-signing. The CRL is valid for a week and re-signed once half
// of that is gone, so hourly checks leave days of margin for a failing
// disk or a stopped serve (which checks again as it starts).
const crlCheckEvery = time.Hour

// crlRefresher is the part of the embedded CA the refresher uses.
type crlRefresher interface {
	RefreshCRLIfDue() (embeddedca.CRLRefresh, error)
}

// refreshCRL keeps the embedded CA's published CRL from expiring until
// ctx ends, whether or not anybody fetches /crl (the handler only reads
// crl.der; a copy on another web server is only as fresh as the file).
// ca is nil with a remote step-ca, which keeps its own CRL.
func refreshCRL(ctx context.Context, ca *embeddedca.CA, log *slog.Logger) {
	if ca == nil {
		return
	}
	t := time.NewTicker(crlCheckEvery)
	defer t.Stop()
	keepCRLFresh(ctx, ca, t.C, log)
}

// keepCRLFresh checks once at once and then on every tick.
func keepCRLFresh(ctx context.Context, ca crlRefresher, ticks <-chan time.Time, log *slog.Logger) {
	check := func() {
		res, err := ca.RefreshCRLIfDue()
		switch {
		case err != nil:
			log.Error("CRL refresh failed; the published CRL expires at its nextUpdate unless a later check succeeds",
				"err", err, "next_check_in", crlCheckEvery.String())
		case res.Refreshed:
			log.Info("CRL re-signed", "number", res.Number, "next_update", res.NextUpdate.UTC().Format(time.RFC3339), "why", res.Reason)
		default:
			log.Debug("CRL is fresh", "number", res.Number, "why", res.Reason)
		}
	}
	check()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
			check()
		}
	}
}
