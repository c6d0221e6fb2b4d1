// Package smtppool keeps open SMTP client connections between
// transactions, so the next message to the same place skips the connect,
// greeting, EHLO and TLS handshake. The smart-host relay (pkg/gateway) and
// the MX relay (pkg/delivery/mxrelay) share it.
package smtppool

import (
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Idle holds idle connections of type C, each under the key it may be
// reused for (an address, a host name checked against the certificate, a
// TLS demand). The zero value keeps nothing; set the limits before use.
type Idle[K comparable, C any] struct {
	Max     int           // idle connections kept at most (<= 0: none)
	For     time.Duration // an idle connection is ended after this long
	PerConn int           // transactions on one connection before it is ended (<= 0: no limit)
	End     func(C)       // ends a connection (see Quit)

	mu     sync.Mutex
	items  []*item[K, C] // most recently used last
	closed bool
}

type item[K comparable, C any] struct {
	key   K
	c     C
	timer *time.Timer
}

// Take returns the most recently used idle connection for k, if any. The
// caller checks that it still answers (RSET) before it uses it.
func (p *Idle[K, C]) Take(k K) (C, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.items) - 1; i >= 0; i-- {
		it := p.items[i]
		if it.key == k {
			p.items = slices.Delete(p.items, i, i+1)
			it.timer.Stop() // under mu: its func then finds it gone
			return it.c, true
		}
	}
	var zero C
	return zero, false
}

// Put keeps c, on which used transactions were begun, for k; or ends it
// when it is used up or the pool is full or closed.
func (p *Idle[K, C]) Put(k K, c C, used int) {
	p.mu.Lock()
	if p.closed || len(p.items) >= p.Max || p.PerConn > 0 && used >= p.PerConn {
		p.mu.Unlock()
		p.End(c)
		return
	}
	it := &item[K, C]{key: k, c: c}
	it.timer = time.AfterFunc(p.For, func() { p.expire(it) })
	p.items = append(p.items, it)
	p.mu.Unlock()
}

// expire ends it if it is still idle.
func (p *Idle[K, C]) expire(it *item[K, C]) {
	p.mu.Lock()
	i := slices.Index(p.items, it)
	if i >= 0 {
		p.items = slices.Delete(p.items, i, i+1)
	}
	p.mu.Unlock()
	if i >= 0 {
		p.End(it.c)
	}
}

// Conns returns the idle connections, least recently used first.
func (p *Idle[K, C]) Conns() []C {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]C, len(p.items))
	for i, it := range p.items {
		out[i] = it.c
	}
	return out
}

// Close ends the idle connections; later Puts end theirs at once.
func (p *Idle[K, C]) Close() {
	p.mu.Lock()
	p.closed = true
	items := p.items
	p.items = nil
	for _, it := range items {
		it.timer.Stop()
	}
	p.mu.Unlock()
	for _, it := range items {
		p.End(it.c)
	}
}

// Quit ends a connection politely, waiting a few seconds at most, and
// closes it when the server does not answer.
func Quit(c *smtp.Client) {
	c.CommandTimeout = 5 * time.Second
	if err := c.Quit(); err != nil {
		c.Close()
	}
}
