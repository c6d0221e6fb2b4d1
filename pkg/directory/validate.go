package directory

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// Names of the checks in a Result, in the order they run.
const (
	CheckAddress      = "address"
	CheckValidity     = "validity"
	CheckChain        = "chain"
	CheckKeyUsage     = "key-usage"
	CheckExtKeyUsage  = "extended-key-usage"
	CheckKeyStrength  = "key-strength"
	CheckSignatureAlg = "signature-algorithm"
	CheckRevocation   = "revocation"
)

// Revocation modes (config trust.revocation).
const (
	RevocationHardFail = "hard-fail" // status unknown → unusable
	RevocationSoftFail = "soft-fail" // status unknown → usable, and said so
)

// ValidatorOptions configures how recipient certificates are judged.
type ValidatorOptions struct {
	// Roots are the trust anchors (trust.ca_files, plus the system roots
	// when trust.system_roots); see TrustPool. Required.
	Roots *x509.CertPool
	// Revocation is RevocationHardFail or RevocationSoftFail (default).
	Revocation string
	// HTTPClient fetches CRLs, OCSP answers and AIA issuers.
	HTTPClient *http.Client
	// FetchTimeout bounds each of those fetches; default 5s.
	FetchTimeout time.Duration
	// MinRSABits is the smallest acceptable RSA modulus; default 2048.
	MinRSABits int
	Now        func() time.Time
	Logger     *slog.Logger
}

// Validator runs the checks. Safe for concurrent use; it caches CRLs, OCSP
// answers and AIA issuers.
type Validator struct {
	o   ValidatorOptions
	rev *revocationChecker
	aia *fetchCache[[]*x509.Certificate]
	// chains remembers built chains for a while: every inbound message
	// from a partner, and every lookup after a cache expiry, would
	// otherwise verify the same signatures up to the root again (6% of
	// an inbound message's CPU). Issuer validity and revocation are
	// still judged at each use.
	chainsMu sync.Mutex
	chains   map[string]chainEntry
}

type chainEntry struct {
	chain []*x509.Certificate
	until time.Time
}

const (
	chainCacheTTL = 10 * time.Minute
	chainCacheMax = 4096
)

// NewValidator builds a Validator.
func NewValidator(o ValidatorOptions) (*Validator, error) {
	if o.Roots == nil {
		return nil, errors.New("directory: validator needs trust anchors (Roots)")
	}
	switch o.Revocation {
	case "":
		o.Revocation = RevocationSoftFail
	case RevocationHardFail, RevocationSoftFail:
	default:
		return nil, fmt.Errorf("directory: trust.revocation must be %q or %q, not %q", RevocationHardFail, RevocationSoftFail, o.Revocation)
	}
	if o.FetchTimeout == 0 {
		o.FetchTimeout = 5 * time.Second
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: o.FetchTimeout}
	}
	if o.MinRSABits == 0 {
		o.MinRSABits = 2048
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	v := &Validator{o: o}
	v.rev = newRevocationChecker(o.HTTPClient, o.FetchTimeout, o.Now)
	v.aia = newFetchCache[[]*x509.Certificate](o.Now)
	return v, nil
}

func (v *Validator) fetchTimeout() time.Duration { return v.o.FetchTimeout }

// TrustPool builds the anchor pool from PEM/DER files and, if systemRoots,
// the operating system's roots.
func TrustPool(caFiles []string, systemRoots bool) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if systemRoots {
		sys, err := x509.SystemCertPool()
		if err != nil {
			return nil, fmt.Errorf("trust.system_roots: %w", err)
		}
		pool = sys
	}
	for _, f := range caFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("trust.ca_files: %w", err)
		}
		certs, err := ParseCertificates(data)
		if err != nil {
			return nil, fmt.Errorf("trust.ca_files: %s: %w", f, err)
		}
		for _, c := range certs {
			pool.AddCert(c)
		}
	}
	return pool, nil
}

