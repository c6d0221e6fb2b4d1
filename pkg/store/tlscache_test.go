package store

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// TestTLSCache: entries round-trip per kind and domain (case-insensitive
// domain), a put replaces, kinds do not mix, and an unknown one is
// ErrNotFound — on every backend.
func TestTLSCache(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.open(t, testKeyring(t))
			if _, err := s.TLSCache(ctx, "mta-sts", "example.test"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("empty cache: %v, want ErrNotFound", err)
			}
			exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
			cases := []TLSCacheEntry{
				{Kind: "mta-sts", Domain: "Example.TEST", ID: "20260101", Data: []byte("version: STSv1\n"), ExpiresAt: exp},
				{Kind: "verdict", Domain: "example.test", Data: []byte(`{"verdict":"encrypted"}`), ExpiresAt: exp.Add(time.Hour)},
				{Kind: "mta-sts", Domain: "example.test", ID: "20260202", Data: []byte("mode: enforce\n"), ExpiresAt: exp.Add(2 * time.Hour)},
			}
			for _, c := range cases {
				if err := s.PutTLSCache(ctx, c); err != nil {
					t.Fatal(err)
				}
				got, err := s.TLSCache(ctx, c.Kind, "EXAMPLE.test")
				if err != nil {
					t.Fatal(err)
				}
				if got.ID != c.ID || !bytes.Equal(got.Data, c.Data) || !got.ExpiresAt.Equal(c.ExpiresAt) || got.FetchedAt.IsZero() {
					t.Fatalf("%s: got %+v, want %+v", c.Kind, got, c)
				}
			}
			v, err := s.TLSCache(ctx, "verdict", "example.test")
			if err != nil || string(v.Data) != string(cases[1].Data) {
				t.Fatalf("verdict replaced by an mta-sts put: %+v %v", v, err)
			}
			if err := s.PutTLSCache(ctx, TLSCacheEntry{Kind: "verdict"}); err == nil {
				t.Fatal("an entry without a domain was stored")
			}
		})
	}
}
