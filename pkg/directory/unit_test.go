package directory

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/sealgate/sealgate/pkg/store"
)

// countingSource answers from a map, counts calls and can block.
type countingSource struct {
	certs map[string][]Candidate
	calls atomic.Int64
	gate  chan struct{} // when non-nil, Find waits for it to close
	err   error
}

func (s *countingSource) Name() string { return "fake" }

func (s *countingSource) Find(ctx context.Context, email string) ([]Candidate, error) {
	s.calls.Add(1)
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.certs[email], s.err
}

func TestCacheSingleflightAndTTLs(t *testing.T) {
	ca := newTestCA(t, "Cache Root", false)
	good := ca.issue(t, leafSpec{emails: []string{"a@example.test"}, noCRL: true})
	src := &countingSource{certs: map[string][]Candidate{"a@example.test": {{Certificate: good}}}, gate: make(chan struct{})}
	clock := &fakeClock{t: time.Now()}
	v, _ := NewValidator(ValidatorOptions{Roots: poolOf(ca.cert), Now: clock.now})
	d, err := New(Options{Sources: []Source{src}, Validator: v, Now: clock.now, PositiveTTL: time.Hour, NegativeTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// 20 concurrent lookups of one address share one search. The source
	// blocks until every caller has joined the flight (the barrier), so
	// a Lookup that searched on its own would show as a second call.
	const callers = 20
	joined := make(chan struct{})
	d.joinedFlight = func() { joined <- struct{}{} }
	var wg sync.WaitGroup
	results := make([]Result, callers)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], _ = d.Lookup(ctx, "a@example.test")
		}()
	}
	for range callers {
		<-joined
	}
	close(src.gate)
	wg.Wait()
	d.joinedFlight = nil
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("source asked %d times for concurrent lookups, want 1", n)
	}
	for _, r := range results {
		if !r.Found {
			t.Fatalf("concurrent lookup: %+v", r)
		}
	}

	// Positive TTL: cached until it passes.
	if r, _ := d.Lookup(ctx, "a@example.test"); !r.Cached || !r.Found {
		t.Fatalf("second lookup not from cache: %+v", r)
	}
	clock.advance(61 * time.Minute)
	if r, _ := d.Lookup(ctx, "a@example.test"); r.Cached || src.calls.Load() != 2 {
		t.Fatalf("positive TTL not honoured: cached=%v calls=%d", r.Cached, src.calls.Load())
	}

	// Negative TTL.
	if r, _ := d.Lookup(ctx, "none@example.test"); r.Found || r.Answer != AnswerNotFound {
		t.Fatalf("unknown address: %+v", r)
	}
	if r, _ := d.Lookup(ctx, "none@example.test"); !r.Cached {
		t.Fatalf("not found was not cached")
	}
	clock.advance(2 * time.Minute)
	if r, _ := d.Lookup(ctx, "none@example.test"); r.Cached {
		t.Fatalf("negative TTL not honoured")
	}

	// Forget drops the entry (after an import).
	d.Forget("a@example.test")
	calls := src.calls.Load()
	if r, _ := d.Lookup(ctx, "a@example.test"); r.Cached || src.calls.Load() != calls+1 {
		t.Fatalf("Forget did not drop the cached answer")
	}

	// Unavailable answers are not cached.
	src.err = errors.New("boom")
	d.Forget("a@example.test")
	r1, _ := d.Lookup(ctx, "a@example.test")
	r2, _ := d.Lookup(ctx, "a@example.test")
	if r1.Answer != AnswerUnavailable || r2.Cached {
		t.Fatalf("unavailable: %+v / cached=%v", r1, r2.Cached)
	}

	// A caller whose context ends gets an error, not a wrong answer.
	src.err, src.gate = nil, make(chan struct{})
	d.Forget("a@example.test")
	cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := d.Lookup(cctx, "a@example.test"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled lookup: %v", err)
	}
	close(src.gate)
}

