package mxrelay

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sealgate/sealgate/pkg/delivery/smtppool"
	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/policy"
)

// Relay delivers to the recipients' MX hosts. The zero value is not
// usable: Resolver is required.
type Relay struct {
	Resolver Resolver
	// DANE verifies TLSA records; nil: no DANE (tls = "dane" then fails,
	// tls = "verified" uses MTA-STS or PKIX).
	DANE DANE
	// STS hands out MTA-STS policies; nil: none are used.
	STS STSPolicies
	// RequireTLS (relay.tls = "required") raises every rule's mode to at
	// least required; a rule may ask for more.
	RequireTLS bool
	// Hostname is our EHLO name.
	Hostname string
	// Port is the MX hosts' SMTP port (default 25; relay.mx_port, tests).
	Port int
	// RootCAs verify certificates for PKIX and MTA-STS (nil: the system
	// roots; config adds relay.ca_files to them).
	RootCAs *x509.CertPool
	// Timeout bounds each connect and each SMTP command (default 60 s).
	Timeout time.Duration
	// MaxConns caps the connections carrying a transaction at once
	// (default 100); MaxConnsPerDomain caps them per recipient domain
	// (default 10), so one slow domain cannot take every connection.
	MaxConns, MaxConnsPerDomain int
	// MaxIdle, IdleTimeout and MaxMessagesPerConn shape the pool of open
	// connections (defaults 32, 5 s, 100; MaxIdle < 0: no reuse).
	MaxIdle            int
	IdleTimeout        time.Duration
	MaxMessagesPerConn int
	Log                *slog.Logger
	// Now is the clock for certificate checks (nil: time.Now).
	Now func() time.Time

	once    sync.Once
	global  chan struct{}
	mu      sync.Mutex
	domains map[string]*domainSlots
	pool    smtppool.Idle[poolKey, *conn]
}

// domainSlots is a per-domain semaphore with a count of its users, so an
// unused one can be forgotten.
type domainSlots struct {
	ch    chan struct{}
	users int
}

func (r *Relay) init() {
	r.once.Do(func() {
		r.global = make(chan struct{}, cmp.Or(r.MaxConns, 100))
		r.domains = map[string]*domainSlots{}
		r.pool.Max, r.pool.For, r.pool.PerConn, r.pool.End = cmp.Or(r.MaxIdle, 32), cmp.Or(r.IdleTimeout, 5*time.Second), cmp.Or(r.MaxMessagesPerConn, 100), endConn
	})
}

func (r *Relay) port() int { return cmp.Or(r.Port, 25) }

func (r *Relay) timeout() time.Duration { return cmp.Or(r.Timeout, 60*time.Second) }

func (r *Relay) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Relay) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Deliver implements gateway.Relay.
func (r *Relay) Deliver(ctx context.Context, d gateway.Delivery) []error {
	errs, _ := r.DeliverEach(ctx, d)
	return errs
}

// DeliverHop implements gateway.HopRelay; the TLS reported is that of the
// first recipient delivered (DeliverEach says it per recipient).
func (r *Relay) DeliverHop(ctx context.Context, d gateway.Delivery) ([]error, *events.TLS) {
	errs, hops := r.DeliverEach(ctx, d)
	for i, h := range hops {
		if errs[i] == nil && h != nil {
			return errs, h
		}
	}
	return errs, nil
}

// DeliverEach implements gateway.RcptHopRelay: one error and one TLS hop
// per recipient, since a parcel's recipients may live in several domains
// served by different hosts.
func (r *Relay) DeliverEach(ctx context.Context, d gateway.Delivery) ([]error, []*events.TLS) {
	r.init()
	errs := make([]error, len(d.Rcpts))
	hops := make([]*events.TLS, len(d.Rcpts))
	byDomain := map[string][]int{}
	var order []string
	for i, rc := range d.Rcpts {
		at := strings.LastIndexByte(rc, '@')
		if at < 0 || at == len(rc)-1 {
			errs[i] = &gateway.PermanentError{Err: fmt.Errorf("recipient %q has no domain", rc)}
			continue
		}
		dom := strings.ToLower(strings.TrimSuffix(rc[at+1:], "."))
		if _, ok := byDomain[dom]; !ok {
			order = append(order, dom)
		}
		byDomain[dom] = append(byDomain[dom], i)
	}
	for _, dom := range order {
		idx := byDomain[dom]
		rcpts := make([]string, len(idx))
		for j, i := range idx {
			rcpts[j] = d.Rcpts[i]
		}
		derrs, hop := r.deliverDomain(ctx, d, dom, rcpts)
		for j, i := range idx {
			errs[i] = derrs[j]
			if derrs[j] == nil {
				hops[i] = hop
			}
		}
	}
	return errs, hops
}

