package mxrelay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/pkg/delivery/smtppool"
	"github.com/sealgate/sealgate/pkg/delivery/starttls"
	"github.com/sealgate/sealgate/pkg/events"
)

// conn is one open connection to an MX host.
type conn struct {
	c    *smtp.Client
	raw  net.Conn
	key  poolKey
	used int
	hop  *events.TLS
}

// poolKey: connections are reused only for the same address, the same
// MX name (certificates were checked against it) and the same TLS demand.
type poolKey struct{ addr, host, pol string }

// endConn ends a pooled connection.
func endConn(c *conn) { smtppool.Quit(c.c) }

// get returns an idle connection for k that answers RSET, or a new one.
func (r *Relay) get(ctx context.Context, k poolKey, host string, pol hostTLS) (*conn, bool, error) {
	for {
		c, ok := r.pool.Take(k)
		if !ok {
			break
		}
		c.c.CommandTimeout = r.timeout()
		stop := context.AfterFunc(ctx, func() { c.raw.Close() })
		err := c.c.Reset()
		if !stop() && err == nil {
			err = ctx.Err()
		}
		if err != nil {
			c.c.Close()
			if ctx.Err() != nil {
				return nil, false, ctx.Err()
			}
			continue
		}
		return c, true, nil
	}
	c, err := r.dial(ctx, k, host, pol)
	return c, false, err
}

// dial connects to k.addr and says EHLO, with STARTTLS as pol demands.
// Only opportunistic TLS goes on in plain text after a failed STARTTLS
// (RFC 7435); every stricter mode fails the host, so a man in the middle
// who breaks the handshake gets nothing.
func (r *Relay) dial(ctx context.Context, k poolKey, host string, pol hostTLS) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout())
	defer cancel()
	helo := r.Hostname
	if helo == "" {
		helo = "localhost"
	}
	d := starttls.NewDialer(ctx)
	defer d.Close()
	open := func() (net.Conn, error) {
		nc, err := d.Dial(k.addr)
		if err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		return nc, nil
	}
	finish := func(c *smtp.Client, nc net.Conn, st tls.ConnectionState, ok bool) (*conn, error) {
		if !d.Keep() {
			c.Close()
			return nil, fmt.Errorf("connect: %w", ctx.Err())
		}
		c.CommandTimeout, c.SubmissionTimeout = r.timeout(), r.timeout()
		return &conn{c: c, raw: nc, key: k, hop: hop(host, st, ok, pol)}, nil
	}
	if pol.starttls {
		nc, err := open()
		if err != nil {
			return nil, err
		}
		c, st, err := starttls.Client(nc, helo, r.tlsConfig(host, pol), r.timeout())
		if err == nil {
			if err = c.Hello(helo); err == nil {
				return finish(c, nc, st, true)
			}
			c.Close()
			var se *smtp.SMTPError
			if errors.As(err, &se) {
				return nil, fmt.Errorf("EHLO after STARTTLS: %v", err)
			}
			if pol.required {
				return nil, fmt.Errorf("TLS handshake failed, not retried in plain text (tls = %s): %w", pol.mode, err)
			}
		} else {
			nc.Close()
			no := errors.Is(err, starttls.ErrNotOffered)
			var he starttls.HandshakeError
			switch {
			case errors.As(err, &he) && pol.required:
				return nil, fmt.Errorf("TLS handshake failed, not retried in plain text (tls = %s): %w", pol.mode, he.Err)
			case no && pol.required:
				return nil, fmt.Errorf("does not offer STARTTLS (tls = %s); nothing was sent", pol.mode)
			case !no && pol.required:
				return nil, fmt.Errorf("STARTTLS failed (tls = %s): %v", pol.mode, err)
			}
		}
		// Opportunistic: on in plain text, on a new connection (go-smtp
		// starts TLS only right after the greeting).
	}
	nc, err := open()
	if err != nil {
		return nil, err
	}
	c := smtp.NewClient(nc)
	if err := c.Hello(helo); err != nil {
		c.Close()
		return nil, fmt.Errorf("EHLO: %v", err)
	}
	return finish(c, nc, tls.ConnectionState{}, false)
}
