package directory

import (
	"context"
	"crypto/x509"
	"testing"
	"time"
)

// TestChainCacheJudgesIssuersAtEachUse: a chain remembered from an
// earlier verification is not trusted blindly: once its intermediate has
// expired (the clock moved past it), the cached chain is refused exactly
// as a fresh verification would refuse it; and an untrusted leaf is never
// cached into trust.
func TestChainCacheJudgesIssuersAtEachUse(t *testing.T) {
	root := newTestCA(t, "Cache Root", false)
	sub := root.subCA(t, "Cache Sub")
	leaf := sub.issue(t, leafSpec{emails: []string{"p@partner.test"}, notAfter: time.Now().Add(10 * 365 * 24 * time.Hour)})
	clock := time.Now()
	v, err := NewValidator(ValidatorOptions{Roots: poolOf(root.cert), Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cand := Candidate{Certificate: leaf, Intermediates: []*x509.Certificate{sub.cert}}
	if ev := v.Evaluate(ctx, cand, "p@partner.test"); !ev.Valid {
		t.Fatalf("fresh: %+v", failedChecks(ev))
	}
	// Past the intermediate's notAfter, with the chain still cached.
	clock = sub.cert.NotAfter.Add(time.Minute)
	v.chainsMu.Lock()
	if len(v.chains) != 1 {
		t.Fatalf("%d cached chains, want 1", len(v.chains))
	}
	for k, e := range v.chains {
		e.until = clock.Add(time.Hour)
		v.chains[k] = e
	}
	v.chainsMu.Unlock()
	if _, err := v.chain(ctx, leaf, []*x509.Certificate{sub.cert}, clock); err == nil {
		t.Fatal("a cached chain with an expired intermediate was accepted")
	}

	rogue := newTestCA(t, "Rogue Root", false)
	bad := rogue.issue(t, leafSpec{emails: []string{"p@partner.test"}})
	clock = time.Now()
	for range 2 {
		if ev := v.Evaluate(ctx, Candidate{Certificate: bad}, "p@partner.test"); ev.Valid {
			t.Fatal("an untrusted leaf was accepted")
		}
	}
}