func TestNormalizeAddress(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{in: "Alice@Example.ORG", want: "alice@example.org"},
		{in: "John.Doe@EXAMPLE.net", want: "john.doe@example.net"},
		// Only ASCII letters fold: the Kelvin sign stays itself.
		{in: "\u212Aim@example.net", want: "\u212Aim@example.net"},
		{in: "JÖRG@example.net", want: "jÖrg@example.net"},
		{in: " <bob@example.org> ", want: "bob@example.org"},
		{in: "jörg@bücher.example", want: "jörg@xn--bcher-kva.example"},
		{in: "x@BÜCHER.example", want: "x@xn--bcher-kva.example"},
		{in: "a@b@example.org", want: "a@b@example.org"},
		{in: "nobody", err: "not an email address"},
		{in: "@example.org", err: "not an email address"},
		{in: "a b@example.org", err: "bad local part"},
		{in: "a@exa mple.org", err: "domain"},
	}
	for _, tc := range tests {
		got, err := NormalizeAddress(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestIDNAddressMatch: a certificate for the A-label form matches a
// lookup of the U-label form and vice versa.
func TestIDNAddressMatch(t *testing.T) {
	ca := newTestCA(t, "IDN Root", false)
	c := ca.issue(t, leafSpec{emails: []string{"info@xn--bcher-kva.example"}, noCRL: true})
	v, _ := NewValidator(ValidatorOptions{Roots: poolOf(ca.cert)})
	email, _ := NormalizeAddress("info@BÜCHER.example")
	ev := v.Evaluate(context.Background(), Candidate{Certificate: c}, email)
	if !ev.Valid {
		t.Fatalf("IDN address did not match: %+v", ev.Checks)
	}
}

// TestRevocationModes: OCSP good/revoked, and an unreachable CRL under
// hard-fail and soft-fail.
func TestRevocationModes(t *testing.T) {
	ca := newTestCA(t, "OCSP Root", false)
	var revokedSerial atomic.Value
	var ocspHits atomic.Int64
	responder := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ocspHits.Add(1)
		body, _ := io.ReadAll(r.Body)
		req, err := ocsp.ParseRequest(body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		tmpl := ocsp.Response{Status: ocsp.Good, SerialNumber: req.SerialNumber, ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour)}
		if s, _ := revokedSerial.Load().(string); s == req.SerialNumber.String() {
			tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, time.Now().Add(-time.Hour), ocsp.KeyCompromise
		}
		der, err := ocsp.CreateResponse(ca.cert, ca.cert, tmpl, ca.key)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		_, _ = w.Write(der)
	}))
	defer responder.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()

	good := ca.issue(t, leafSpec{emails: []string{"g@example.test"}, ocspURL: responder.URL})
	revoked := ca.issue(t, leafSpec{emails: []string{"r@example.test"}, ocspURL: responder.URL})
	revokedSerial.Store(revoked.SerialNumber.String())
	noStatus := ca.issue(t, leafSpec{emails: []string{"u@example.test"}, ocspURL: dead.URL})

	hard, _ := NewValidator(ValidatorOptions{Roots: poolOf(ca.cert), Revocation: RevocationHardFail, FetchTimeout: time.Second})
	soft, _ := NewValidator(ValidatorOptions{Roots: poolOf(ca.cert), Revocation: RevocationSoftFail, FetchTimeout: time.Second})
	ctx := context.Background()
	tests := []struct {
		name   string
		v      *Validator
		c      *x509.Certificate
		email  string
		ok     bool
		detail string
	}{
		{"ocsp good", hard, good, "g@example.test", true, "not revoked (OCSP"},
		{"ocsp revoked", soft, revoked, "r@example.test", false, "revoked at"},
		{"unreachable hard-fail", hard, noStatus, "u@example.test", false, "undecided until it can be checked (trust.revocation = hard-fail)"},
		{"unreachable soft-fail", soft, noStatus, "u@example.test", true, "accepted (trust.revocation = soft-fail)"},
	}
	for _, tc := range tests {
		ev := tc.v.Evaluate(ctx, Candidate{Certificate: tc.c}, tc.email)
		d := checkDetail(ev, CheckRevocation)
		if ev.Valid != tc.ok || !strings.Contains(d, tc.detail) {
			t.Errorf("%s: valid=%v detail %q; want %v and %q", tc.name, ev.Valid, d, tc.ok, tc.detail)
		}
	}
	// OCSP answers are cached until nextUpdate.
	hits := ocspHits.Load()
	hard.Evaluate(ctx, Candidate{Certificate: good}, "g@example.test")
	if ocspHits.Load() != hits {
		t.Errorf("OCSP answer was not cached")
	}
}

