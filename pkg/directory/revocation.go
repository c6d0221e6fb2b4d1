package directory

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"
	"golang.org/x/sync/singleflight"
)

// revocationChecker asks OCSP first (fresh, small) and falls back to the
// CRL; answers are cached while fresh (see freshUntil, at most a day),
// failures for a short while so a dead responder is not asked per message.
type revocationChecker struct {
	client  *http.Client
	timeout time.Duration
	now     func() time.Time
	crls    *fetchCache[*crlSet]
	ocsps   *fetchCache[*ocsp.Response]
}

type crlSet struct {
	list    *x509.RevocationList
	revoked map[string]x509.RevocationListEntry // by serial (decimal)
	// sigOK remembers issuers (by fingerprint) whose signature on this
	// CRL verified, so a cached CRL is not re-verified per lookup.
	sigOK sync.Map
}

func newRevocationChecker(c *http.Client, timeout time.Duration, now func() time.Time) *revocationChecker {
	return &revocationChecker{client: c, timeout: timeout, now: now,
		crls: newFetchCache[*crlSet](now), ocsps: newFetchCache[*ocsp.Response](now)}
}

// Revocation states of one certificate.
type revState int

const (
	revGood revState = iota
	revRevoked
	// revUnknown: a responder or CRL was named but gave no usable answer
	// now (unreachable, stale, badly signed): it may answer later.
	revUnknown
	// revUnpublished: the certificate names no HTTP OCSP responder or CRL
	// distribution point, so its status can never be learnt.
	revUnpublished
)

// check judges leaf's revocation status, applying mode to an unknown one.
// Under hard-fail a status that is unknown now is undecided (the lookup
// is retried later); one that can never be known is a refusal.
func (r *revocationChecker) check(ctx context.Context, leaf, issuer *x509.Certificate, mode string) Check {
	st, why := r.status(ctx, leaf, issuer)
	c := Check{Name: CheckRevocation, Detail: why}
	switch {
	case st == revGood:
		c.OK = true
	case st == revRevoked:
	case mode != RevocationHardFail:
		c.OK, c.Detail = true, "status unknown, accepted (trust.revocation = soft-fail): "+why
	case st == revUnpublished:
		c.Detail = "status unknown, refused (trust.revocation = hard-fail): " + why
	default:
		c.Undecided = true
		c.Detail = "status unknown now, undecided until it can be checked (trust.revocation = hard-fail): " + why
	}
	return c
}

