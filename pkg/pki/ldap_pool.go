package pki

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Connection reuse. A rollout publishes from several workers at once; a
// new connection per user meant a TCP (and TLS) handshake and a bind per
// user: 3,000 binds for 3,000 users, each one logged by the DC.
const (
	// ldapMaxIdle bounds the bound connections kept between operations
	// (the rollout's default parallelism is 4; the benchmark uses more).
	// It does not bound how many are open at once: workers never wait
	// for a connection.
	ldapMaxIdle = 16
	// ldapIdleTimeout closes connections unused for this long, well
	// before AD's default MaxConnIdleTime (15 min) and before a firewall
	// forgets the flow silently, which would turn the next request into
	// a full timeout instead of a quick reconnect.
	ldapIdleTimeout = time.Minute
)

// connPool keeps bound connections for reuse. Connections that failed
// at the network level, timed out or were cut by the context are closed,
// never returned.
type connPool struct {
	dial func() (*ldap.Conn, error)
	now  func() time.Time // time.Now; tests move it

	mu     sync.Mutex
	idle   []idleConn // most recently used last
	reaper *time.Timer
	closed bool
}

type idleConn struct {
	conn  *ldap.Conn
	since time.Time
}

// get returns an idle connection the server has not closed, or a new one
// (reused says which).
func (p *connPool) get() (conn *ldap.Conn, reused bool, err error) {
	p.mu.Lock()
	for len(p.idle) > 0 {
		ic := p.idle[len(p.idle)-1]
		p.idle[len(p.idle)-1] = idleConn{}
		p.idle = p.idle[:len(p.idle)-1]
		if ic.conn.IsClosing() || p.clock().Sub(ic.since) >= ldapIdleTimeout {
			go ic.conn.Close()
			continue
		}
		p.mu.Unlock()
		return ic.conn, true, nil
	}
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil, false, errors.New("LDAP directory closed")
	}
	conn, err = p.dial()
	return conn, false, err
}

func (p *connPool) clock() time.Time {
	if p.now != nil {
		return p.now()
	}
	return time.Now()
}

// put keeps a healthy connection for the next operation.
func (p *connPool) put(conn *ldap.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || conn.IsClosing() || len(p.idle) >= ldapMaxIdle {
		go conn.Close()
		return
	}
	p.idle = append(p.idle, idleConn{conn: conn, since: p.clock()})
	if p.reaper == nil {
		p.reaper = time.AfterFunc(ldapIdleTimeout, p.reap)
	}
}

// reap closes connections idle for longer than ldapIdleTimeout, so a
// long-running serve does not hold connections between syncs.
func (p *connPool) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reaper = nil
	keep := p.idle[:0]
	for _, ic := range p.idle {
		if p.clock().Sub(ic.since) >= ldapIdleTimeout {
			go ic.conn.Close()
		} else {
			keep = append(keep, ic)
		}
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	if len(p.idle) > 0 && !p.closed {
		p.reaper = time.AfterFunc(ldapIdleTimeout, p.reap)
	}
}

// close closes the idle connections; connections in use are closed when
// they come back.
func (p *connPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.reaper != nil {
		p.reaper.Stop()
		p.reaper = nil
	}
	for _, ic := range p.idle {
		ic.conn.Close()
	}
	p.idle = nil
}

// dial connects and binds, with the configured timeout on the dial and on
// every request.
func (d *LDAPDirectory) dial() (*ldap.Conn, error) {
	opts := []ldap.DialOpt{ldap.DialWithDialer(&net.Dialer{Timeout: d.cfg.Timeout})}
	if d.cfg.TLS != nil {
		opts = append(opts, ldap.DialWithTLSConfig(d.cfg.TLS))
	}
	conn, err := ldap.DialURL(d.cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", d.cfg.URL, err)
	}
	conn.SetTimeout(d.cfg.Timeout)
	if d.cfg.StartTLS {
		if err := conn.StartTLS(d.startTLSConfig()); err != nil {
			conn.Close()
			return nil, fmt.Errorf("StartTLS with %s (users.ldap.starttls): check that the server offers StartTLS "+
				"and that users.ldap.ca_file holds the CA of its certificate: %w", d.cfg.URL, err)
		}
	}
	if d.cfg.BindDN != "" {
		if err := conn.Bind(d.cfg.BindDN, d.cfg.BindPassword); err != nil {
			conn.Close()
			if ldap.IsErrorAnyOf(err, ldap.LDAPResultStrongAuthRequired, ldap.LDAPResultConfidentialityRequired) {
				// What AD answers a simple bind without TLS.
				return nil, fmt.Errorf("binding to %s as %s: the server requires an encrypted connection: "+
					"use ldaps://HOST:636 in users.ldap.url (or starttls = true) and its CA in users.ldap.ca_file: %w", d.cfg.URL, d.cfg.BindDN, err)
			}
			return nil, fmt.Errorf("binding to %s as %s: %w", d.cfg.URL, d.cfg.BindDN, err)
		}
	}
	return conn, nil
}

// startTLSConfig is the configured TLS settings with the URL's host as
// the name the certificate must carry: unlike an ldaps:// dial, StartTLS
// takes no server name from the address (go-ldap hands the config to
// tls.Client as it is).
func (d *LDAPDirectory) startTLSConfig() *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if d.cfg.TLS != nil {
		c = d.cfg.TLS.Clone()
	}
	if c.ServerName == "" {
		if u, err := url.Parse(d.cfg.URL); err == nil {
			c.ServerName = u.Hostname()
		}
	}
	return c
}

// withConn runs op on a pooled connection, closed if ctx ends meanwhile.
// When a reused connection turns out to have been closed by the server
// (idle timeout, DC restart), op runs once more on a new connection: every
// op here is a search or a replace, safe to repeat. A timeout is not
// retried: the server hangs, and a second wait would only double it.
func (d *LDAPDirectory) withConn(ctx context.Context, op func(*ldap.Conn) error) error {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("LDAP %s: %w", d.cfg.URL, err)
		}
		conn, reused, err := d.pool.get()
		if err != nil {
			return err
		}
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		err = op(conn)
		cut := !stop() // ctx ended and closed the connection
		dropped := !cut && conn.IsClosing()
		if cut || dropped || ldap.IsErrorWithCode(err, ldap.ErrorNetwork) {
			conn.Close() // state unknown after a network error or timeout
		} else {
			d.pool.put(conn) // success or an LDAP result (no such object, ...): the connection is fine
		}
		switch {
		case err == nil:
			return nil
		case cut:
			return fmt.Errorf("%w: %w", ctx.Err(), err)
		case reused && dropped && attempt == 0:
			continue
		}
		return err
	}
}

// Close closes the connections kept for reuse; later operations fail.
func (d *LDAPDirectory) Close() error {
	d.pool.close()
	if d.forest != nil {
		d.forest.gc.pool.close()
		for _, dom := range d.forest.domains {
			dom.dir.pool.close()
		}
	}
	return nil
}
