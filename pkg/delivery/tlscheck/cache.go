package tlscheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/sealgate/sealgate/pkg/store"
)

// CacheKind is the store's kind for TLS verdicts.
const CacheKind = "verdict"

// DefaultTTL is how long a verdict is reused.
const DefaultTTL = time.Hour

// Store shares verdicts between nodes and restarts (*store.Store).
type Store interface {
	TLSCache(ctx context.Context, kind, domain string) (store.TLSCacheEntry, error)
	PutTLSCache(ctx context.Context, e store.TLSCacheEntry) error
}

// Checker probes a domain (*Prober).
type Checker interface {
	Check(ctx context.Context, domain string) (Report, error)
}

// Cache hands out a domain's report, probing at most once per domain per
// TTL.
//
// Memory and store: the memory copy answers the pipeline without a store
// round trip per recipient and lets concurrent messages to one domain
// wait for a single probe; the store lets the other nodes and a restarted
// gateway reuse the verdict instead of probing again. A failed probe is
// not cached: the message is deferred and the next attempt probes anew.
type Cache struct {
	Checker Checker
	Store   Store // nil: memory only
	TTL     time.Duration
	Log     *slog.Logger
	Now     func() time.Time
	// MaxEntries bounds the memory copy (0: DefaultMaxEntries). Recipient
	// domains come from outside: mail to a million made-up domains must
	// not grow the gateway without bound. When full, expired reports go
	// first, then arbitrary ones; the store still holds them.
	MaxEntries int

	mu       sync.Mutex
	mem      map[string]Report
	inflight map[string]*call
}

type call struct {
	done chan struct{}
	r    Report
	err  error
}

// Report returns domain's cached report or probes it.
func (c *Cache) Report(ctx context.Context, domain string) (Report, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	now := c.now()
	c.mu.Lock()
	if r, ok := c.mem[domain]; ok && now.Before(r.CheckedAt.Add(c.ttl())) {
		c.mu.Unlock()
		return r, nil
	}
	if cl, ok := c.inflight[domain]; ok {
		c.mu.Unlock()
		select {
		case <-cl.done:
			return cl.r, cl.err
		case <-ctx.Done():
			return Report{}, fmt.Errorf("tlscheck: waiting for the check of %s: %w", domain, ctx.Err())
		}
	}
	cl := &call{done: make(chan struct{})}
	if c.inflight == nil {
		c.inflight, c.mem = map[string]*call{}, map[string]Report{}
	}
	c.inflight[domain] = cl
	c.mu.Unlock()

	cl.r, cl.err = c.load(ctx, domain, now)
	c.mu.Lock()
	delete(c.inflight, domain)
	if cl.err == nil {
		c.keep(domain, cl.r, now)
	}
	c.mu.Unlock()
	close(cl.done)
	return cl.r, cl.err
}

func (c *Cache) load(ctx context.Context, domain string, now time.Time) (Report, error) {
	if c.Store != nil {
		e, err := c.Store.TLSCache(ctx, CacheKind, domain)
		switch {
		case err == nil && now.Before(e.ExpiresAt):
			var r Report
			if jerr := json.Unmarshal(e.Data, &r); jerr == nil && r.Domain == domain {
				return r, nil
			}
		case err != nil && !errors.Is(err, store.ErrNotFound):
			c.log().Warn("tlscheck: reading the verdict cache failed; probing", "domain", domain, "err", err)
		}
	}
	r, err := c.Checker.Check(ctx, domain)
	if err != nil {
		return Report{}, err
	}
	r.CheckedAt = now.UTC()
	c.remember(ctx, domain, r, now)
	return r, nil
}

func (c *Cache) ttl() time.Duration {
	if c.TTL > 0 {
		return c.TTL
	}
	return DefaultTTL
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

// Refresh probes domain now, whatever is cached, and caches the result
// (sealgate tls check: an admin wants today's facts, and the pipeline
// then uses them).
func (c *Cache) Refresh(ctx context.Context, domain string) (Report, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	now := c.now()
	r, err := c.Checker.Check(ctx, domain)
	if err != nil {
		return r, err
	}
	r.CheckedAt = now.UTC()
	c.remember(ctx, domain, r, now)
	c.mu.Lock()
	if c.mem == nil {
		c.inflight, c.mem = map[string]*call{}, map[string]Report{}
	}
	c.keep(domain, r, now)
	c.mu.Unlock()
	return r, nil
}

// DefaultMaxEntries is the memory copy's bound when MaxEntries is 0.
const DefaultMaxEntries = 10000

// keep puts r into the memory copy, making room first. c.mu is held.
func (c *Cache) keep(domain string, r Report, now time.Time) {
	max := c.MaxEntries
	if max <= 0 {
		max = DefaultMaxEntries
	}
	if _, ok := c.mem[domain]; !ok && len(c.mem) >= max {
		for d, old := range c.mem {
			if !now.Before(old.CheckedAt.Add(c.ttl())) {
				delete(c.mem, d)
			}
		}
		for d := range c.mem {
			if len(c.mem) < max {
				break
			}
			delete(c.mem, d)
		}
	}
	c.mem[domain] = r
}

func (c *Cache) remember(ctx context.Context, domain string, r Report, now time.Time) {
	if c.Store == nil {
		return
	}
	data, err := json.Marshal(r)
	if err == nil {
		err = c.Store.PutTLSCache(ctx, store.TLSCacheEntry{Kind: CacheKind, Domain: domain, Data: data,
			FetchedAt: now, ExpiresAt: now.Add(c.ttl())})
	}
	if err != nil {
		c.log().Warn("tlscheck: caching the verdict failed", "domain", domain, "err", err)
	}
}
