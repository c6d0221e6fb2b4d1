package mxrelay

import (
	"context"
	"testing"
)

// The per-domain and global connection limits: a domain at its limit
// waits (here: gives up with its cancelled context) while another domain
// still gets a slot, until the global limit is reached; released slots
// leave no per-domain state behind.
func TestConnectionLimits(t *testing.T) {
	r := &Relay{MaxConns: 2, MaxConnsPerDomain: 1}
	r.init()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	steps := []struct {
		domain string
		ctx    context.Context
		ok     bool
	}{
		{"a.test", context.Background(), true},
		{"a.test", done, false}, // a.test is at its limit
		{"b.test", context.Background(), true},
		{"c.test", done, false}, // the global limit
	}
	var releases []func()
	for i, s := range steps {
		rel, err := r.acquire(s.ctx, s.domain)
		if (err == nil) != s.ok {
			t.Fatalf("step %d (%s): err %v, want ok=%v", i, s.domain, err, s.ok)
		}
		if rel != nil {
			releases = append(releases, rel)
		}
	}
	for _, rel := range releases {
		rel()
	}
	if len(r.domains) != 0 || len(r.global) != 0 {
		t.Fatalf("left behind: %d domains, %d global slots", len(r.domains), len(r.global))
	}
	if rel, err := r.acquire(context.Background(), "a.test"); err != nil {
		t.Fatalf("after release: %v", err)
	} else {
		rel()
	}
}