// status asks OCSP, then the CRL, for cert issued by issuer.
func (r *revocationChecker) status(ctx context.Context, leaf, issuer *x509.Certificate) (revState, string) {
	var unknown []string
	for _, u := range leaf.OCSPServer {
		if !isHTTP(u) {
			continue
		}
		resp, err := r.ocsp(ctx, u, leaf, issuer)
		if err != nil {
			unknown = append(unknown, fmt.Sprintf("OCSP %s: %v", u, err))
			continue
		}
		switch resp.Status {
		case ocsp.Good:
			return revGood, fmt.Sprintf("not revoked (OCSP %s, thisUpdate %s)", u, resp.ThisUpdate.UTC().Format(time.RFC3339))
		case ocsp.Revoked:
			return revRevoked, fmt.Sprintf("revoked at %s, reason %s (OCSP %s)", resp.RevokedAt.UTC().Format(time.RFC3339), reasonName(resp.RevocationReason), u)
		default:
			unknown = append(unknown, fmt.Sprintf("OCSP %s: status unknown", u))
		}
	}
	for _, u := range leaf.CRLDistributionPoints {
		if !isHTTP(u) {
			continue
		}
		set, err := r.crl(ctx, u)
		if err == nil {
			err = r.verifyCRL(set, issuer)
		}
		if err == nil {
			err = crlCovers(set.list, u, leaf.IsCA)
		}
		if err != nil {
			unknown = append(unknown, fmt.Sprintf("CRL %s: %v", u, err))
			continue
		}
		if e, ok := set.revoked[leaf.SerialNumber.String()]; ok {
			return revRevoked, fmt.Sprintf("revoked at %s, reason %s (CRL %s)", e.RevocationTime.UTC().Format(time.RFC3339), reasonName(e.ReasonCode), u)
		}
		return revGood, fmt.Sprintf("not revoked (CRL %s, thisUpdate %s)", u, set.list.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if len(unknown) == 0 {
		return revUnpublished, "the certificate names no HTTP OCSP responder or CRL distribution point"
	}
	return revUnknown, strings.Join(unknown, "; ")
}

func (r *revocationChecker) crl(ctx context.Context, url string) (*crlSet, error) {
	return r.crls.get(ctx, url, func(ctx context.Context) (*crlSet, time.Time, error) {
		body, err := httpGet(ctx, r.client, url, r.timeout, 64<<20)
		if err != nil {
			return nil, time.Time{}, err
		}
		der := body
		if bytes.HasPrefix(bytes.TrimSpace(body), []byte("-----BEGIN")) {
			if certsPEM := pemBlockBytes(body, "X509 CRL"); certsPEM != nil {
				der = certsPEM
			}
		}
		list, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("parse CRL: %w", err)
		}
		set := &crlSet{list: list, revoked: make(map[string]x509.RevocationListEntry, len(list.RevokedCertificateEntries))}
		for _, e := range list.RevokedCertificateEntries {
			set.revoked[e.SerialNumber.String()] = e
		}
		return set, cacheUntil(r.now(), freshUntil(list.ThisUpdate, list.NextUpdate)), nil
	})
}

func (r *revocationChecker) verifyCRL(set *crlSet, issuer *x509.Certificate) error {
	if !bytes.Equal(set.list.RawIssuer, issuer.RawSubject) {
		return errors.New("CRL is from another issuer")
	}
	// RevocationList.CheckSignatureFrom still verifies SHA-1 signatures.
	if weakSignature(set.list.SignatureAlgorithm) {
		return fmt.Errorf("CRL is signed with %s: refused (SHA-1 and MD5 signatures can be forged)", set.list.SignatureAlgorithm)
	}
	fp := Fingerprint(issuer)
	if _, ok := set.sigOK.Load(fp); !ok {
		if err := set.list.CheckSignatureFrom(issuer); err != nil {
			return fmt.Errorf("CRL signature: %w", err)
		}
		set.sigOK.Store(fp, true)
	}
	return fresh("CRL", r.now(), set.list.ThisUpdate, set.list.NextUpdate)
}

var (
	oidDeltaCRLIndicator         = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidIssuingDistributionPoint  = asn1.ObjectIdentifier{2, 5, 29, 28}
	tagDistributionPointFullName = 0
	tagGeneralNameURI            = 6
)

// issuingDistributionPoint is the CRL extension of RFC 5280 §5.2.5.
type issuingDistributionPoint struct {
	DistributionPoint          asn1.RawValue  `asn1:"optional,tag:0"`
	OnlyContainsUserCerts      bool           `asn1:"optional,tag:1"`
	OnlyContainsCACerts        bool           `asn1:"optional,tag:2"`
	OnlySomeReasons            asn1.BitString `asn1:"optional,tag:3"`
	IndirectCRL                bool           `asn1:"optional,tag:4"`
	OnlyContainsAttributeCerts bool           `asn1:"optional,tag:5"`
}

// crlCovers refuses a CRL that, although signed by the issuer and
// current, is not the complete list for the certificate: a delta CRL, or
// a partition (issuingDistributionPoint) for another distribution point,
// for CA certificates only, for some reasons only, or indirect. The URL is
// plain HTTP: whoever sits on the path can serve any genuine CRL of the
// CA, and one that does not list a revoked certificate must not make it
// "not revoked".
func crlCovers(list *x509.RevocationList, url string, isCA bool) error {
	for _, ext := range list.Extensions {
		switch {
		case ext.Id.Equal(oidDeltaCRLIndicator):
			return errors.New("a delta CRL, not a complete one: refused")
		case ext.Id.Equal(oidIssuingDistributionPoint):
			var idp issuingDistributionPoint
			if rest, err := asn1.Unmarshal(ext.Value, &idp); err != nil || len(rest) != 0 {
				return fmt.Errorf("CRL issuingDistributionPoint does not parse: %v", err)
			}
			switch {
			case idp.IndirectCRL, idp.OnlyContainsAttributeCerts, idp.OnlySomeReasons.BitLength > 0:
				return errors.New("a partitioned CRL (indirect, some reasons or attribute certificates only): refused")
			case idp.OnlyContainsCACerts && !isCA, idp.OnlyContainsUserCerts && isCA:
				return errors.New("the CRL covers another kind of certificate (issuingDistributionPoint): refused")
			}
			if len(idp.DistributionPoint.FullBytes) > 0 && !slices.Contains(idpURIs(idp.DistributionPoint), url) {
				return fmt.Errorf("the CRL is for another distribution point than %s (issuingDistributionPoint): refused", url)
			}
		}
	}
	return nil
}

// idpURIs lists the URIs of an issuingDistributionPoint's fullName.
func idpURIs(dp asn1.RawValue) []string {
	var name asn1.RawValue // DistributionPointName, explicitly tagged [0]
	if _, err := asn1.Unmarshal(dp.Bytes, &name); err != nil || name.Tag != tagDistributionPointFullName {
		return nil
	}
	var out []string
	for rest := name.Bytes; len(rest) > 0; {
		var gn asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &gn); err != nil {
			return out
		}
		if gn.Class == asn1.ClassContextSpecific && gn.Tag == tagGeneralNameURI {
			out = append(out, string(gn.Bytes))
		}
	}
	return out
}

