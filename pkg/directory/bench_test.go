package directory

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// BenchmarkLookupCached: answers from the cache; reports the p99 latency
// of single lookups (goal < 1 ms).
func BenchmarkLookupCached(b *testing.B) {
	f := newKeyserverFixture(b)
	d, _ := f.directory(b, RevocationHardFail)
	ctx := context.Background()
	if r, err := d.Lookup(ctx, "good@example.test"); err != nil || !r.Found {
		b.Fatalf("warm-up: %+v %v", r, err)
	}
	lat := make([]time.Duration, 0, 1<<16)
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		r, _ := d.Lookup(ctx, "good@example.test")
		lat = append(lat, time.Since(t0))
		if !r.Cached {
			b.Fatal("not cached")
		}
	}
	reportPercentiles(b, lat)
}

// BenchmarkLookupColdSlapd: every lookup misses the cache and asks the
// local slapd (search, certificate parse, full validation; the CRL is
// cached after the first fetch, as in production).
func BenchmarkLookupColdSlapd(b *testing.B) {
	f := newKeyserverFixture(b)
	d, _ := f.directory(b, RevocationHardFail)
	ctx := context.Background()
	lat := make([]time.Duration, 0, 1024)
	for b.Loop() {
		d.Forget("good@example.test")
		t0 := time.Now()
		r, _ := d.Lookup(ctx, "good@example.test")
		lat = append(lat, time.Since(t0))
		if !r.Found || r.Cached {
			b.Fatalf("cold lookup: %+v", r)
		}
	}
	reportPercentiles(b, lat)
}

// BenchmarkLookup1000Addresses50Callers: 1,000 distinct addresses held by
// slapd, looked up cold by 50 concurrent callers; reports lookups/s.
func BenchmarkLookup1000Addresses50Callers(b *testing.B) {
	testpeer.Require(b, "slapd")
	ca := newTestCA(b, "Bench Root", true)
	const n = 1000
	entries := make([]ldapEntry, n)
	for i := range entries {
		mail := fmt.Sprintf("user%04d@example.test", i)
		entries[i] = ldapEntry{uid: fmt.Sprintf("user%04d", i), mail: mail, certs: []*x509.Certificate{ca.issue(b, leafSpec{emails: []string{mail}})}}
	}
	slapd := testpeer.StartSlapd(b, testpeer.SlapdOptions{LDIF: entriesLDIF(entries)})
	f := &keyserverFixture{slapd: slapd, ca: ca}
	ctx := context.Background()
	var total time.Duration
	lookups := 0
	for b.Loop() {
		d, _ := f.directory(b, RevocationHardFail) // cold cache each round
		var next atomic.Int64
		var failed atomic.Int64
		var wg sync.WaitGroup
		t0 := time.Now()
		for w := 0; w < 50; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= n {
						return
					}
					if r, err := d.Lookup(ctx, entries[i].mail); err != nil || !r.Found {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		total += time.Since(t0)
		lookups += n
		if failed.Load() > 0 {
			b.Fatalf("%d of %d lookups failed", failed.Load(), n)
		}
	}
	b.ReportMetric(float64(lookups)/total.Seconds(), "lookups/s")
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Nanoseconds()) }
	b.ReportMetric(p(0.50), "p50-ns")
	b.ReportMetric(p(0.99), "p99-ns")
}
