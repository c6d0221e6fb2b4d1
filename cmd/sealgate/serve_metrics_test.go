package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/pki"
)

// stepcaLike is an issuer with a health check (as stepca.Client).
type stepcaLike struct {
	pki.Issuer
	err error
}

func (s stepcaLike) Health(context.Context) error { return s.err }

// TestIssuerReady: the embedded CA is ready while its issuing certificate
// is valid; a remote issuer is ready when its health check says so; no
// issuer is never ready.
func TestIssuerReady(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "sealgate.toml")
	if err := os.WriteFile(cfgFile, []byte(pkiTestConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, ca, _, _ := servePieces(t, ctx, cfg, slog.New(slog.DiscardHandler))
	if ca == nil {
		t.Fatal("pkiTestConfig has no embedded CA")
	}
	at := func(t time.Time) func() time.Time { return func() time.Time { return t } }
	for _, tc := range []struct {
		name  string
		check func(context.Context) error
		ok    bool
	}{
		{"embedded CA now", issuerReady(ca, ca, time.Now), true},
		{"embedded CA after its issuing certificate expired", issuerReady(ca, ca, at(ca.IssuingCert().NotAfter.Add(time.Second))), false},
		{"embedded CA before its issuing certificate is valid", issuerReady(ca, ca, at(ca.IssuingCert().NotBefore.Add(-time.Hour))), false},
		{"step-ca answering", issuerReady(nil, stepcaLike{}, time.Now), true},
		{"step-ca down", issuerReady(nil, stepcaLike{err: errors.New("connection refused")}, time.Now), false},
		{"no issuer", issuerReady(nil, nil, time.Now), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.check(ctx); (err == nil) != tc.ok {
				t.Errorf("ready = %v (%v), want %v", err == nil, err, tc.ok)
			}
		})
	}
}