func (r *revocationChecker) ocsp(ctx context.Context, url string, leaf, issuer *x509.Certificate) (*ocsp.Response, error) {
	key := url + "|" + Fingerprint(issuer) + "|" + leaf.SerialNumber.String()
	resp, err := r.ocsps.get(ctx, key, func(ctx context.Context) (*ocsp.Response, time.Time, error) {
		req, err := ocsp.CreateRequest(leaf, issuer, nil)
		if err != nil {
			return nil, time.Time{}, err
		}
		ctx, cancel := context.WithTimeout(ctx, r.timeout)
		defer cancel()
		hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(req))
		if err != nil {
			return nil, time.Time{}, err
		}
		hreq.Header.Set("Content-Type", "application/ocsp-request")
		body, err := doHTTP(r.client, hreq, 1<<20)
		if err != nil {
			return nil, time.Time{}, err
		}
		resp, err := ocsp.ParseResponseForCert(body, leaf, issuer)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("OCSP response: %w", err)
		}
		now := r.now()
		if err := acceptableResponder(resp, issuer, now); err != nil {
			return nil, time.Time{}, err
		}
		if err := fresh("OCSP response", now, resp.ThisUpdate, resp.NextUpdate); err != nil {
			return nil, time.Time{}, err
		}
		return resp, cacheUntil(now, freshUntil(resp.ThisUpdate, resp.NextUpdate)), nil
	})
	if err != nil {
		return nil, err
	}
	// A cached answer may have gone stale since it was fetched.
	if err := fresh("OCSP response", r.now(), resp.ThisUpdate, resp.NextUpdate); err != nil {
		return nil, err
	}
	return resp, nil
}

