package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// TLSCacheEntry is one cached fact about a recipient domain's mail
// servers: an MTA-STS policy (Kind "mta-sts", ID the TXT record's id) or
// a TLS check verdict (Kind "verdict"). Data is the caller's encoding;
// nothing in it is secret.
type TLSCacheEntry struct {
	Kind      string
	Domain    string
	ID        string
	Data      []byte
	FetchedAt time.Time
	ExpiresAt time.Time
}

// TLSCache returns the entry of kind for domain (lower-cased), expired or
// not: the caller decides what an expired one is still good for (RFC 8461
// §5.1 keeps an enforce policy when a refetch fails). ErrNotFound when
// there is none.
func (s *Store) TLSCache(ctx context.Context, kind, domain string) (TLSCacheEntry, error) {
	e := TLSCacheEntry{Kind: kind, Domain: strings.ToLower(domain)}
	var fetched, expires int64
	err := s.queryRow(ctx, nil, `SELECT id, data, fetched_at, expires_at FROM tls_cache WHERE kind = $1 AND domain = $2`,
		e.Kind, e.Domain).Scan(&e.ID, &e.Data, &fetched, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return TLSCacheEntry{}, ErrNotFound
	}
	if err != nil {
		return TLSCacheEntry{}, fmt.Errorf("store: reading the %s cache for %s: %w", kind, domain, err)
	}
	e.FetchedAt, e.ExpiresAt = time.UnixMicro(fetched).UTC(), time.UnixMicro(expires).UTC()
	return e, nil
}

// PutTLSCache stores e, replacing the entry of the same kind and domain.
func (s *Store) PutTLSCache(ctx context.Context, e TLSCacheEntry) error {
	if e.Kind == "" || e.Domain == "" {
		return errors.New("store: PutTLSCache: kind and domain are required")
	}
	if e.Data == nil {
		e.Data = []byte{}
	}
	_, err := s.exec(ctx, nil, `INSERT INTO tls_cache (kind, domain, id, data, fetched_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (kind, domain) DO UPDATE SET id = excluded.id, data = excluded.data,
			fetched_at = excluded.fetched_at, expires_at = excluded.expires_at`,
		e.Kind, strings.ToLower(e.Domain), e.ID, e.Data, s.orNow(e.FetchedAt).UnixMicro(), e.ExpiresAt.UnixMicro())
	if err != nil {
		return fmt.Errorf("store: saving the %s cache for %s: %w", e.Kind, e.Domain, err)
	}
	return nil
}
