package testpeer

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
)

// RecordingProxy forwards TCP connections to a backend and records what
// clients send: a test reads it to prove what crossed the wire in clear
// text (a bind password, a token) and counts connections to prove reuse.
// DropAll cuts every open connection, as a server restart or an idle
// timeout would.
type RecordingProxy struct {
	ln       net.Listener
	mu       sync.Mutex
	accepted int
	open     []net.Conn
	sent     bytes.Buffer
}

// StartRecordingProxy listens on a free loopback port until the test ends.
func StartRecordingProxy(t testing.TB, backend string) *RecordingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &RecordingProxy{ln: ln}
	t.Cleanup(func() { ln.Close(); p.DropAll() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", backend)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.accepted++
			p.open = append(p.open, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(io.MultiWriter(s, p), c); s.Close() }()
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
	return p
}

// Write records client bytes (the proxy is the tee's second writer).
func (p *RecordingProxy) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent.Write(b)
}

// Sent returns a copy of what clients sent so far.
func (p *RecordingProxy) Sent() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.sent.Bytes())
}

// URL is the proxy as an ldap:// URL.
func (p *RecordingProxy) URL() string { return "ldap://" + p.Addr() }

// Addr is the proxy's host:port.
func (p *RecordingProxy) Addr() string { return p.ln.Addr().String() }

// Accepted is the number of connections made so far.
func (p *RecordingProxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// DropAll closes every open connection.
func (p *RecordingProxy) DropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.open {
		c.Close()
	}
	p.open = nil
}