// acceptableResponder refuses what golang.org/x/crypto/ocsp accepts but
// RFC 6960 and we do not: a response (or a delegated responder
// certificate) signed with SHA-1 or MD5, which the library verifies like
// any other, and a delegated responder certificate without the
// id-kp-OCSPSigning extended key usage or outside its validity. Without
// the EKU check any certificate the CA ever issued, such as someone's mail
// certificate, could sign "good" for a revoked one (§4.2.2.2).
func acceptableResponder(resp *ocsp.Response, issuer *x509.Certificate, now time.Time) error {
	if weakSignature(resp.SignatureAlgorithm) {
		return fmt.Errorf("OCSP response is signed with %s: refused (SHA-1 and MD5 signatures can be forged)", resp.SignatureAlgorithm)
	}
	rc := resp.Certificate
	if rc == nil || rc.Equal(issuer) {
		return nil // signed by the issuer itself, verified by the library
	}
	if weakSignature(rc.SignatureAlgorithm) {
		return fmt.Errorf("OCSP responder certificate %q is signed with %s: refused", rc.Subject.CommonName, rc.SignatureAlgorithm)
	}
	if !slices.Contains(rc.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) {
		return fmt.Errorf("OCSP responder certificate %q lacks the OCSPSigning extended key usage: not a delegated responder", rc.Subject.CommonName)
	}
	if now.Before(rc.NotBefore) || now.After(rc.NotAfter) {
		return fmt.Errorf("OCSP responder certificate %q is outside its validity (%s to %s)", rc.Subject.CommonName,
			rc.NotBefore.UTC().Format(time.RFC3339), rc.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// withoutNextUpdate is how long a revocation answer that has no
// nextUpdate counts as fresh after its thisUpdate. RFC 6960 §4.2.2.1: no
// nextUpdate means newer information is always available, so the answer
// promises nothing about later; taken literally it would be good forever,
// and a replayed old "good" would hide a revocation for good. One hour is
// what a found certificate is reused anyway (the directory's positive
// TTL), so a revocation is seen within the same bound either way. A CRL
// must have a nextUpdate (RFC 5280 §5.1.2.5); one without is treated alike.
const withoutNextUpdate = time.Hour

// freshUntil is when a revocation answer stops being current.
func freshUntil(thisUpdate, nextUpdate time.Time) time.Time {
	if nextUpdate.IsZero() {
		return thisUpdate.Add(withoutNextUpdate)
	}
	return nextUpdate
}

// fresh refuses an answer from the future (beyond clock skew) or past its
// freshUntil.
func fresh(what string, now, thisUpdate, nextUpdate time.Time) error {
	if thisUpdate.After(now.Add(5 * time.Minute)) {
		return fmt.Errorf("%s from the future (thisUpdate %s)", what, thisUpdate.UTC().Format(time.RFC3339))
	}
	if until := freshUntil(thisUpdate, nextUpdate); now.After(until) {
		if nextUpdate.IsZero() {
			return fmt.Errorf("%s is stale: no nextUpdate, and thisUpdate %s is more than %v ago", what,
				thisUpdate.UTC().Format(time.RFC3339), withoutNextUpdate)
		}
		return fmt.Errorf("%s is stale (nextUpdate %s)", what, nextUpdate.UTC().Format(time.RFC3339))
	}
	return nil
}

// cacheUntil keeps a revocation answer while it is fresh, at most a day.
func cacheUntil(now, until time.Time) time.Time {
	if day := now.Add(24 * time.Hour); until.After(day) {
		return day
	}
	return until
}

var reasonNames = []string{"unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
	"cessationOfOperation", "certificateHold", "unused", "removeFromCRL", "privilegeWithdrawn", "aACompromise"}

func reasonName(code int) string {
	if code >= 0 && code < len(reasonNames) {
		return reasonNames[code]
	}
	return fmt.Sprintf("%d", code)
}

func isHTTP(u string) bool {
	return strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")
}

// httpGet fetches url with a timeout and a size limit.
func httpGet(ctx context.Context, c *http.Client, url string, timeout time.Duration, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return doHTTP(c, req, limit)
}

func doHTTP(c *http.Client, req *http.Request, limit int64) ([]byte, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("response larger than %d bytes", limit)
	}
	return body, nil
}

// fetchCache caches fetched and parsed documents by key until a time the
// loader gives; failures are cached for failTTL. Concurrent misses of one
// key share one fetch.
type fetchCache[T any] struct {
	mu      sync.Mutex
	m       map[string]fetchEntry[T]
	flight  singleflight.Group
	now     func() time.Time
	failTTL time.Duration
}

type fetchEntry[T any] struct {
	v     T
	err   error
	until time.Time
}

func newFetchCache[T any](now func() time.Time) *fetchCache[T] {
	return &fetchCache[T]{m: map[string]fetchEntry[T]{}, now: now, failTTL: 30 * time.Second}
}

// forget drops key, so that the next get fetches again.
func (f *fetchCache[T]) forget(key string) {
	f.mu.Lock()
	delete(f.m, key)
	f.mu.Unlock()
}

func (f *fetchCache[T]) get(ctx context.Context, key string, load func(context.Context) (T, time.Time, error)) (T, error) {
	f.mu.Lock()
	e, ok := f.m[key]
	f.mu.Unlock()
	if ok && f.now().Before(e.until) {
		return e.v, e.err
	}
	res, _, _ := f.flight.Do(key, func() (any, error) {
		v, until, err := load(ctx)
		if err != nil {
			until = f.now().Add(f.failTTL)
		}
		e := fetchEntry[T]{v: v, err: err, until: until}
		// A caller that gave up says nothing about the server.
		if ctx.Err() == nil {
			f.mu.Lock()
			f.m[key] = e
			f.mu.Unlock()
		}
		return e, nil
	})
	e = res.(fetchEntry[T])
	return e.v, e.err
}