// TestAIAIntermediate: the source gives only the leaf; the intermediate
// is fetched from the caIssuers URL and the chain verifies.
func TestAIAIntermediate(t *testing.T) {
	root := newTestCA(t, "AIA Root", false)
	sub := root.subCA(t, "AIA Issuing CA")
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write(sub.cert.Raw)
	}))
	defer srv.Close()
	leaf := sub.issue(t, leafSpec{emails: []string{"aia@example.test"}, aiaURL: srv.URL + "/sub.cer"})
	v, _ := NewValidator(ValidatorOptions{Roots: poolOf(root.cert)})
	ev := v.Evaluate(context.Background(), Candidate{Certificate: leaf}, "aia@example.test")
	if !ev.Valid || len(ev.Chain) != 3 {
		t.Fatalf("AIA chain: valid=%v chain=%d checks=%+v", ev.Valid, len(ev.Chain), ev.Checks)
	}
	// Without AIA and without the intermediate: untrusted.
	bare := sub.issue(t, leafSpec{emails: []string{"bare@example.test"}})
	if ev := v.Evaluate(context.Background(), Candidate{Certificate: bare}, "bare@example.test"); ev.Valid {
		t.Fatalf("chain built without the intermediate")
	}
	// With the intermediate from the source (a .p7c): valid.
	if ev := v.Evaluate(context.Background(), Candidate{Certificate: bare, Intermediates: []*x509.Certificate{sub.cert}}, "bare@example.test"); !ev.Valid {
		t.Fatalf("intermediate from the source not used: %+v", ev.Checks)
	}
}

// TestImportIntoStoreAndFind: a .p7c with leaf and intermediate goes into
// the real SQLite store; the store source then finds the leaf and builds
// the chain with the stored intermediate.
func TestImportIntoStoreAndFind(t *testing.T) {
	root := newTestCA(t, "Import Root", false)
	sub := root.subCA(t, "Import Issuing CA")
	leaf := sub.issue(t, leafSpec{emails: []string{"imp@partner.test", "alias@partner.test"}})
	st := openTestStore(t)
	ctx := context.Background()
	stored, err := ImportCertificates(ctx, st, p7cByOpenSSL(t, leaf, sub.cert))
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 4 { // leaf and CA, each under two addresses
		t.Fatalf("stored %d rows: %+v", len(stored), stored)
	}
	if _, err := ImportCertificates(ctx, st, certPEM(sub.cert)); err == nil || !strings.Contains(err.Error(), "trust.ca_files") {
		t.Fatalf("CA-only import: %v", err)
	}
	v, _ := NewValidator(ValidatorOptions{Roots: poolOf(root.cert)})
	d, _ := New(Options{Sources: []Source{OwnSource(OwnFromStore(st)), StoreSource(st)}, Validator: v})
	for _, addr := range []string{"imp@partner.test", "alias@partner.test"} {
		r, err := d.Lookup(ctx, addr)
		if err != nil || !r.Found || r.Chosen.Source != "store" || !r.Certificate().Equal(leaf) {
			t.Fatalf("%s after import: %+v %v", addr, r, err)
		}
	}

	// Our own user's active certificate (written by pkg/pki) comes first;
	// a superseded one is not offered at all.
	own := root.issue(t, leafSpec{emails: []string{"me@example.org"}})
	old := root.issue(t, leafSpec{emails: []string{"me@example.org"}, notBefore: time.Now().Add(-24 * time.Hour)})
	for _, c := range []struct {
		cert  *x509.Certificate
		state string
	}{{own, "active"}, {old, "superseded"}} {
		err := st.PutCertificate(ctx, store.Certificate{Serial: c.cert.SerialNumber.Text(16), Email: "me@example.org",
			DER: c.cert.Raw, KeyID: "k-" + c.state, NotBefore: c.cert.NotBefore, NotAfter: c.cert.NotAfter, State: c.state})
		if err != nil {
			t.Fatal(err)
		}
	}
	r, err := d.Lookup(ctx, "me@example.org")
	if err != nil || !r.Found || r.Chosen.Source != "own users" || !r.Certificate().Equal(own) || len(r.Candidates) != 1 {
		t.Fatalf("own user: %+v %v", r, err)
	}
}

