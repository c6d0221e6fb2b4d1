package directory

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"
	"golang.org/x/sync/singleflight"
)

// revocationChecker asks OCSP first (fresh, small) and falls back to the
// CRL; answers are cached until their nextUpdate (bounded), failures for a
// short while so a dead responder is not asked per message.
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
	revUnknown
)

// check returns whether leaf may be used and why, applying mode to an
// unknown status.
func (r *revocationChecker) check(ctx context.Context, leaf, issuer *x509.Certificate, mode string) (bool, string) {
	st, why := r.status(ctx, leaf, issuer)
	switch st {
	case revGood:
		return true, why
	case revRevoked:
		return false, why
	}
	if mode == RevocationHardFail {
		return false, "status unknown, refused (trust.revocation = hard-fail): " + why
	}
	return true, "status unknown, accepted (trust.revocation = soft-fail): " + why
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
		unknown = append(unknown, "the certificate names no HTTP OCSP responder or CRL distribution point")
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
		return set, cacheUntil(r.now(), list.NextUpdate), nil
	})
}

func (r *revocationChecker) verifyCRL(set *crlSet, issuer *x509.Certificate) error {
	if !bytes.Equal(set.list.RawIssuer, issuer.RawSubject) {
		return errors.New("CRL is from another issuer")
	}
	fp := Fingerprint(issuer)
	if _, ok := set.sigOK.Load(fp); !ok {
		if err := set.list.CheckSignatureFrom(issuer); err != nil {
			return fmt.Errorf("CRL signature: %w", err)
		}
		set.sigOK.Store(fp, true)
	}
	if !set.list.NextUpdate.IsZero() && r.now().After(set.list.NextUpdate) {
		return fmt.Errorf("CRL is stale (nextUpdate %s)", set.list.NextUpdate.UTC().Format(time.RFC3339))
	}
	return nil
}

func (r *revocationChecker) ocsp(ctx context.Context, url string, leaf, issuer *x509.Certificate) (*ocsp.Response, error) {
	key := url + "|" + Fingerprint(issuer) + "|" + leaf.SerialNumber.String()
	return r.ocsps.get(ctx, key, func(ctx context.Context) (*ocsp.Response, time.Time, error) {
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
		if resp.ThisUpdate.After(now.Add(5 * time.Minute)) {
			return nil, time.Time{}, errors.New("OCSP response from the future")
		}
		if !resp.NextUpdate.IsZero() && now.After(resp.NextUpdate) {
			return nil, time.Time{}, errors.New("OCSP response is stale")
		}
		return resp, cacheUntil(now, resp.NextUpdate), nil
	})
}

// cacheUntil keeps a revocation answer until its nextUpdate, at least a
// minute and at most a day; without nextUpdate for an hour.
func cacheUntil(now, next time.Time) time.Time {
	switch {
	case next.IsZero():
		return now.Add(time.Hour)
	case next.Sub(now) < time.Minute:
		return now.Add(time.Minute)
	case next.Sub(now) > 24*time.Hour:
		return now.Add(24 * time.Hour)
	}
	return next
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
