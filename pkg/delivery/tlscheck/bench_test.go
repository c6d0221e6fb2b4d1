package tlscheck

import (
	"context"
	"testing"
)

type fixedChecker struct{ n int }

func (f *fixedChecker) Check(_ context.Context, domain string) (Report, error) {
	f.n++
	return Report{Domain: domain, Verdict: Verified, MX: []Host{{Host: "mx." + domain, Verdict: Verified}}}, nil
}

// BenchmarkCacheHit: what the pipeline pays per recipient once a domain's
// verdict is cached (memory copy, no store round trip).
func BenchmarkCacheHit(b *testing.B) {
	fc := &fixedChecker{}
	c := &Cache{Checker: fc}
	ctx := context.Background()
	if _, err := c.Report(ctx, "example.test"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.Report(ctx, "Example.TEST"); err != nil {
			b.Fatal(err)
		}
	}
	if fc.n != 1 {
		b.Fatalf("%d probes, want 1", fc.n)
	}
}