// TestOwnUsersFirst: our own user's certificate wins over a harvested
// one, even a newer one, because the first source with a valid
// certificate decides.
func TestOwnUsersFirst(t *testing.T) {
	ca := newTestCA(t, "Own Root", false)
	own := ca.issue(t, leafSpec{emails: []string{"me@example.org"}, notBefore: time.Now().Add(-48 * time.Hour)})
	harvested := ca.issue(t, leafSpec{emails: []string{"me@example.org"}})
	ownSrc := OwnSource(ownFunc(func(ctx context.Context, email string) ([]*x509.Certificate, error) {
		return []*x509.Certificate{own}, nil
	}))
	other := &countingSource{certs: map[string][]Candidate{"me@example.org": {{Certificate: harvested}}}}
	v, _ := NewValidator(ValidatorOptions{Roots: poolOf(ca.cert)})
	d, _ := New(Options{Sources: []Source{ownSrc, other}, Validator: v})
	r, _ := d.Lookup(context.Background(), "me@example.org")
	if !r.Found || !r.Certificate().Equal(own) || r.Chosen.Source != "own users" || other.calls.Load() != 0 {
		t.Fatalf("own user's certificate not preferred: %+v (other asked %d times)", r, other.calls.Load())
	}
}

type ownFunc func(ctx context.Context, email string) ([]*x509.Certificate, error)

func (f ownFunc) OwnCertificates(ctx context.Context, email string) ([]*x509.Certificate, error) {
	return f(ctx, email)
}

func TestLooksLikeMessage(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"From: a@b\r\nContent-Type: multipart/signed; boundary=x\r\n\r\nbody", true},
		{"MIME-Version: 1.0\ncontent-type: application/pkcs7-mime\n\n", true},
		{"-----BEGIN CERTIFICATE-----\nContent-Type: x\n", false},
		{"\x30\x82\x01\x00", false},
	}
	for _, tc := range tests {
		if got := LooksLikeMessage([]byte(tc.in)); got != tc.want {
			t.Errorf("%q: %v", tc.in, got)
		}
	}
}

func FuzzParseCertificates(f *testing.F) {
	ca := newTestCA(f, "Fuzz Root", false)
	leaf := ca.issue(f, leafSpec{emails: []string{"f@example.test"}, noCRL: true})
	f.Add(leaf.Raw)
	f.Add(certPEM(leaf))
	f.Add(append(certPEM(ca.cert), []byte("-----BEGIN PKCS7-----\nMIIB\n-----END PKCS7-----\n")...))
	f.Add([]byte{0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02})
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertificates(data)
		if err == nil && len(certs) == 0 {
			t.Fatalf("no error and no certificates")
		}
		certs, signer, caps, err := parseSMIMEBlob(data)
		if err == nil && len(certs) == 0 {
			t.Fatalf("blob: no error and no certificates")
		}
		if signer == nil && caps != nil {
			t.Fatalf("capabilities without a verified signer")
		}
	})
}

func FuzzNormalizeAddress(f *testing.F) {
	for _, s := range []string{"a@example.org", "Jörg@Bücher.example", "<x@y>", "@", "a@", "a@b@c", "a@xn--"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeAddress(s)
		if err != nil {
			return
		}
		// Normalizing is idempotent.
		if n2, err := NormalizeAddress(n); err != nil || n2 != n {
			t.Fatalf("%q → %q → %q, %v", s, n, n2, err)
		}
	})
}

