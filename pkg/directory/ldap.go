package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// LDAPSourceOptions configures one [[keyservers]] entry.
type LDAPSourceOptions struct {
	Name   string
	URL    string // ldap:// or ldaps://
	BaseDN string
	BindDN string // empty: anonymous
	// BindPassword is read by the caller from bind_password_file.
	BindPassword []byte
	// Timeout bounds the whole conversation (dial, bind, search); default 3s.
	Timeout time.Duration
	// RetryAfter is how long a failed server is skipped before one lookup
	// tries it again (doubling up to MaxRetryAfter); defaults 30s and 5m.
	RetryAfter, MaxRetryAfter time.Duration
	TLSConfig                 *tls.Config
	// StartTLS upgrades an ldap:// connection to TLS (verified against
	// TLSConfig's roots, for the URL's host) before the bind and every
	// search; a failed upgrade is an error, never a fall back to clear text.
	StartTLS bool
	// AllowPlaintextBind permits a simple bind over ldap:// without
	// StartTLS; without it NewLDAPSource refuses such a configuration.
	AllowPlaintextBind bool
	Logger             *slog.Logger
	Now                func() time.Time
}

// LDAPSource finds certificates in an LDAP directory (a partner's key
// server, a corporate AD): entries whose mail or proxyAddresses
// (smtp:addr) is the address, their userCertificate(;binary) and
// userSMIMECertificate (PKCS #7) values.
type LDAPSource struct {
	o  LDAPSourceOptions
	br *breaker

	mu     sync.Mutex
	shared *ldap.Conn
}

