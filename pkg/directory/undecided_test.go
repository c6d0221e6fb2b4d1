package directory

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// goodResponder is an OCSP responder that answers "good" for every serial,
// signed by ca.
func goodResponder(t *testing.T, ca *testCA) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, err := ocsp.ParseRequest(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		der, err := ocsp.CreateResponse(ca.cert, ca.cert, ocsp.Response{Status: ocsp.Good, SerialNumber: req.SerialNumber,
			ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour)}, ca.key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write(der)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestUndecidedIsNotNotFound plays the network against the lookup: a
// responder or an AIA server that is down, or answers with something
// else than asked for, must not turn a certificate that exists into "no
// certificate" (which sends an opportunistic recipient a plain copy, and
// was cached for 5 minutes). Only definite verdicts are "not found".
func TestUndecidedIsNotNotFound(t *testing.T) {
	root := newTestCA(t, "Undecided Root", false)
	sub := root.subCA(t, "Undecided Issuing CA")
	unrelated := newTestCA(t, "Unrelated CA", false)
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	aia := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/sub.cer":
			_, _ = w.Write(sub.cert.Raw)
		case "/wrong.cer": // a genuine CA certificate, but not the issuer
			_, _ = w.Write(unrelated.cert.Raw)
		case "/portal.cer": // a captive portal's page
			_, _ = w.Write([]byte("<html>please log in</html>"))
		default:
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
		}
	}))
	defer aia.Close()
	good := goodResponder(t, root)
	const email = "x@example.test"
	expired := time.Now().Add(-24 * time.Hour)
	leaf := func(ca *testCA, s leafSpec) Candidate {
		s.emails = []string{email}
		return Candidate{Certificate: ca.issue(t, s)}
	}

	tests := []struct {
		name       string
		mode       string
		candidates []Candidate
		sourceErr  error
		answer     string
		undecided  bool
		why        string // part of the lookup error (undecided) or of the failing check (not found)
	}{
		{name: "revocation status unknown under hard-fail: responder down", mode: RevocationHardFail,
			candidates: []Candidate{leaf(root, leafSpec{ocspURL: downURL})},
			answer:     AnswerUndecided, undecided: true, why: "revocation: status unknown now"},
		{name: "AIA download fails: connection refused", mode: RevocationSoftFail,
			candidates: []Candidate{leaf(sub, leafSpec{aiaURL: downURL + "/sub.cer"})},
			answer:     AnswerUndecided, undecided: true, why: "its AIA download failed"},
		{name: "AIA server answers 503", mode: RevocationSoftFail,
			candidates: []Candidate{leaf(sub, leafSpec{aiaURL: aia.URL + "/busy.cer"})},
			answer:     AnswerUndecided, undecided: true, why: "503"},
		{name: "AIA answers a CA certificate that did not issue the leaf", mode: RevocationSoftFail,
			candidates: []Candidate{leaf(sub, leafSpec{aiaURL: aia.URL + "/wrong.cer"})},
			answer:     AnswerUndecided, undecided: true, why: "none of the 1 certificates it returned issued"},
		{name: "AIA answers a captive portal page", mode: RevocationSoftFail,
			candidates: []Candidate{leaf(sub, leafSpec{aiaURL: aia.URL + "/portal.cer"})},
			answer:     AnswerUndecided, undecided: true, why: "neither PEM"},
		{name: "source unavailable", mode: RevocationHardFail, sourceErr: errors.New("LDAP connection reset"),
			answer: AnswerUnavailable, undecided: true, why: "LDAP connection reset"},
		{name: "expired decides although revocation is unknown", mode: RevocationHardFail,
			candidates: []Candidate{leaf(root, leafSpec{ocspURL: downURL, notBefore: expired.Add(-time.Hour), notAfter: expired})},
			answer:     AnswerNoValid, why: "expired"},
		{name: "wrong EKU decides although the AIA download failed", mode: RevocationSoftFail,
			candidates: []Candidate{leaf(sub, leafSpec{aiaURL: downURL, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})},
			answer:     AnswerNoValid, why: "lacks emailProtection"},
		{name: "no revocation pointer at all under hard-fail: can never be known", mode: RevocationHardFail,
			candidates: []Candidate{leaf(root, leafSpec{})},
			answer:     AnswerNoValid, why: "names no HTTP OCSP responder"},
		{name: "untrusted issuer without AIA", mode: RevocationSoftFail,
			candidates: []Candidate{leaf(unrelated, leafSpec{})},
			answer:     AnswerNoValid, why: "untrusted"},
		{name: "the intermediate's AIA works: found", mode: RevocationSoftFail,
			candidates: []Candidate{leaf(sub, leafSpec{aiaURL: aia.URL + "/sub.cer"})},
			answer:     AnswerFound},
		{name: "one definitely invalid, one undecided: undecided", mode: RevocationHardFail,
			candidates: []Candidate{
				leaf(root, leafSpec{ocspURL: good, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}),
				leaf(root, leafSpec{ocspURL: downURL}),
			},
			answer: AnswerUndecided, undecided: true, why: "revocation"},
		{name: "one valid, one undecided: the valid one is used", mode: RevocationHardFail,
			candidates: []Candidate{leaf(root, leafSpec{ocspURL: downURL}), leaf(root, leafSpec{ocspURL: good})},
			answer:     AnswerFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := &countingSource{certs: map[string][]Candidate{email: tc.candidates}, err: tc.sourceErr}
			v, err := NewValidator(ValidatorOptions{Roots: poolOf(root.cert), Revocation: tc.mode, FetchTimeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			d, err := New(Options{Sources: []Source{src}, Validator: v})
			if err != nil {
				t.Fatal(err)
			}
			r, err := d.Lookup(context.Background(), email)
			if r.Answer != tc.answer {
				t.Fatalf("answer %q, want %q (err %v); checks %+v", r.Answer, tc.answer, err, r.Candidates)
			}
			if got := errors.Is(err, ErrUndecided); got != tc.undecided || (!tc.undecided && err != nil) {
				t.Fatalf("error %v; want undecided=%v", err, tc.undecided)
			}
			if r.Undecided() != tc.undecided {
				t.Fatalf("Result.Undecided() = %v", r.Undecided())
			}
			switch {
			case tc.undecided && !strings.Contains(err.Error(), tc.why):
				t.Errorf("error %q does not say %q", err, tc.why)
			case !tc.undecided && tc.why != "" && !anyCheckSays(r, tc.why):
				t.Errorf("no failing check says %q: %+v", tc.why, r.Candidates)
			}
			// An undecided answer is asked again next time; a verdict is reused.
			r2, _ := d.Lookup(context.Background(), email)
			if r2.Cached == tc.undecided {
				t.Errorf("second lookup cached=%v for undecided=%v", r2.Cached, tc.undecided)
			}
			if tc.undecided && src.calls.Load() != 2 {
				t.Errorf("source asked %d times, want 2 (undecided must not be cached)", src.calls.Load())
			}
		})
	}
}

func anyCheckSays(r Result, part string) bool {
	for _, ev := range r.Candidates {
		for _, c := range ev.Checks {
			if !c.OK && strings.Contains(c.Detail, part) {
				return true
			}
		}
	}
	return false
}
