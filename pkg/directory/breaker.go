package directory

import (
	"sync"
	"time"
)

// breaker keeps a dead key server from costing a timeout per message:
// after a failure it is open (callers skip the server at once) until the
// retry time; then one caller may try (half-open) while the others still
// skip; success closes it, another failure doubles the wait up to max.
type breaker struct {
	mu        sync.Mutex
	base, max time.Duration
	wait      time.Duration
	openUntil time.Time
	trying    bool
	lastErr   error
	now       func() time.Time
}

func newBreaker(base, max time.Duration, now func() time.Time) *breaker {
	if now == nil {
		now = time.Now
	}
	return &breaker{base: base, max: max, now: now}
}

// allow reports whether a call may go ahead; when not, it returns the
// retry time and the error that opened the breaker.
func (b *breaker) allow() (ok bool, retry time.Time, last error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.openUntil.IsZero() {
		return true, time.Time{}, nil
	}
	if b.now().Before(b.openUntil) || b.trying {
		return false, b.openUntil, b.lastErr
	}
	b.trying = true
	return true, time.Time{}, nil
}

// done records the outcome of an allowed call.
func (b *breaker) done(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.trying = false
	if err == nil {
		b.openUntil, b.wait, b.lastErr = time.Time{}, 0, nil
		return
	}
	if b.wait == 0 {
		b.wait = b.base
	} else if b.wait *= 2; b.wait > b.max {
		b.wait = b.max
	}
	b.openUntil = b.now().Add(b.wait)
	b.lastErr = err
}
