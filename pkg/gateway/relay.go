package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// DirRelay writes each parcel as one .eml file into Dir (the quick start
// and tests): written to a temp name, fsynced, renamed, so readers never
// see half a message. Return-Path and X-Sealgate-Rcpt-To carry the envelope.
type DirRelay struct{ Dir string }

// Deliver implements Relay.
func (d DirRelay) Deliver(_ context.Context, p Delivery) []error {
	err := d.write(p)
	errs := make([]error, len(p.Rcpts))
	for i := range errs {
		errs[i] = err
	}
	return errs
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

// SMTPRelay delivers to a smart host.
type SMTPRelay struct {
	Addr     string
	Hostname string      // our EHLO name
	TLS      string      // none | opportunistic | required
	TLSConf  *tls.Config // for required: verification roots, ServerName
	User     string
	Password string
	Timeout  time.Duration
}

// Deliver implements Relay: one SMTP transaction per parcel.
func (s *SMTPRelay) Deliver(ctx context.Context, p Delivery) []error {
	errs := make([]error, len(p.Rcpts))
	fail := func(err error) []error {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	mode := s.TLS
	if p.RequireTLS {
		// Policy demands TLS for this copy, whatever relay.tls says.
		mode = "required"
	}
	c, err := s.connect(ctx, mode)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	if s.User != "" {
		if err := c.Auth(sasl.NewPlainClient("", s.User, s.Password)); err != nil {
			// %v, not %w: a refused login is our configuration, not the
			// recipient's fault, so it is retried (and alerts) instead of bouncing.
			return fail(fmt.Errorf("smarthost %s: AUTH as %s failed (check relay.auth_user / auth_password_file): %v", s.Addr, s.User, err))
		}
	}
	if err := c.Mail(p.From, &smtp.MailOptions{Body: smtp.Body8BitMIME, Size: int64(len(p.Data)), UTF8: p.UTF8}); err != nil {
		return fail(fmt.Errorf("smarthost %s: MAIL FROM: %w", s.Addr, err))
	}
	accepted := 0
	for i, r := range p.Rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			errs[i] = fmt.Errorf("smarthost %s: RCPT TO: %w", s.Addr, err)
			continue
		}
		accepted++
	}
	if accepted == 0 {
		return errs
	}
	w, err := c.Data()
	if err != nil {
		return fail(fmt.Errorf("smarthost %s: DATA: %w", s.Addr, err))
	}
	if _, err := w.Write(p.Data); err != nil {
		w.Close()
		return fail(fmt.Errorf("smarthost %s: DATA: %w", s.Addr, err))
	}
	if err := w.Close(); err != nil {
		return fail(fmt.Errorf("smarthost %s: end of DATA: %w", s.Addr, err))
	}
	if err := c.Quit(); err != nil && !errors.Is(err, net.ErrClosed) {
		_ = err // the message was accepted; a failed QUIT does not matter
	}
	return errs
}

var errNoStartTLS = errors.New("smtp: server doesn't support STARTTLS")

// connect dials the smart host and says EHLO, with STARTTLS as relay.tls
// asks. go-smtp only upgrades right after the greeting, so opportunistic
// TLS against a host without STARTTLS costs a second connection.
func (s *SMTPRelay) connect(ctx context.Context, mode string) (*smtp.Client, error) {
	helo := s.Hostname
	if helo == "" {
		helo = "localhost"
	}
	dial := func() (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", s.Addr)
		if err != nil {
			return nil, fmt.Errorf("smarthost %s: %w", s.Addr, err)
		}
		if dl, ok := ctx.Deadline(); ok {
			_ = conn.SetDeadline(dl)
		}
		return conn, nil
	}
	if mode != "none" {
		conn, err := dial()
		if err != nil {
			return nil, err
		}
		conf := s.TLSConf
		if conf == nil {
			conf = &tls.Config{}
		}
		conf = conf.Clone()
		if conf.ServerName == "" {
			conf.ServerName, _, _ = net.SplitHostPort(s.Addr)
		}
		if s.TLS != "required" {
			// Unless relay.tls is "required" (which verifies the smart
			// host's certificate), TLS protects against passive reading
			// only (RFC 7435): a certificate mismatch must not stop mail,
			// also when policy demands TLS for a message.
			conf.InsecureSkipVerify = true
		}
		c, err := smtp.NewClientStartTLS(conn, conf)
		if err == nil {
			if err := c.Hello(helo); err != nil {
				c.Close()
				return nil, fmt.Errorf("smarthost %s: EHLO after STARTTLS: %v", s.Addr, err)
			}
			return c, nil
		}
		if err.Error() != errNoStartTLS.Error() || mode == "required" {
			if mode == "required" && err.Error() == errNoStartTLS.Error() {
				return nil, fmt.Errorf("smarthost %s does not offer STARTTLS and relay.tls is required", s.Addr)
			}
			return nil, fmt.Errorf("smarthost %s: STARTTLS: %v", s.Addr, err)
		}
	}
	conn, err := dial()
	if err != nil {
		return nil, err
	}
	c := smtp.NewClient(conn)
	if err := c.Hello(helo); err != nil {
		c.Close()
		return nil, fmt.Errorf("smarthost %s: EHLO: %v", s.Addr, err)
	}
	return c, nil
}
