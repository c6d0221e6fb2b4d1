// Package directory finds and validates the certificate the gateway may
// encrypt to for a recipient address.
//
// A lookup asks the sources in order (our own users, the store's imported
// and harvested certificates, then each configured LDAP key server), runs
// every named check on every candidate certificate and picks one by the
// selection rule below. Results are cached (positive and negative TTLs),
// concurrent lookups of one address share one search (singleflight), every
// source has a timeout and every key server a breaker, so a dead server
// costs one timeout and not one per message.
//
// Selection rule: among the candidates that pass every check (which
// includes encryption usage: KeyUsage keyEncipherment for RSA or
// keyAgreement for EC, when the extension is present), the one with the
// newest notBefore wins; ties go to the later notAfter, then to the lower
// SHA-256 fingerprint so the answer is deterministic. Sources are tried in
// order and the first source with a valid certificate decides: our own
// users' certificates beat a stale copy harvested from mail.
//
// A wrong certificate leaks mail, so every check fails closed. A missing
// one is not free either: an opportunistic recipient without a certificate
// gets a signed plain copy. So "not found" is only answered when it is a
// definite verdict (no candidate at all, or every candidate definitely
// invalid: expired, revoked, wrong usage, wrong address, untrusted chain).
// When a source could not be asked, or a candidate could not be judged now
// (revocation status unknown under hard-fail, an intermediate that could
// not be fetched), the answer is "undecided": Lookup returns an error
// wrapping ErrUndecided, the gateway defers the recipient and asks again,
// and the answer is never cached.
package directory

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"
)

// ErrSourceUnavailable marks a source that could not be asked (down,
// timed out, breaker open). Sources wrap it.
var ErrSourceUnavailable = errors.New("source unavailable")

// ErrUndecided is wrapped by the error of a lookup whose answer cannot be
// given now: a source was unavailable, or a candidate certificate could not
// be judged for a transient reason. It is not "no certificate": the caller
// must retry later, never fall back to plain text.
var ErrUndecided = errors.New("certificate lookup undecided")

// Candidate is one certificate a source offered for an address, with what
// the source knows that helps to validate and use it.
type Candidate struct {
	Certificate *x509.Certificate
	// Intermediates came with the certificate (a .p7c, an S/MIME
	// signature, the source's own CA); they help build the chain but are
	// not trusted by themselves.
	Intermediates []*x509.Certificate
	// Capabilities is the DER SMIMECapabilities the recipient announced
	// (from a harvested signature), nil when unknown.
	Capabilities []byte
	// Origin says how the source came by it, where it can tell: for the
	// store "harvested" (from a verified signed message) or "imported"
	// (by an admin); "" otherwise.
	Origin string
}

// Source is where certificates for an address may be found. Find returns
// the candidates (possibly none) or an error wrapping ErrSourceUnavailable
// when the source could not be asked. New kinds of source (DNS SMIMEA,
// RFC 8162) implement this.
type Source interface {
	Name() string
	Find(ctx context.Context, email string) ([]Candidate, error)
}

// Check is one named validation step and its outcome.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	// Undecided marks a failed check that could not be judged now (a
	// fetch failed, a revocation status is unknown under hard-fail): the
	// certificate may well be good, so its failure is not a verdict.
	Undecided bool `json:"undecided,omitempty"`
}

// Evaluated is a candidate with the outcome of every check.
type Evaluated struct {
	Candidate
	Source string
	Chain  []*x509.Certificate // leaf first, up to the anchor, when the chain check passed
	Checks []Check
	Valid  bool
	// Undecided is true when the candidate is not valid only because of
	// checks that could not be judged now; one definite failure (expired,
	// revoked, wrong address ...) makes it false.
	Undecided bool
}

// Fingerprint is the hex SHA-256 of the certificate's DER.
func (e Evaluated) Fingerprint() string { return Fingerprint(e.Certificate) }

// Fingerprint is the hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// Answer strings of Result.Answer.
const (
	AnswerFound       = "found"
	AnswerNotFound    = "not found"
	AnswerNoValid     = "not found (no valid certificate)"
	AnswerUnavailable = "undecided (source unavailable)"
	AnswerUndecided   = "undecided (a certificate could not be judged now)"
)

// Result is the outcome of a lookup. Found means Chosen can be encrypted to.
type Result struct {
	Email  string
	Found  bool
	Answer string // one of the Answer* constants
	// Chosen is the selected certificate when Found.
	Chosen *Evaluated
	// Candidates is every certificate examined, in source order, each with
	// its checks: what --explain shows.
	Candidates []Evaluated
	// Unavailable names the sources that could not be asked, with why.
	Unavailable []string
	CheckedAt   time.Time
	Cached      bool
}

// Undecided reports whether the answer is neither found nor a definite
// "not found": a source was unavailable or a candidate could not be judged.
func (r Result) Undecided() bool {
	return r.Answer == AnswerUnavailable || r.Answer == AnswerUndecided
}

