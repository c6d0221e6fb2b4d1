package e2e

import (
	"testing"
	"time"
)

// waitUntil polls cond until it holds and fails the test with failure()
// once timeout has passed. The gateway runs in another process, so these
// tests synchronise on state they can observe (files, log lines, queue
// rows), never on a fixed sleep that is too short on a slow machine.
func waitUntil(t *testing.T, timeout time.Duration, cond func() bool, failure func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, failure())
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not synchronisation
	}
}