// NewLDAPSource builds a key server source.
func NewLDAPSource(o LDAPSourceOptions) (*LDAPSource, error) {
	if o.URL == "" {
		return nil, errors.New("directory: keyserver url is empty")
	}
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Host == "" {
		return nil, fmt.Errorf("directory: keyserver url %q is not an ldap:// or ldaps:// URL", o.URL)
	}
	switch {
	case o.StartTLS && u.Scheme != "ldap":
		return nil, fmt.Errorf("directory: keyserver %s: starttls needs an ldap:// URL, not %q", o.Name, o.URL)
	case u.Scheme == "ldap" && !o.StartTLS && o.BindDN != "" && !o.AllowPlaintextBind:
		return nil, fmt.Errorf("directory: keyserver %s: a bind as %s over %s without starttls would send the password in clear text: "+
			"use ldaps:// or starttls = true, or allow_plaintext_bind = true for a server on this host", o.Name, o.BindDN, o.URL)
	}
	if o.Name == "" {
		o.Name = o.URL
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = 30 * time.Second
	}
	if o.MaxRetryAfter < o.RetryAfter {
		o.MaxRetryAfter = max(5*time.Minute, o.RetryAfter)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &LDAPSource{o: o, br: newBreaker(o.RetryAfter, o.MaxRetryAfter, o.Now)}, nil
}

// Name is "keyserver <name>".
func (s *LDAPSource) Name() string { return "keyserver " + s.o.Name }

// Timeout is the per-lookup budget of this server.
func (s *LDAPSource) Timeout() time.Duration { return s.o.Timeout }

// certAttributes are read from matching entries. OpenLDAP returns
// userCertificate only with the ;binary option; AD returns it plain.
var certAttributes = []string{"userCertificate;binary", "userCertificate", "userSMIMECertificate", "userSMIMECertificate;binary"}

// Find searches the server. While the breaker is open it answers at once
// with ErrSourceUnavailable instead of waiting for a dead server.
func (s *LDAPSource) Find(ctx context.Context, email string) ([]Candidate, error) {
	ok, retry, last := s.br.allow()
	if !ok {
		return nil, fmt.Errorf("%s: %w: skipped until %s after: %v", s.Name(), ErrSourceUnavailable, retry.UTC().Format(time.RFC3339), last)
	}
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()

	type answer struct {
		c   []Candidate
		err error
	}
	done := make(chan answer, 1)
	go func() {
		c, err := s.search(email)
		done <- answer{c, err}
	}()
	select {
	case a := <-done:
		if a.err != nil && strings.Contains(a.err.Error(), "timed out") {
			// go-ldap's own request timeout, the same budget as ours.
			a.err = fmt.Errorf("no answer within %v (%w)", s.o.Timeout, a.err)
		}
		s.br.done(a.err)
		if a.err != nil {
			return nil, sourceError(s.Name(), a.err)
		}
		return a.c, nil
	case <-ctx.Done():
		// Unblock the search: closing the shared connection ends every
		// pending request on it; the goroutine then exits by itself.
		s.dropConn(nil)
		err := fmt.Errorf("no answer within %v", s.o.Timeout)
		s.br.done(err)
		return nil, sourceError(s.Name(), err)
	}
}

// conn returns the shared connection, dialling (and binding) when there is
// none. go-ldap multiplexes concurrent requests over one connection, so
// lookups do not pay a TCP (and TLS) handshake each.
func (s *LDAPSource) conn() (*ldap.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shared != nil && !s.shared.IsClosing() {
		return s.shared, nil
	}
	opts := []ldap.DialOpt{ldap.DialWithDialer(&net.Dialer{Timeout: s.o.Timeout})}
	if s.o.TLSConfig != nil {
		opts = append(opts, ldap.DialWithTLSConfig(s.o.TLSConfig))
	}
	c, err := ldap.DialURL(s.o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	c.SetTimeout(s.o.Timeout)
	if s.o.StartTLS {
		if err := c.StartTLS(s.startTLSConfig()); err != nil {
			c.Close()
			return nil, fmt.Errorf("StartTLS (check that the server offers it and that ca_file holds the CA of its certificate): %w", err)
		}
	}
	if s.o.BindDN != "" {
		if err := c.Bind(s.o.BindDN, string(s.o.BindPassword)); err != nil {
			c.Close()
			return nil, fmt.Errorf("bind as %s: %w", s.o.BindDN, err)
		}
	}
	s.shared = c
	return c, nil
}

// startTLSConfig is TLSConfig with the URL's host as the name the
// server's certificate must carry: go-ldap's StartTLS hands the config to
// tls.Client as it is, taking no name from the address.
func (s *LDAPSource) startTLSConfig() *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.o.TLSConfig != nil {
		c = s.o.TLSConfig.Clone()
	}
	if c.ServerName == "" {
		if u, err := url.Parse(s.o.URL); err == nil {
			c.ServerName = u.Hostname()
		}
	}
	return c
}

// dropConn closes c (or whatever is shared when c is nil) and forgets it.
func (s *LDAPSource) dropConn(c *ldap.Conn) {
	s.mu.Lock()
	if c == nil {
		c = s.shared
	}
	if s.shared == c {
		s.shared = nil
	}
	s.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// Close closes the shared connection (at shutdown).
func (s *LDAPSource) Close() error {
	s.dropConn(nil)
	return nil
}

func (s *LDAPSource) search(email string) ([]Candidate, error) {
	esc := ldap.EscapeFilter(email)
	filter := fmt.Sprintf("(|(mail=%s)(proxyAddresses=smtp:%s))", esc, esc)
	req := ldap.NewSearchRequest(s.o.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		50, int(max(1, s.o.Timeout/time.Second)), false, filter, certAttributes, nil)
	var res *ldap.SearchResult
	// A kept connection may have been closed by the server (idle timeout,
	// restart): one retry on a fresh connection.
	for attempt := 0; ; attempt++ {
		conn, err := s.conn()
		if err != nil {
			return nil, err
		}
		res, err = conn.Search(req)
		if err != nil && ldap.IsErrorWithCode(err, ldap.ErrorNetwork) {
			s.dropConn(conn)
			if attempt == 0 && !strings.Contains(err.Error(), "timed out") {
				continue
			}
		}
		// Every failure is an error, so the lookup is undecided rather than
		// "no certificate": a missing base DN (a tree being restored, a
		// typo in base_dn) or a truncated answer (more than the size
		// limit) does not show that the address has no certificate.
		switch {
		case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
			return nil, fmt.Errorf("search %s: base DN %q does not exist on the server (check keyservers.base_dn): %w", filter, s.o.BaseDN, err)
		case ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded):
			return nil, fmt.Errorf("search %s under %q: more than %d entries match, the answer is incomplete: %w", filter, s.o.BaseDN, req.SizeLimit, err)
		case err != nil:
			return nil, fmt.Errorf("search %s under %q: %w", filter, s.o.BaseDN, err)
		}
		break
	}
	if res == nil {
		return nil, nil
	}
	var out []Candidate
	seen := map[string]bool{}
	for _, e := range res.Entries {
		certs, caps := s.entryCerts(e)
		for _, c := range candidatesFrom(certs, nil) {
			fp := Fingerprint(c.Certificate)
			if !seen[fp] {
				seen[fp] = true
				c.Capabilities = caps[fp]
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// entryCerts reads every certificate value of an entry, and the
// capabilities of signed userSMIMECertificate blobs by the signer's
// fingerprint; a value that does not parse is logged and skipped, not
// fatal for the other values.
func (s *LDAPSource) entryCerts(e *ldap.Entry) ([]*x509.Certificate, map[string][]byte) {
	var out []*x509.Certificate
	caps := map[string][]byte{}
	for _, a := range e.Attributes {
		base, _, _ := strings.Cut(strings.ToLower(a.Name), ";")
		if base != "usercertificate" && base != "usersmimecertificate" {
			continue
		}
		for _, v := range a.ByteValues {
			var certs []*x509.Certificate
			var err error
			if base == "usersmimecertificate" {
				var signer *x509.Certificate
				var c []byte
				if certs, signer, c, err = parseSMIMEBlob(v); err == nil && signer != nil {
					caps[Fingerprint(signer)] = c
				}
			} else {
				certs, err = ParseCertificates(v)
			}
			if err != nil {
				s.o.Logger.Warn("keyserver value is not a certificate", "source", s.Name(), "dn", e.DN, "attribute", a.Name, "err", err)
				continue
			}
			out = append(out, certs...)
		}
	}
	return out, caps
}