// deliverDomain delivers d to rcpts, all in domain dom.
func (r *Relay) deliverDomain(ctx context.Context, d gateway.Delivery, dom string, rcpts []string) ([]error, *events.TLS) {
	all := func(err error) []error { return fill(len(rcpts), err) }
	mode := d.TLS
	if d.RequireTLS && !mode.AtLeast(policy.TLSRequired) {
		mode = policy.TLSRequired
	}
	if r.RequireTLS && !mode.AtLeast(policy.TLSRequired) {
		mode = policy.TLSRequired
	}
	lctx, cancel := context.WithTimeout(ctx, r.timeout())
	mx, err := r.Resolver.LookupMX(lctx, dom)
	cancel()
	switch {
	case errors.Is(err, ErrNotFound):
		return all(&gateway.PermanentError{Err: fmt.Errorf("%s: no such domain (no MX and no address records)", dom)}), nil
	case err != nil:
		return all(fmt.Errorf("%s: MX lookup failed, will retry: %w", dom, err)), nil
	case mx.Null:
		return all(&gateway.PermanentError{Err: fmt.Errorf("%s publishes a null MX (RFC 7505): the domain accepts no mail", dom)}), nil
	case len(mx.Hosts) == 0:
		return all(&gateway.PermanentError{Err: fmt.Errorf("%s: no MX hosts", dom)}), nil
	}
	hosts := slices.Clone(mx.Hosts)
	slices.SortStableFunc(hosts, func(a, b *net.MX) int { return cmp.Compare(a.Pref, b.Pref) })

	var sts stsPolicy
	if mode == policy.TLSVerified && r.STS != nil {
		sctx, cancel := context.WithTimeout(ctx, r.timeout())
		m, pats, err := r.STS.Policy(sctx, dom)
		cancel()
		if err != nil {
			// Fail closed: a policy we could not read may be one that
			// restricts the hosts.
			return all(fmt.Errorf("%s: MTA-STS policy unavailable, will retry: %w", dom, err)), nil
		}
		sts = stsPolicy{enforce: m == "enforce", mx: pats}
	}

	release, err := r.acquire(ctx, dom)
	if err != nil {
		return all(fmt.Errorf("%s: waiting for a connection slot: %w", dom, err)), nil
	}
	defer release()

	var reasons []string
	for _, h := range hosts {
		host := strings.ToLower(strings.TrimSuffix(h.Host, "."))
		if host == "" {
			continue
		}
		if sts.enforce && !sts.matches(host) {
			reasons = append(reasons, host+": not listed in the domain's MTA-STS policy (mode enforce)")
			continue
		}
		errs, hop, done, why := r.tryHost(ctx, d, dom, host, mx.Authentic, mode, sts, rcpts)
		if done {
			return errs, hop
		}
		reasons = append(reasons, why...)
	}
	return all(fmt.Errorf("%s: no MX host took the message (tls = %s), will retry: %s", dom, mode, strings.Join(reasons, "; "))), nil
}

