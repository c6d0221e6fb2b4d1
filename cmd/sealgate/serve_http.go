package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/sealgate/sealgate/pkg/api"
	"github.com/sealgate/sealgate/pkg/capability"
	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/pki/embeddedca"
)

// internalHTTP is what the internal listener ([http] listen) serves from:
// the CRL, health, and the token-protected API. Recipient pages never
// come here; they have their own listener ([portal] listen).
type internalHTTP struct {
	rt  *runtime
	ca  *embeddedca.CA // nil with the step-ca issuer
	log *slog.Logger
	// metrics serves /metrics and ready /readyz (nil: not served).
	metrics, ready http.Handler
	// capability serves the capability API (nil: not served).
	capability *capability.Handler
}

// internalMux routes the internal listener. Every /api/v1 route is
// wrapped by auth.Require with its scope.
func internalMux(h internalHTTP) *http.ServeMux {
	mux := http.NewServeMux()
	if h.ca != nil {
		mux.Handle("GET /crl", h.ca.Handler())
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	if h.metrics != nil {
		mux.Handle("GET /metrics", h.metrics)
	}
	if h.ready != nil {
		mux.Handle("GET /readyz", h.ready)
	}
	auth := &api.Authenticator{Tokens: h.rt.store, Log: h.log}
	mux.Handle("GET /api/v1/openapi.json", api.OpenAPIHandler())
	mux.Handle("GET /api/v1/events", auth.Require(api.ScopeEventsRead, &events.API{Events: h.rt.store, Log: h.log}))
	if h.capability != nil {
		registerCapability(mux, auth, h.capability, h.rt.cfg.HTTP.CORSOrigins)
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		api.Problem(w, http.StatusNotFound, "no such route", "see /api/v1/openapi.json for the routes")
	})
	return mux
}

// pruneEvents deletes delivery events past [events] retention, at start
// and hourly, until ctx ends.
func pruneEvents(ctx context.Context, p events.Pruner, retention time.Duration, log *slog.Logger) {
	t := time.NewTicker(events.PruneEvery)
	defer t.Stop()
	events.KeepRetention(ctx, p, retention, t.C, nil, log)
}