// Evaluate runs every check on the candidate for the address email (in
// NormalizeAddress form). Valid is true only when all checks pass.
func (v *Validator) Evaluate(ctx context.Context, c Candidate, email string) Evaluated {
	ev := Evaluated{Candidate: c}
	leaf := c.Certificate
	now := v.o.Now()
	add := func(name string, ok bool, format string, args ...any) {
		ev.Checks = append(ev.Checks, Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
	}

	// address
	addrs, fromSubject := certAddresses(leaf)
	matched := false
	for _, a := range addrs {
		if n, err := NormalizeAddress(a); err == nil && n == email {
			matched = true
		}
	}
	where := "email SANs"
	if fromSubject {
		where = "subject emailAddress (no email SAN)"
	}
	switch {
	case matched:
		add(CheckAddress, true, "%s among the certificate's %s", email, where)
	case len(addrs) == 0:
		add(CheckAddress, false, "the certificate names no email address")
	default:
		add(CheckAddress, false, "%s not among the certificate's %s %v", email, where, addrs)
	}

	// validity
	switch {
	case now.Before(leaf.NotBefore):
		add(CheckValidity, false, "not yet valid: notBefore %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	case now.After(leaf.NotAfter):
		add(CheckValidity, false, "expired: notAfter %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	default:
		add(CheckValidity, true, "valid %s to %s", leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}

	// chain
	chain, err := v.chain(ctx, leaf, c.Intermediates, now)
	chainUndecided := errors.Is(err, errNotNow)
	if err != nil {
		ev.Checks = append(ev.Checks, Check{Name: CheckChain, Detail: err.Error(), Undecided: chainUndecided})
	} else {
		ev.Chain = chain
		add(CheckChain, true, "%s", describeChain(chain))
	}

	ev.Checks = append(ev.Checks, keyUsageCheck(leaf), extKeyUsageCheck(leaf), v.keyStrengthCheck(leaf), signatureCheck(leaf, chain))

	// revocation
	if len(chain) < 2 {
		// Without a chain there is no issuer to ask about; whether that
		// is a verdict depends on why the chain failed.
		ev.Checks = append(ev.Checks, Check{Name: CheckRevocation, Undecided: chainUndecided,
			Detail: "not checked: no chain to a trusted anchor, so no issuer to check against"})
	} else {
		rc := v.rev.check(ctx, leaf, chain[1], v.o.Revocation)
		// A revoked intermediate voids everything under it. Its unknown
		// status is not held against the leaf: CAs rarely publish one
		// for their own intermediates, and hard-fail would refuse them all.
		for i := 1; rc.OK && i < len(chain)-1; i++ {
			if st, why := v.rev.status(ctx, chain[i], chain[i+1]); st == revRevoked {
				rc = Check{Name: CheckRevocation, Detail: fmt.Sprintf("issuing CA %q %s", chain[i].Subject.CommonName, why)}
			}
		}
		ev.Checks = append(ev.Checks, rc)
	}

	ev.Valid, ev.Undecided = verdict(ev.Checks)
	return ev
}

// verdict: valid when every check passed; undecided when some failed and
// every failure is one that could not be judged now. A single definite
// failure (expired, revoked, wrong address ...) is a verdict by itself.
func verdict(checks []Check) (valid, undecided bool) {
	valid, undecided = true, true
	for _, c := range checks {
		if !c.OK {
			valid = false
			undecided = undecided && c.Undecided
		}
	}
	return valid, !valid && undecided
}

// errNotNow marks a check failure that says nothing about the certificate:
// a fetch failed or returned something else than asked for. The lookup
// becomes undecided (retry later) instead of "not found".
var errNotNow = errors.New("cannot be judged now")

// chain verifies leaf up to an anchor. It verifies at a moment inside the
// leaf's validity so that an expired leaf is reported by the validity
// check and the chain check still says whether the issuer is trusted;
// intermediates and anchors must be valid now. Missing intermediates are
// fetched from the AIA caIssuers URL (HTTP only).
func (v *Validator) chain(ctx context.Context, leaf *x509.Certificate, extra []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	at := now
	if at.Before(leaf.NotBefore) {
		at = leaf.NotBefore
	} else if at.After(leaf.NotAfter) {
		at = leaf.NotAfter
	}
	key := chainKey(leaf, extra)
	v.chainsMu.Lock()
	e, hit := v.chains[key]
	v.chainsMu.Unlock()
	if hit && now.Before(e.until) {
		return checkIssuersValid(e.chain, now)
	}
	inter := x509.NewCertPool()
	for _, c := range extra {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: v.o.Roots, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	chains, err := leaf.Verify(opts)
	// Walk AIA for missing issuers, at most a few steps. A fetch that
	// fails, or answers with something that is not the issuer (a captive
	// portal, an attacker on the plain-HTTP path), says nothing about the
	// certificate: the chain is then undecided, not untrusted.
	cur := leaf
	for step := 0; err != nil && step < 3; step++ {
		var ua x509.UnknownAuthorityError
		if !errors.As(err, &ua) || !hasHTTPURL(cur.IssuingCertificateURL) {
			break
		}
		issuer, ferr := v.fetchIssuer(ctx, cur)
		if ferr != nil {
			return nil, fmt.Errorf("%w: the issuer of %q is not at hand and its AIA download failed: %w",
				errNotNow, cur.Subject.CommonName, ferr)
		}
		inter.AddCert(issuer)
		cur = issuer
		chains, err = leaf.Verify(opts)
	}
	if err != nil {
		return nil, describeVerifyError(err)
	}
	chain := chains[0]
	v.chainsMu.Lock()
	if v.chains == nil || len(v.chains) >= chainCacheMax {
		v.chains = map[string]chainEntry{}
	}
	v.chains[key] = chainEntry{chain: chain, until: now.Add(chainCacheTTL)}
	v.chainsMu.Unlock()
	return checkIssuersValid(chain, now)
}

// checkIssuersValid refuses a chain with an issuer outside its validity
// now (the leaf's own validity is a check of its own).
func checkIssuersValid(chain []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	for _, c := range chain[1:] {
		if now.After(c.NotAfter) || now.Before(c.NotBefore) {
			return nil, fmt.Errorf("issuer %q is outside its validity (%s to %s)", c.Subject.CommonName,
				c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	return chain, nil
}

// chainKey names a verification: the leaf and the intermediates offered
// with it (another set may build another chain).
func chainKey(leaf *x509.Certificate, extra []*x509.Certificate) string {
	h := sha256.New()
	h.Write(leaf.Raw)
	for _, c := range extra {
		sum := sha256.Sum256(c.Raw)
		h.Write(sum[:])
	}
	return string(h.Sum(nil))
}

// fetchIssuer downloads the issuer of c from its AIA caIssuers URLs
// (HTTP only) and returns the first certificate that really issued c: its
// subject is c's issuer and its key verifies c's signature. Downloads are
// cached; an answer holding no such certificate is dropped from the cache
// so that the next lookup asks again.
func (v *Validator) fetchIssuer(ctx context.Context, c *x509.Certificate) (*x509.Certificate, error) {
	var errs []error
	for _, u := range c.IssuingCertificateURL {
		if !isHTTP(u) {
			continue
		}
		certs, err := v.aia.get(ctx, u, func(ctx context.Context) ([]*x509.Certificate, time.Time, error) {
			body, err := httpGet(ctx, v.o.HTTPClient, u, v.o.FetchTimeout, 1<<20)
			if err != nil {
				return nil, time.Time{}, err
			}
			certs, err := ParseCertificates(body)
			return certs, v.o.Now().Add(24 * time.Hour), err
		})
		if err != nil {
			v.o.Logger.Debug("AIA fetch failed", "url", u, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			continue
		}
		for _, f := range certs {
			if issued(f, c) {
				return f, nil
			}
		}
		v.aia.forget(u)
		errs = append(errs, fmt.Errorf("%s: none of the %d certificates it returned issued %q", u, len(certs), c.Subject.CommonName))
	}
	return nil, errors.Join(errs...)
}

// issued reports whether parent's key made child's signature. It uses
// CheckSignature, which still verifies SHA-1: a SHA-1 child does count as
// issued, and the chain and signature-algorithm checks then refuse it with
// their own, definite, reason.
func issued(parent, child *x509.Certificate) bool {
	return bytes.Equal(parent.RawSubject, child.RawIssuer) &&
		parent.CheckSignature(child.SignatureAlgorithm, child.RawTBSCertificate, child.Signature) == nil
}

func hasHTTPURL(urls []string) bool {
	for _, u := range urls {
		if isHTTP(u) {
			return true
		}
	}
	return false
}

func describeVerifyError(err error) error {
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		// Its text names the issuer and, when a candidate CA was found but
		// refused (say, for a SHA-1 signature), why.
		return fmt.Errorf("untrusted: no chain to a trusted anchor: %w", err)
	}
	var ia x509.InsecureAlgorithmError
	if errors.As(err, &ia) {
		return fmt.Errorf("chain uses an insecure signature algorithm: %w", err)
	}
	return fmt.Errorf("chain does not verify: %w", err)
}

func describeChain(chain []*x509.Certificate) string {
	names := make([]string, len(chain))
	for i, c := range chain {
		names[i] = c.Subject.CommonName
		if names[i] == "" {
			names[i] = c.Subject.String()
		}
	}
	return "chains to trusted anchor: " + strings.Join(names, " ← ")
}

func keyUsageCheck(c *x509.Certificate) Check {
	need, alg := x509.KeyUsageKeyEncipherment, "keyEncipherment"
	switch c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		need, alg = x509.KeyUsageKeyAgreement, "keyAgreement"
	case ed25519.PublicKey:
		return Check{Name: CheckKeyUsage, OK: false, Detail: "Ed25519 keys can only sign, not receive encrypted mail"}
	}
	if c.KeyUsage == 0 {
		return Check{Name: CheckKeyUsage, OK: true, Detail: "no KeyUsage extension: any use allowed"}
	}
	if c.KeyUsage&need != 0 {
		return Check{Name: CheckKeyUsage, OK: true, Detail: "KeyUsage includes " + alg}
	}
	return Check{Name: CheckKeyUsage, OK: false, Detail: "KeyUsage lacks " + alg + ": the certificate is not for encryption"}
}

func extKeyUsageCheck(c *x509.Certificate) Check {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return Check{Name: CheckExtKeyUsage, OK: true, Detail: "no ExtendedKeyUsage extension: any use allowed"}
	}
	for _, u := range c.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageEmailProtection:
			return Check{Name: CheckExtKeyUsage, OK: true, Detail: "emailProtection"}
		case x509.ExtKeyUsageAny:
			return Check{Name: CheckExtKeyUsage, OK: true, Detail: "anyExtendedKeyUsage"}
		}
	}
	return Check{Name: CheckExtKeyUsage, OK: false, Detail: "ExtendedKeyUsage lacks emailProtection (has " + ekuNames(c) + ")"}
}

func ekuNames(c *x509.Certificate) string {
	names := map[x509.ExtKeyUsage]string{
		x509.ExtKeyUsageServerAuth: "serverAuth", x509.ExtKeyUsageClientAuth: "clientAuth",
		x509.ExtKeyUsageCodeSigning: "codeSigning", x509.ExtKeyUsageTimeStamping: "timeStamping",
		x509.ExtKeyUsageOCSPSigning: "OCSPSigning",
	}
	var out []string
	for _, u := range c.ExtKeyUsage {
		if n, ok := names[u]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprintf("eku-%d", u))
		}
	}
	for _, o := range c.UnknownExtKeyUsage {
		out = append(out, o.String())
	}
	return strings.Join(out, ", ")
}

func (v *Validator) keyStrengthCheck(c *x509.Certificate) Check {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		if bits < v.o.MinRSABits {
			return Check{Name: CheckKeyStrength, OK: false, Detail: fmt.Sprintf("RSA %d bits, below the minimum %d", bits, v.o.MinRSABits)}
		}
		return Check{Name: CheckKeyStrength, OK: true, Detail: fmt.Sprintf("RSA %d bits", bits)}
	case *ecdsa.PublicKey:
		bits := k.Curve.Params().BitSize
		if bits < 256 {
			return Check{Name: CheckKeyStrength, OK: false, Detail: fmt.Sprintf("EC %d bits, below 256", bits)}
		}
		return Check{Name: CheckKeyStrength, OK: true, Detail: "EC " + k.Curve.Params().Name}
	case ed25519.PublicKey:
		return Check{Name: CheckKeyStrength, OK: true, Detail: "Ed25519"}
	default:
		return Check{Name: CheckKeyStrength, OK: false, Detail: fmt.Sprintf("unsupported public key type %T", k)}
	}
}

func weakSignature(a x509.SignatureAlgorithm) bool {
	switch a {
	case x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1, x509.MD5WithRSA, x509.MD2WithRSA:
		return true
	}
	return false
}

// signatureCheck refuses SHA-1 (and older) signatures on the leaf and on
// the intermediates; an anchor's self-signature does not matter.
func signatureCheck(leaf *x509.Certificate, chain []*x509.Certificate) Check {
	if weakSignature(leaf.SignatureAlgorithm) {
		return Check{Name: CheckSignatureAlg, OK: false, Detail: fmt.Sprintf("the certificate is signed with %s", leaf.SignatureAlgorithm)}
	}
	if len(chain) > 2 {
		for _, c := range chain[1 : len(chain)-1] {
			if weakSignature(c.SignatureAlgorithm) {
				return Check{Name: CheckSignatureAlg, OK: false, Detail: fmt.Sprintf("intermediate %q is signed with %s", c.Subject.CommonName, c.SignatureAlgorithm)}
			}
		}
	}
	return Check{Name: CheckSignatureAlg, OK: true, Detail: leaf.SignatureAlgorithm.String()}
}