// TestSelectionRule: newest notBefore, then later notAfter, then the
// lower fingerprint, whatever the order the source gave.
func TestSelectionRule(t *testing.T) {
	ca := newTestCA(t, "Choice Root", false)
	nb := time.Now().Add(-time.Hour).Truncate(time.Second)
	older := ca.issue(t, leafSpec{emails: []string{"c@x.test"}, notBefore: nb.Add(-time.Hour)})
	newer := ca.issue(t, leafSpec{emails: []string{"c@x.test"}, notBefore: nb})
	newerLonger := ca.issue(t, leafSpec{emails: []string{"c@x.test"}, notBefore: nb, notAfter: nb.Add(800 * 24 * time.Hour)})
	twinA := ca.issue(t, leafSpec{emails: []string{"c@x.test"}, notBefore: nb, notAfter: nb.Add(900 * 24 * time.Hour)})
	twinB := ca.issue(t, leafSpec{emails: []string{"c@x.test"}, notBefore: nb, notAfter: nb.Add(900 * 24 * time.Hour)})
	lowFP := twinA
	if Fingerprint(twinB) < Fingerprint(twinA) {
		lowFP = twinB
	}
	ev := func(cs ...*x509.Certificate) []Evaluated {
		out := make([]Evaluated, len(cs))
		for i, c := range cs {
			out[i] = Evaluated{Candidate: Candidate{Certificate: c}, Valid: true}
		}
		return out
	}
	tests := []struct {
		name string
		in   []Evaluated
		want *x509.Certificate
	}{
		{"newest notBefore", ev(older, newer), newer},
		{"order does not matter", ev(newer, older), newer},
		{"then later notAfter", ev(newer, newerLonger, older), newerLonger},
		{"then lower fingerprint", ev(twinA, twinB), lowFP},
		{"then lower fingerprint, reversed", ev(twinB, twinA), lowFP},
	}
	for _, tc := range tests {
		got, ok := choose(tc.in)
		if !ok || !got.Certificate.Equal(tc.want) {
			t.Errorf("%s: chose serial %v, want %v", tc.name, got.Certificate.SerialNumber, tc.want.SerialNumber)
		}
	}
	if _, ok := choose(nil); ok {
		t.Errorf("choose(nil) found something")
	}
}

// TestBreakerBackoff: open after a failure, one probe after the wait,
// the wait doubles on repeated failure up to the maximum, success closes.
func TestBreakerBackoff(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	b := newBreaker(10*time.Second, 25*time.Second, clock.now)
	steps := []struct {
		advance   time.Duration
		wantAllow bool
		result    error // recorded when allowed
	}{
		{0, true, errors.New("down")},            // fails: open 10s
		{5 * time.Second, false, nil},            // still open
		{6 * time.Second, true, errors.New("x")}, // probe fails: open 20s
		{15 * time.Second, false, nil},
		{6 * time.Second, true, errors.New("y")}, // probe fails: open 25s (max)
		{24 * time.Second, false, nil},
		{2 * time.Second, true, nil}, // probe succeeds: closed
		{0, true, nil},
	}
	for i, s := range steps {
		clock.advance(s.advance)
		ok, _, _ := b.allow()
		if ok != s.wantAllow {
			t.Fatalf("step %d: allow=%v, want %v", i, ok, s.wantAllow)
		}
		if ok {
			b.done(s.result)
		}
	}
	// While one probe is out, others are still refused.
	b.done(errors.New("down again"))
	clock.advance(11 * time.Second)
	if ok, _, _ := b.allow(); !ok {
		t.Fatal("probe refused")
	}
	if ok, _, last := b.allow(); ok || last == nil {
		t.Fatal("second caller allowed during the probe")
	}
}

// TestRevokedIntermediate: revoking the issuing CA in the root's CRL voids
// the leaves under it; the intermediate's CRL is fetched over HTTP.
func TestRevokedIntermediate(t *testing.T) {
	root := newTestCA(t, "Rev Root", true)
	sub := root.subCA(t, "Rev Issuing CA")
	leaf := sub.issue(t, leafSpec{emails: []string{"leaf@example.test"}})
	v, _ := NewValidator(ValidatorOptions{Roots: poolOf(root.cert), Revocation: RevocationSoftFail})
	cand := Candidate{Certificate: leaf, Intermediates: []*x509.Certificate{sub.cert}}
	if ev := v.Evaluate(context.Background(), cand, "leaf@example.test"); !ev.Valid {
		t.Fatalf("before revocation: %+v", ev.Checks)
	}
	root.revoke(sub.cert)
	v2, _ := NewValidator(ValidatorOptions{Roots: poolOf(root.cert), Revocation: RevocationSoftFail}) // fresh CRL cache
	ev := v2.Evaluate(context.Background(), cand, "leaf@example.test")
	if d := checkDetail(ev, CheckRevocation); ev.Valid || !strings.Contains(d, `issuing CA "Rev Issuing CA" revoked at`) {
		t.Fatalf("revoked intermediate: valid=%v detail %q", ev.Valid, d)
	}
}
