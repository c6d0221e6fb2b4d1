package mtasts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/sealgate/sealgate/pkg/store"
)

// TXTLookup finds TXT records (the resolver of relay.resolver).
type TXTLookup interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// PolicyFetcher fetches a domain's policy body (*Fetcher).
type PolicyFetcher interface {
	Fetch(ctx context.Context, domain string) ([]byte, error)
}

// Store keeps policies across nodes and restarts (*store.Store).
type Store interface {
	TLSCache(ctx context.Context, kind, domain string) (store.TLSCacheEntry, error)
	PutTLSCache(ctx context.Context, e store.TLSCacheEntry) error
}

// CacheKind is the store's kind for MTA-STS policies.
const CacheKind = "mta-sts"

// Cache finds a domain's policy: from the store while it is fresh and the
// TXT id unchanged, else fetched and stored for max_age.
type Cache struct {
	TXT   TXTLookup
	Fetch PolicyFetcher
	Store Store
	Log   *slog.Logger
	Now   func() time.Time
}

// Lookup returns domain's policy, or nil when it has none (RFC 8461: no
// valid TXT record, or a policy that cannot be fetched and none cached).
// An error only when the store cannot answer: a cached enforce policy may
// be there, and not knowing it must not weaken delivery.
//
// RFC 8461 §5.1: a cached, unexpired policy is used when the TXT record
// is missing or unchanged, and kept when a refetch after an id change
// fails; an attacker who blocks the DNS or the HTTPS fetch gets no
// downgrade while the cache lives.
func (c *Cache) Lookup(ctx context.Context, domain string) (*Policy, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	now := c.now()
	var cached *Policy
	var cachedID string
	e, err := c.Store.TLSCache(ctx, CacheKind, domain)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("mta-sts: cache for %s: %w", domain, err)
	case e.ExpiresAt.After(now):
		if p, perr := Parse(e.Data); perr == nil {
			cached, cachedID = p, e.ID
		}
	}
	records, err := c.TXT.LookupTXT(ctx, "_mta-sts."+domain)
	if err != nil {
		c.log().Debug("mta-sts: TXT lookup failed", "domain", domain, "err", err)
		return cached, nil
	}
	id, err := ParseTXT(records)
	if err != nil {
		c.log().Debug("mta-sts: no valid TXT record", "domain", domain, "err", err)
		return cached, nil
	}
	if cached != nil && cachedID == id {
		return cached, nil
	}
	body, err := c.Fetch.Fetch(ctx, domain)
	var p *Policy
	if err == nil {
		p, err = Parse(body)
	}
	if err != nil {
		c.log().Warn("mta-sts: policy not usable", "domain", domain, "id", id, "err", err, "cached", cached != nil)
		return cached, nil
	}
	if err := c.Store.PutTLSCache(ctx, store.TLSCacheEntry{Kind: CacheKind, Domain: domain, ID: id, Data: body,
		FetchedAt: now, ExpiresAt: now.Add(p.MaxAge)}); err != nil {
		// The policy is good for this delivery; the next one fetches again.
		c.log().Warn("mta-sts: caching the policy failed", "domain", domain, "err", err)
	}
	return p, nil
}

// Policy implements the MX relay's STSPolicies: mode "" when the domain
// has no policy.
func (c *Cache) Policy(ctx context.Context, domain string) (mode string, mx []string, err error) {
	p, err := c.Lookup(ctx, domain)
	if err != nil || p == nil {
		return "", nil, err
	}
	return p.Mode, append([]string(nil), p.MX...), nil
}

func (c *Cache) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Cache) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}