// tryHost tries every address of host. done says the transaction ran
// (errs then holds the host's answers); otherwise why says why each
// address failed, and the next host is tried.
func (r *Relay) tryHost(ctx context.Context, d gateway.Delivery, dom, host string, mxAuthentic bool, mode policy.TLSMode, sts stsPolicy, rcpts []string) (errs []error, hop *events.TLS, done bool, why []string) {
	lctx, cancel := context.WithTimeout(ctx, r.timeout())
	defer cancel()
	h, err := r.Resolver.LookupHost(lctx, host)
	if err != nil {
		return nil, nil, false, []string{fmt.Sprintf("%s: address lookup: %v", host, err)}
	}
	ips := h.IPs
	if len(ips) == 0 {
		return nil, nil, false, []string{host + ": no addresses"}
	}
	pol, err := r.hostPolicy(lctx, host, h.Canonical, mxAuthentic && h.Authentic, mode, sts)
	if err != nil {
		return nil, nil, false, []string{fmt.Sprintf("%s: %v", host, err)}
	}
	for _, ip := range ips {
		addr := net.JoinHostPort(ip.String(), strconv.Itoa(r.port()))
		errs, hop, done, err := r.deliverTo(ctx, d, host, addr, pol, rcpts)
		if done {
			return errs, hop, true, nil
		}
		why = append(why, fmt.Sprintf("%s [%s]: %v", host, ip, err))
		r.log().Info("mx host failed, trying the next", "domain", dom, "host", host, "addr", addr, "err", err)
	}
	return nil, nil, false, why
}

// acquire takes a global and a per-domain connection slot.
func (r *Relay) acquire(ctx context.Context, dom string) (func(), error) {
	r.mu.Lock()
	ds := r.domains[dom]
	if ds == nil {
		ds = &domainSlots{ch: make(chan struct{}, cmp.Or(r.MaxConnsPerDomain, 10))}
		r.domains[dom] = ds
	}
	ds.users++
	r.mu.Unlock()
	forget := func() {
		r.mu.Lock()
		ds.users--
		if ds.users == 0 {
			delete(r.domains, dom)
		}
		r.mu.Unlock()
	}
	select {
	case ds.ch <- struct{}{}:
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	}
	select {
	case r.global <- struct{}{}:
	case <-ctx.Done():
		<-ds.ch
		forget()
		return nil, ctx.Err()
	}
	return func() {
		<-r.global
		<-ds.ch
		forget()
	}, nil
}

// Close says QUIT on the idle connections.
func (r *Relay) Close() error {
	r.init()
	r.pool.Close()
	return nil
}

func fill(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// deliverTo runs one transaction with the host at addr under pol, on a
// pooled connection when one is idle. done says the host answered the
// transaction (errs are its answers per recipient); otherwise err says why
// nothing was delivered, and the caller may try another address.
func (r *Relay) deliverTo(ctx context.Context, d gateway.Delivery, host, addr string, pol hostTLS, rcpts []string) (errs []error, hop *events.TLS, done bool, err error) {
	key := poolKey{addr: addr, host: host, pol: pol.key()}
	if pol.by == "" {
		// Nothing names the host in an unverified connection: it serves
		// every domain whose MX is at this address (as Postfix reuses
		// connections by IP), e.g. a hoster's MX shared by many domains.
		key.host = ""
	}
	for range 2 {
		c, reused, err := r.get(ctx, key, host, pol)
		if err != nil {
			return nil, nil, false, err
		}
		errs, broken, retry := r.transact(ctx, c, d, host, rcpts)
		if broken {
			c.c.Close()
		} else {
			r.pool.Put(c.key, c, c.used)
		}
		if retry && reused {
			continue // a pooled connection the host closed meanwhile
		}
		if retry {
			return nil, nil, false, errs[0]
		}
		h := *c.hop
		h.Host = host // the connection may have been opened for another MX name at this address
		return errs, &h, true, nil
	}
	return nil, nil, false, errors.New("connection lost twice before the message was sent")
}

// transact runs MAIL, RCPT, DATA. broken: the connection must go; retry:
// it failed before the final dot, so nothing was delivered.
func (r *Relay) transact(ctx context.Context, c *conn, d gateway.Delivery, host string, rcpts []string) (errs []error, broken, retry bool) {
	c.used++
	c.c.CommandTimeout, c.c.SubmissionTimeout = r.timeout(), r.timeout()
	return smtppool.Transact(ctx, c.c, c.raw, host, d.From, rcpts, d.Data, d.UTF8)
}
