package main

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/directory"
)

// staticSource offers the same certificates for every address.
type staticSource []*x509.Certificate

func (staticSource) Name() string { return "static" }

func (s staticSource) Find(context.Context, string) ([]directory.Candidate, error) {
	out := make([]directory.Candidate, len(s))
	for i, c := range s {
		out[i] = directory.Candidate{Certificate: c}
	}
	return out, nil
}

// TestDirFinderUndecidedIsAnError: the gateway's certificate finder
// reports a lookup that could not be decided as an error (the pipeline
// then defers the recipient) and only a definite verdict as "no
// certificate". Before, a certificate whose revocation status was unknown
// under hard-fail was "no certificate", and an opportunistic recipient got
// a signed plain copy. The certificates are made by openssl.
func TestDirFinderUndecidedIsAnError(t *testing.T) {
	p := newOpensslPKI(t)
	// The OCSP responder named in the certificate is not there.
	p.issueWithExt(t, "ocsp-down", "x@example.test", "emailProtection", "authorityInfoAccess=OCSP;URI:http://127.0.0.1:1/ocsp\n")
	p.issue(t, "wrongeku", "x@example.test", "serverAuth")
	caPEM, err := os.ReadFile(p.caPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)

	tests := []struct {
		name, cert, mode string
		found, undecided bool
	}{
		{name: "revocation unknown under hard-fail: undecided", cert: "ocsp-down", mode: directory.RevocationHardFail, undecided: true},
		{name: "revocation unknown under soft-fail: found", cert: "ocsp-down", mode: directory.RevocationSoftFail, found: true},
		{name: "wrong EKU: definitely no certificate", cert: "wrongeku", mode: directory.RevocationHardFail},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := directory.NewValidator(directory.ValidatorOptions{Roots: roots, Revocation: tc.mode})
			if err != nil {
				t.Fatal(err)
			}
			d, err := directory.New(directory.Options{Sources: []directory.Source{staticSource{testpeer.ReadCert(t, p.path(tc.cert+".pem"))}}, Validator: v})
			if err != nil {
				t.Fatal(err)
			}
			cert, found, err := dirFinder{d: d}.Find(context.Background(), "x@example.test")
			if found != tc.found || (cert != nil) != tc.found || errors.Is(err, directory.ErrUndecided) != tc.undecided {
				t.Fatalf("found=%v cert=%v err=%v; want found=%v undecided=%v", found, cert != nil, err, tc.found, tc.undecided)
			}
			if !tc.undecided && err != nil {
				t.Fatalf("unexpected error %v", err)
			}
		})
	}
}

// TestExplainShowsUndecided: --explain tells a check that could not be
// made now (WAIT) from one that failed (FAIL), and says the candidate is
// undecided rather than refused.
func TestExplainShowsUndecided(t *testing.T) {
	out := lookupJSON{Email: "x@example.test", Answer: directory.AnswerUndecided, Candidates: []candidateJSON{{
		Source: "static", Undecided: true, Checks: []directory.Check{
			{Name: directory.CheckValidity, OK: true, Detail: "valid"},
			{Name: directory.CheckRevocation, Undecided: true, Detail: "status unknown now"},
		}}, {
		Source: "static", Checks: []directory.Check{{Name: directory.CheckExtKeyUsage, Detail: "lacks emailProtection"}}},
	}}
	var b strings.Builder
	if err := printLookup(&b, out, true); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"x@example.test: undecided (a certificate could not be judged now)",
		"candidate 1 from static: undecided",
		"WAIT  revocation",
		"candidate 2 from static: refused",
		"FAIL  extended-key-usage",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("explain output lacks %q:\n%s", want, b.String())
		}
	}
}