// Err is nil for a found certificate and for a definite "not found"; for
// an undecided answer it wraps ErrUndecided and says which source or
// which certificate could not be judged, and why.
func (r Result) Err() error {
	if !r.Undecided() {
		return nil
	}
	var why []string
	why = append(why, r.Unavailable...)
	for _, ev := range r.Candidates {
		if !ev.Undecided {
			continue
		}
		for _, c := range ev.Checks {
			if !c.OK && c.Undecided {
				why = append(why, fmt.Sprintf("%s certificate %s (serial %s): %s: %s",
					ev.Source, ev.Fingerprint(), ev.Certificate.SerialNumber, c.Name, c.Detail))
			}
		}
	}
	return fmt.Errorf("%w for %s: %s; retry later", ErrUndecided, r.Email, strings.Join(why, "; "))
}

// Certificate is the chosen certificate, nil when not found.
func (r Result) Certificate() *x509.Certificate {
	if r.Chosen == nil {
		return nil
	}
	return r.Chosen.Certificate
}

// Options configures a Directory.
type Options struct {
	Sources   []Source
	Validator *Validator
	// PositiveTTL is how long a found certificate is reused (capped by its
	// notAfter); default 1h. NegativeTTL is how long "not found" is
	// reused; default 5m. Undecided answers are not cached: the breaker
	// and the fetch caches already make them cheap, and the server or the
	// responder may come back.
	PositiveTTL, NegativeTTL time.Duration
	// SourceTimeout bounds each source that has no timeout of its own;
	// default 5s.
	SourceTimeout time.Duration
	Logger        *slog.Logger
	Now           func() time.Time
	// Observer sees the outcome of every source asked and of every answer
	// served from the cache (metrics count them); nil: none.
	Observer LookupObserver
}

// Directory answers lookups. Safe for concurrent use.
type Directory struct {
	opts   Options
	cache  *resultCache
	flight singleflight.Group
	// joinedFlight, when set (tests only), is called by each Lookup
	// once it has started or joined the shared search and before it
	// waits for the answer, so a test can tell that every caller is in
	// the flight without sleeping.
	joinedFlight func()
}

// New builds a Directory. A nil Validator is an error: validation is not
// optional.
func New(opts Options) (*Directory, error) {
	if opts.Validator == nil {
		return nil, errors.New("directory: a Validator is required")
	}
	if opts.PositiveTTL == 0 {
		opts.PositiveTTL = time.Hour
	}
	if opts.NegativeTTL == 0 {
		opts.NegativeTTL = 5 * time.Minute
	}
	if opts.SourceTimeout == 0 {
		opts.SourceTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Directory{opts: opts, cache: newResultCache()}, nil
}

// Lookup returns the certificate to encrypt to for email. A definite "not
// found" is a Result with Found false and a nil error. An undecided answer
// (see ErrUndecided) comes with an error wrapping ErrUndecided, so that a
// caller that only looks at the error fails closed; the Result still says
// why. A bad address or a cancelled context is an error too.
func (d *Directory) Lookup(ctx context.Context, email string) (Result, error) {
	key, err := NormalizeAddress(email)
	if err != nil {
		return Result{}, err
	}
	now := d.opts.Now()
	if r, ok := d.cache.get(key, now); ok {
		r.Cached = true
		d.observe(SourceCache, cachedResult(r))
		return r, nil
	}
	// The shared search must not die with the first caller's context;
	// each caller still returns when its own context ends.
	ch := d.flight.DoChan(key, func() (any, error) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.maxLookupTime())
		defer cancel()
		t0 := time.Now()
		r := d.lookup(sctx, key)
		d.store(key, r)
		source := ""
		if r.Chosen != nil {
			source = r.Chosen.Source
		}
		d.opts.Logger.Debug("directory lookup", "email", key, "answer", r.Answer, "source", source,
			"candidates", len(r.Candidates), "took", time.Since(t0))
		return r, nil
	})
	if d.joinedFlight != nil {
		d.joinedFlight()
	}
	select {
	case <-ctx.Done():
		return Result{}, fmt.Errorf("directory lookup %s: %w", key, ctx.Err())
	case res := <-ch:
		r := res.Val.(Result)
		return r, r.Err()
	}
}

// Explain is Lookup without the cache: a fresh answer with every
// candidate's checks, for `sealgate directory lookup --explain`. An
// undecided answer is a Result (Undecided true), not an error: the
// explanation is what the caller wants.
func (d *Directory) Explain(ctx context.Context, email string) (Result, error) {
	key, err := NormalizeAddress(email)
	if err != nil {
		return Result{}, err
	}
	r := d.lookup(ctx, key)
	d.store(key, r)
	return r, nil
}

