package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/pkg/delivery/smtppool"
	"github.com/sealgate/sealgate/pkg/delivery/starttls"
	"github.com/sealgate/sealgate/pkg/events"
)

// DirRelay writes each parcel as one .eml file into Dir (the quick start
// and tests): written to a temp name, fsynced, renamed, so readers never
// see half a message. Return-Path and X-Sealgate-Rcpt-To carry the envelope.
type DirRelay struct{ Dir string }

// Deliver implements Relay.
func (d DirRelay) Deliver(_ context.Context, p Delivery) []error {
	return allFailed(len(p.Rcpts), d.write(p))
}

func (d DirRelay) write(p Delivery) error {
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	name := filepath.Join(d.Dir, fmt.Sprintf("%s-%d.eml", p.QueueID, p.Index))
	f, err := os.CreateTemp(d.Dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = fmt.Fprintf(f, "Return-Path: <%s>\r\nX-Sealgate-Rcpt-To: %s\r\n", p.From, strings.Join(p.Rcpts, ", "))
	if err == nil {
		_, err = f.Write(p.Data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err == nil {
		err = syncDir(d.Dir)
	}
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

// SMTPRelay delivers to a smart host. Connections are kept open between
// deliveries (a small pool, like Postfix's connection cache): under load a
// new connection per message (connect, EHLO, STARTTLS, AUTH, QUIT) costs
// more than the transaction itself. A pooled connection is checked with
// RSET before it carries the next message; one that fails before the
// message's final dot was sent is discarded and the delivery is retried
// once on a fresh connection. Nothing is retried after the final dot (the
// next hop may have taken the message), so pooling neither loses nor
// doubles a message.
type SMTPRelay struct {
	Addr     string
	Hostname string // our EHLO name
	TLS      string // none | opportunistic | required
	// TLSConf is the base for STARTTLS: RootCAs (nil: the system roots)
	// and ServerName (empty: the host of Addr) are what a verified
	// connection checks (see policyFor); its InsecureSkipVerify is ignored.
	TLSConf  *tls.Config
	User     string
	Password string
	// Timeout bounds the connect and each SMTP command (for the message
	// data: sending it and the reply to its final dot).
	Timeout time.Duration
	// MaxIdle is how many idle connections are kept (default 16, about
	// one per queue worker); negative: a new connection per delivery.
	MaxIdle int
	// IdleTimeout closes a connection idle this long (default 5 s).
	IdleTimeout time.Duration
	// MaxMessagesPerConn caps the messages one connection carries before
	// it is closed (default 100), so a smart host that is replaced or
	// reconfigured is seen again soon.
	MaxMessagesPerConn int

	poolOnce sync.Once
	pool     smtppool.Idle[string, *relayConn] // keyed by TLS mode
}

// relayConn is one connection to the smart host.
type relayConn struct {
	c    *smtp.Client
	raw  net.Conn // for Close when the context ends
	mode string   // the TLS mode it was opened with (the pool key)
	used int      // transactions begun on it
	// reused: it carried a message before; a failure before the final dot
	// may then be a connection the smart host closed meanwhile.
	reused bool
	// hop is the connection's TLS as the events report it (nil: plain
	// text), read once after the handshake.
	hop *events.TLS
}

// Deliver implements Relay: one SMTP transaction per parcel, on a pooled
// connection when one is idle.
func (s *SMTPRelay) Deliver(ctx context.Context, p Delivery) []error {
	errs, _ := s.DeliverHop(ctx, p)
	return errs
}

// DeliverHop implements HopRelay: Deliver, and the TLS of the connection
// that carried the transaction (TLS{} without Version for plain text; nil
// when no connection got as far as the transaction).
func (s *SMTPRelay) DeliverHop(ctx context.Context, p Delivery) ([]error, *events.TLS) {
	mode := s.TLS
	if p.RequireTLS {
		// Policy demands TLS for this copy, whatever relay.tls says.
		mode = "required"
	}
	rc, err := s.get(ctx, mode)
	if err != nil {
		return allFailed(len(p.Rcpts), err), nil
	}
	errs, broken, retry := s.transact(ctx, rc, p)
	s.release(rc, broken)
	if retry && rc.reused {
		// The pooled connection broke before the message was complete,
		// so nothing was delivered: once more on a fresh connection,
		// whose own failure stands (the queue retries later).
		if rc, err = s.dial(ctx, mode); err != nil {
			return allFailed(len(p.Rcpts), err), nil
		}
		errs, broken, _ = s.transact(ctx, rc, p)
		s.release(rc, broken)
	}
	return errs, rc.hop
}

// hopTLS describes c's TLS for the events: the version and cipher, and
// whether the server's certificate was verified (a chain to the roots and
// the smart host's name) during the handshake. Opportunistic TLS does not
// verify, so it reports false even for a certificate that would verify.
func hopTLS(st *tls.ConnectionState) *events.TLS {
	if st == nil {
		return &events.TLS{}
	}
	return &events.TLS{Version: tls.VersionName(st.Version), Cipher: tls.CipherSuiteName(st.CipherSuite),
		Verified: len(st.VerifiedChains) > 0}
}

// release pools rc, or closes it when broken.
func (s *SMTPRelay) release(rc *relayConn, broken bool) {
	if broken {
		rc.c.Close()
		return
	}
	s.idle().Put(rc.mode, rc, rc.used)
}

// allFailed is the per-recipient answer of a delivery that succeeded or
// failed as a whole (err nil: all accepted).
func allFailed(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// transact runs MAIL, RCPT, DATA on rc. broken says rc must not be used
// again; retry says the failure happened before the message's final dot
// on a connection that failed (not by an answer of the smart host), so
// the message can be sent again on another connection without a
// duplicate.
func (s *SMTPRelay) transact(ctx context.Context, rc *relayConn, p Delivery) (errs []error, broken, retry bool) {
	rc.used++
	// A cancelled delivery (shutdown, the worker's limit) closes the
	// connection, which ends any command waiting on it.
	return smtppool.Transact(ctx, rc.c, rc.raw, "smarthost "+s.Addr, p.From, p.Rcpts, p.Data, p.UTF8)
}

// get returns an idle connection for mode that answers RSET, or a new one.
func (s *SMTPRelay) get(ctx context.Context, mode string) (*relayConn, error) {
	for {
		rc, ok := s.idle().Take(mode)
		if !ok {
			break
		}
		s.setTimeouts(rc.c)
		stop := context.AfterFunc(ctx, func() { rc.raw.Close() })
		err := rc.c.Reset()
		if !stop() && err == nil {
			err = ctx.Err() // closed under it
		}
		if err != nil {
			rc.c.Close() // closed by the smart host, or it refuses more
			if ctx.Err() != nil {
				return nil, fmt.Errorf("smarthost %s: %w", s.Addr, ctx.Err())
			}
			continue
		}
		rc.reused = true
		return rc, nil
	}
	return s.dial(ctx, mode)
}

// idle is the pool of idle connections, its limits from the fields.
func (s *SMTPRelay) idle() *smtppool.Idle[string, *relayConn] {
	s.poolOnce.Do(func() {
		s.pool.Max = s.MaxIdle
		if s.pool.Max == 0 {
			s.pool.Max = 16
		}
		s.pool.PerConn = s.MaxMessagesPerConn
		if s.pool.PerConn <= 0 {
			s.pool.PerConn = 100
		}
		s.pool.For = s.IdleTimeout
		if s.pool.For <= 0 {
			s.pool.For = 5 * time.Second
		}
		s.pool.End = func(rc *relayConn) { smtppool.Quit(rc.c) }
	})
	return &s.pool
}

// Close says QUIT on the idle connections; later deliveries still work
// but keep no connection open.
func (s *SMTPRelay) Close() error {
	s.idle().Close()
	return nil
}

func (s *SMTPRelay) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return 60 * time.Second
}

func (s *SMTPRelay) setTimeouts(c *smtp.Client) {
	c.CommandTimeout, c.SubmissionTimeout = s.timeout(), s.timeout()
}

// dial opens a connection for mode: connect, EHLO, STARTTLS, AUTH.
func (s *SMTPRelay) dial(ctx context.Context, mode string) (*relayConn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	c, raw, st, err := s.connect(ctx, mode)
	if err != nil {
		return nil, err
	}
	s.setTimeouts(c)
	if s.User != "" {
		// connect insists on verified TLS when there are credentials;
		// this is the last look before the password is written, so that
		// no future path to here can send it in plain text.
		if st == nil {
			c.Close()
			return nil, fmt.Errorf("smarthost %s: refusing AUTH as %s without TLS (the password would travel in plain text)", s.Addr, s.User)
		}
		if err := c.Auth(sasl.NewPlainClient("", s.User, s.Password)); err != nil {
			c.Close()
			// A refused login is our configuration, not the recipient's
			// fault, so it is retried (and alerts) instead of bouncing.
			return nil, setupFailed(fmt.Sprintf("smarthost %s: AUTH as %s failed (check relay.auth_user / auth_password_file)", s.Addr, s.User), err)
		}
	}
	return &relayConn{c: c, raw: raw, mode: mode, hop: hopTLS(st)}, nil
}

// setupFailed wraps err, a failure while opening a connection, under
// context. The chain keeps network and TLS errors (errors.As finds an
// x509.HostnameError) but not an SMTP reply code: a 5xx to EHLO, STARTTLS
// or AUTH is the smart host refusing us, which the recipient's address
// cannot fix, so the queue retries the message instead of bouncing it.
func setupFailed(context string, err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return fmt.Errorf("%s: %v", context, err)
	}
	return fmt.Errorf("%s: %w", context, err)
}

// tlsPolicy is what a connection demands of TLS.
type tlsPolicy struct {
	// required: no STARTTLS, or a failed one, fails the connection
	// instead of going on in plain text.
	required bool
	// verify: the certificate must chain to RootCAs (the system roots
	// plus relay.ca_files) and name the smart host.
	verify bool
	// why says who demands TLS, for the error that refuses a host
	// without it.
	why string
}

// policyFor decides TLS for a connection in mode (relay.tls, or
// "required" when a policy rule demands TLS for the message). Whatever
// is required is verified: TLS to an unverified peer protects against
// reading on the wire, not against a man in the middle, who would then
// get the message a rule wanted protected, or the relay password.
// Credentials require verified TLS in every mode, because AUTH PLAIN
// hands the password to whoever answers. Only opportunistic TLS without
// credentials stays unverified (RFC 7435): there the alternative is plain
// text, and a smart host with a self-signed certificate still gets its
// mail encrypted against passive reading.
func (s *SMTPRelay) policyFor(mode string) tlsPolicy {
	switch {
	case s.User != "":
		return tlsPolicy{required: true, verify: true, why: "relay.auth_user is set (the relay password goes only over verified TLS)"}
	case mode == "required" && s.TLS == "required":
		return tlsPolicy{required: true, verify: true, why: "relay.tls is required"}
	case mode == "required":
		return tlsPolicy{required: true, verify: true, why: "a policy rule requires TLS for this message"}
	}
	return tlsPolicy{}
}

// tlsConfig is the configuration for STARTTLS under pol.
func (s *SMTPRelay) tlsConfig(pol tlsPolicy) *tls.Config {
	conf := s.TLSConf
	if conf == nil {
		conf = &tls.Config{}
	}
	conf = conf.Clone()
	if conf.ServerName == "" {
		conf.ServerName, _, _ = net.SplitHostPort(s.Addr)
	}
	// Forced either way: a TLSConf handed in with InsecureSkipVerify must
	// not switch verification off where it is demanded.
	conf.InsecureSkipVerify = !pol.verify
	return conf
}

// tlsFailed explains a failed STARTTLS or TLS handshake and says what to
// do about it.
func (s *SMTPRelay) tlsFailed(err error, conf *tls.Config, pol tlsPolicy) error {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	var notes []string
	if pol.verify {
		notes = append(notes, "certificate verified because "+pol.why)
	}
	switch {
	case errors.As(err, &unknown):
		notes = append(notes, "trust the CA that issued the smart host's certificate with relay.ca_files")
	case errors.As(err, &hostname):
		notes = append(notes, fmt.Sprintf("the certificate does not name %q: set relay.tls_server_name to a name it carries", conf.ServerName))
	case errors.As(err, &invalid):
		notes = append(notes, "the smart host's certificate is not valid now (expired?): renew it")
	}
	what := fmt.Sprintf("smarthost %s: STARTTLS", s.Addr)
	if len(notes) > 0 {
		what += " (" + strings.Join(notes, "; ") + ")"
	}
	return setupFailed(what, err)
}

// connect dials the smart host and says EHLO, with STARTTLS as
// policyFor(mode) asks. go-smtp only upgrades right after the greeting,
// so opportunistic TLS against a host without STARTTLS costs a second
// connection. ctx bounds it all: go-smtp clears a connection's deadline
// after each command, so the end of ctx closes the connection instead.
func (s *SMTPRelay) connect(ctx context.Context, mode string) (*smtp.Client, net.Conn, *tls.ConnectionState, error) {
	helo := s.Hostname
	if helo == "" {
		helo = "localhost"
	}
	d := starttls.NewDialer(ctx)
	defer d.Close()
	dial := func() (net.Conn, error) {
		conn, err := d.Dial(s.Addr)
		if err != nil {
			return nil, fmt.Errorf("smarthost %s: %w", s.Addr, err)
		}
		return conn, nil
	}
	// done hands over c unless ctx ended meanwhile (and closed it).
	done := func(c *smtp.Client, conn net.Conn, st *tls.ConnectionState) (*smtp.Client, net.Conn, *tls.ConnectionState, error) {
		if !d.Keep() {
			c.Close()
			return nil, nil, nil, fmt.Errorf("smarthost %s: %w", s.Addr, ctx.Err())
		}
		return c, conn, st, nil
	}
	pol := s.policyFor(mode)
	if mode != "none" || pol.required {
		conn, err := dial()
		if err != nil {
			return nil, nil, nil, err
		}
		conf := s.tlsConfig(pol)
		// Our own plain-text phase (starttls.Client): the smart host
		// sees EHLO with smtp.hostname, not go-smtp's "localhost", and
		// plain text injected after the 220 to STARTTLS is refused.
		c, st, err := starttls.Client(conn, helo, conf, s.timeout())
		if err == nil {
			if err := c.Hello(helo); err != nil {
				c.Close()
				var se *smtp.SMTPError
				if errors.As(err, &se) {
					return nil, nil, nil, setupFailed(fmt.Sprintf("smarthost %s: EHLO after STARTTLS", s.Addr), err)
				}
				return nil, nil, nil, s.tlsFailed(err, conf, pol)
			}
			return done(c, conn, &st)
		}
		conn.Close()
		noStartTLS := errors.Is(err, starttls.ErrNotOffered)
		switch {
		case noStartTLS && pol.required:
			return nil, nil, nil, fmt.Errorf("smarthost %s does not offer STARTTLS and %s; nothing was sent: make the smart host offer STARTTLS, or find what removes it on the way (a man in the middle?)", s.Addr, pol.why)
		case !noStartTLS:
			return nil, nil, nil, s.tlsFailed(err, conf, pol)
		}
	}
	conn, err := dial()
	if err != nil {
		return nil, nil, nil, err
	}
	c := smtp.NewClient(conn)
	if err := c.Hello(helo); err != nil {
		c.Close()
		return nil, nil, nil, setupFailed(fmt.Sprintf("smarthost %s: EHLO", s.Addr), err)
	}
	return done(c, conn, nil)
}
