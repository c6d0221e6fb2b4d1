package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/pki/embeddedca"
	"github.com/sealgate/sealgate/pkg/secret"
)

// TestServeKeepsCRLFresh: nobody fetches /crl, the clock runs through
// three weeks, and the published crl.der is re-signed on the checks past
// the middle of its validity, so it never expires (before, it was only
// re-signed when fetched).
func TestServeKeepsCRLFresh(t *testing.T) {
	dir := t.TempDir()
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	kr, err := secret.NewKeyring(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := embeddedca.Init(dir, kr, embeddedca.InitOptions{KeyBits: 2048}); err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64
	clock.Store(time.Now().Unix())
	now := func() time.Time { return time.Unix(clock.Load(), 0) }
	ca, err := embeddedca.Open(dir, kr, embeddedca.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{b: &bytes.Buffer{}}
	ctx, cancel := context.WithCancel(t.Context())
	ticks := make(chan time.Time) // unbuffered: a send returns once the previous check is done
	done := make(chan struct{})
	go func() { defer close(done); keepCRLFresh(ctx, ca, ticks, slog.New(slog.NewTextHandler(logs, nil))) }()
	tick := func() { ticks <- now(); ticks <- now() } // the second send waits for the first check

	published := func() *x509.RevocationList { // what GET /crl serves
		der, err := ca.CRL()
		rl, perr := x509.ParseRevocationList(der)
		if err != nil || perr != nil {
			t.Fatalf("published CRL: %v %v", err, perr)
		}
		return rl
	}
	last := published().Number.Int64()
	for hour := 1; hour <= 21*24; hour++ {
		clock.Add(3600)
		tick()
		rl := published()
		if !now().Before(rl.NextUpdate) {
			t.Fatalf("hour %d: published CRL expired at %s", hour, rl.NextUpdate)
		}
		if rl.NextUpdate.Sub(now()) < 3*24*time.Hour {
			t.Fatalf("hour %d: only %s left on the published CRL", hour, rl.NextUpdate.Sub(now()))
		}
		last = rl.Number.Int64()
	}
	cancel()
	<-done
	if resigned := strings.Count(logs.String(), "CRL re-signed"); resigned < 5 || resigned > 7 {
		t.Fatalf("re-signed %d times in three weeks of a one-week CRL (number now %d), want about 6:\n%s", resigned, last, logs)
	}
}

// failingCRL is a CA whose disk is full.
type failingCRL struct{ calls atomic.Int32 }

func (f *failingCRL) RefreshCRLIfDue() (embeddedca.CRLRefresh, error) {
	f.calls.Add(1)
	return embeddedca.CRLRefresh{}, errors.New("write crl.der: no space left on device")
}

// TestServeCRLRefreshSurvivesErrors: a failed check is logged as an error
// and the next tick tries again (the refresher does not stop).
func TestServeCRLRefreshSurvivesErrors(t *testing.T) {
	f := &failingCRL{}
	logs := &syncBuffer{b: &bytes.Buffer{}}
	ctx, cancel := context.WithCancel(t.Context())
	ticks := make(chan time.Time)
	done := make(chan struct{})
	go func() { defer close(done); keepCRLFresh(ctx, f, ticks, slog.New(slog.NewTextHandler(logs, nil))) }()
	ticks <- time.Now()
	ticks <- time.Now()
	cancel()
	<-done
	if got := f.calls.Load(); got != 3 {
		t.Fatalf("%d checks, want 3: the start and two ticks", got)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "no space left") {
		t.Fatalf("failure not logged as an error:\n%s", logs)
	}
}
