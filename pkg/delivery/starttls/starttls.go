// Package starttls opens an SMTP client session over STARTTLS with our own
// plain-text phase, for the relays that talk to other servers (the MX
// relay, the smart-host relay).
package starttls

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// ErrNotOffered: the server's EHLO answer does not offer STARTTLS.
var ErrNotOffered = errors.New("smtp: server doesn't support STARTTLS")

// Client speaks the plain-text part of the session itself: greeting,
// EHLO helo, STARTTLS, TLS handshake. go-smtp's NewClientStartTLS would
// send its first EHLO as "localhost" (its Hello must come before STARTTLS
// and cannot come again after), and an MX host on the internet sees that
// name. The go-smtp client then takes over the TLS connection; its EHLO
// (with helo, sent by the caller) is the one after STARTTLS that RFC 3207
// requires. A reply that is not the expected code is an *smtp.SMTPError.
func Client(nc net.Conn, helo string, conf *tls.Config, timeout time.Duration) (*smtp.Client, tls.ConnectionState, error) {
	nc.SetDeadline(time.Now().Add(timeout))
	defer nc.SetDeadline(time.Time{})
	tp := textproto.NewConn(nc)
	if _, _, err := readReply(tp, 220); err != nil {
		return nil, tls.ConnectionState{}, fmt.Errorf("greeting: %w", err)
	}
	if err := tp.PrintfLine("EHLO %s", helo); err != nil {
		return nil, tls.ConnectionState{}, err
	}
	_, ext, err := readReply(tp, 250)
	if err != nil {
		return nil, tls.ConnectionState{}, fmt.Errorf("EHLO: %w", err)
	}
	if !offersStartTLS(ext) {
		return nil, tls.ConnectionState{}, ErrNotOffered
	}
	if err := tp.PrintfLine("STARTTLS"); err != nil {
		return nil, tls.ConnectionState{}, err
	}
	if _, _, err := readReply(tp, 220); err != nil {
		return nil, tls.ConnectionState{}, fmt.Errorf("STARTTLS: %w", err)
	}
	// Bytes the server sent after its 220 (before our handshake) would be
	// plain text injected into the TLS session (CVE-2011-0411 in reverse):
	// refuse them.
	if tp.R.Buffered() > 0 {
		return nil, tls.ConnectionState{}, errors.New("STARTTLS: the server sent data before the TLS handshake")
	}
	tc := tls.Client(nc, conf)
	if err := tc.Handshake(); err != nil {
		return nil, tls.ConnectionState{}, HandshakeError{Err: err}
	}
	// go-smtp reads a greeting before its EHLO; after STARTTLS there is
	// none (RFC 3207 4.2), so the client is given one that never went over
	// the wire.
	c := smtp.NewClient(&greeted{Conn: tc, r: io.MultiReader(strings.NewReader("220 tls\r\n"), tc)})
	return c, tc.ConnectionState(), nil
}

// HandshakeError: STARTTLS was accepted and the TLS handshake (with the
// certificate check) failed.
type HandshakeError struct{ Err error }

func (e HandshakeError) Error() string { return e.Err.Error() }
func (e HandshakeError) Unwrap() error { return e.Err }

// greeted is a TLS connection whose reads start with a local greeting.
type greeted struct {
	net.Conn
	r io.Reader
}

func (g *greeted) Read(p []byte) (int, error) { return g.r.Read(p) }

// readReply reads one (multi-line) reply and wants code.
func readReply(tp *textproto.Conn, code int) (int, string, error) {
	got, msg, err := tp.ReadResponse(code)
	var te *textproto.Error
	if errors.As(err, &te) {
		return got, msg, &smtp.SMTPError{Code: te.Code, Message: te.Msg}
	}
	return got, msg, err
}

// offersStartTLS looks for the STARTTLS keyword among the EHLO reply's
// lines (the first line is the server's name, not a keyword).
func offersStartTLS(ext string) bool {
	lines := strings.Split(ext, "\n")
	for _, l := range lines[1:] {
		if kw, _, _ := strings.Cut(strings.TrimSpace(l), " "); strings.EqualFold(kw, "STARTTLS") {
			return true
		}
	}
	return false
}