// Close releases the sources' connections (LDAP key servers).
func (d *Directory) Close() error {
	var errs []error
	for _, s := range d.opts.Sources {
		if c, ok := s.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// Forget drops the cached answer for email (after an import, say).
func (d *Directory) Forget(email string) {
	if key, err := NormalizeAddress(email); err == nil {
		d.cache.delete(key)
	}
}

func (d *Directory) maxLookupTime() time.Duration {
	var total time.Duration
	for _, s := range d.opts.Sources {
		total += d.sourceTimeout(s)
	}
	// Validation may fetch CRLs, OCSP answers and AIA issuers.
	return total + 3*d.opts.Validator.fetchTimeout()
}

func (d *Directory) sourceTimeout(s Source) time.Duration {
	if ts, ok := s.(interface{ Timeout() time.Duration }); ok && ts.Timeout() > 0 {
		return ts.Timeout()
	}
	return d.opts.SourceTimeout
}

func (d *Directory) store(key string, r Result) {
	switch {
	case r.Found:
		until := r.CheckedAt.Add(d.opts.PositiveTTL)
		if na := r.Chosen.Certificate.NotAfter; na.Before(until) {
			until = na
		}
		d.cache.put(key, r, until, r.CheckedAt)
	case !r.Undecided():
		// Only a definite verdict is reused; an undecided one is asked
		// again at the next lookup (the breaker and the fetch caches keep
		// that cheap).
		d.cache.put(key, r, r.CheckedAt.Add(d.opts.NegativeTTL), r.CheckedAt)
	}
}

func (d *Directory) lookup(ctx context.Context, email string) Result {
	r := Result{Email: email, CheckedAt: d.opts.Now()}
	for _, src := range d.opts.Sources {
		sctx, cancel := context.WithTimeout(ctx, d.sourceTimeout(src))
		cands, err := src.Find(sctx, email)
		cancel()
		if err != nil {
			d.observe(src.Name(), LookupUnavailable)
			d.opts.Logger.Warn("directory source failed", "source", src.Name(), "email", email, "err", err)
			if !errors.Is(err, ErrSourceUnavailable) {
				err = sourceError(src.Name(), err)
			}
			r.Unavailable = append(r.Unavailable, err.Error())
			continue
		}
		var valid []Evaluated
		undecided := false
		for _, c := range cands {
			ev := d.opts.Validator.Evaluate(ctx, c, email)
			ev.Source = src.Name()
			r.Candidates = append(r.Candidates, ev)
			if ev.Valid {
				valid = append(valid, ev)
			}
			undecided = undecided || ev.Undecided
		}
		if best, ok := choose(valid); ok {
			d.observe(src.Name(), LookupFound)
			r.Chosen, r.Found, r.Answer = &best, true, AnswerFound
			return r
		}
		d.observe(src.Name(), sourceResult(len(cands), undecided))
	}
	undecided := false
	for _, ev := range r.Candidates {
		undecided = undecided || ev.Undecided
	}
	switch {
	case len(r.Unavailable) > 0:
		r.Answer = AnswerUnavailable
	case undecided:
		r.Answer = AnswerUndecided
	case len(r.Candidates) > 0:
		r.Answer = AnswerNoValid
	default:
		r.Answer = AnswerNotFound
	}
	return r
}

// choose applies the selection rule documented on the package.
func choose(valid []Evaluated) (Evaluated, bool) {
	if len(valid) == 0 {
		return Evaluated{}, false
	}
	best := valid[0]
	for _, e := range valid[1:] {
		if better(e.Certificate, best.Certificate) {
			best = e
		}
	}
	return best, true
}

func better(a, b *x509.Certificate) bool {
	if !a.NotBefore.Equal(b.NotBefore) {
		return a.NotBefore.After(b.NotBefore)
	}
	if !a.NotAfter.Equal(b.NotAfter) {
		return a.NotAfter.After(b.NotAfter)
	}
	return Fingerprint(a) < Fingerprint(b)
}

// splitCerts separates end-entity certificates (candidates) from CA
// certificates (intermediates that help build chains).
func splitCerts(certs []*x509.Certificate) (leaves, cas []*x509.Certificate) {
	for _, c := range certs {
		if c.IsCA {
			cas = append(cas, c)
		} else {
			leaves = append(leaves, c)
		}
	}
	return leaves, cas
}

// candidatesFrom turns a bag of certificates into candidates, each leaf
// carrying all CA certificates of the bag as intermediates.
func candidatesFrom(certs []*x509.Certificate, caps []byte) []Candidate {
	leaves, cas := splitCerts(certs)
	out := make([]Candidate, 0, len(leaves))
	for _, l := range leaves {
		out = append(out, Candidate{Certificate: l, Intermediates: cas, Capabilities: caps})
	}
	return out
}

// sourceError wraps err as an unavailable source.
func sourceError(name string, err error) error {
	if errors.Is(err, ErrSourceUnavailable) {
		return err
	}
	return fmt.Errorf("%s: %w: %w", name, ErrSourceUnavailable, err)
}
