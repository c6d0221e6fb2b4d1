package starttls

import (
	"context"
	"net"
	"sync"
)

// Dialer opens the connections of one session setup (one, or two when an
// opportunistic STARTTLS failed and plain text follows) so that the end
// of ctx closes the one in use: a server that stalls in its greeting, EHLO
// or handshake cannot hold the setup past the caller's deadline, even
// though those steps run on the connection's own deadlines.
type Dialer struct {
	ctx  context.Context
	mu   sync.Mutex
	cur  net.Conn
	stop func() bool
}

// NewDialer watches ctx until Keep or Close is called.
func NewDialer(ctx context.Context) *Dialer {
	d := &Dialer{ctx: ctx}
	d.stop = context.AfterFunc(ctx, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.cur != nil {
			d.cur.Close()
		}
	})
	return d
}

// Dial connects to addr over TCP.
func (d *Dialer) Dial(addr string) (net.Conn, error) {
	var nd net.Dialer
	nc, err := nd.DialContext(d.ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.cur = nc
	d.mu.Unlock()
	return nc, nil
}

// Keep stops watching ctx and reports whether the connection is still
// open (false: ctx ended first and closed it; the caller discards it).
func (d *Dialer) Keep() bool { return d.stop() }

// Close stops watching ctx (deferred by the caller; after Keep it does
// nothing).
func (d *Dialer) Close() { d.stop() }
