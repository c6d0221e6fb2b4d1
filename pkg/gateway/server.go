package gateway

import (
	"github.com/sealgate/sealgate/pkg/message"

	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"
)

// ListenerConfig is the SMTP side of the gateway.
type ListenerConfig struct {
	Hostname        string
	TLS             *tls.Config // nil: no STARTTLS
	AllowedNetworks []netip.Prefix
	// Accounts are the SMTP AUTH accounts by name (LoadUsers); when
	// non-empty, AUTH (over TLS only) is required before MAIL FROM.
	Accounts map[string]Account
	// OwnsAddress says whether a personal account may use addr as its
	// envelope sender (its user's aliases). Nil: only the account's own
	// address. An error defers the sender (451).
	OwnsAddress     func(ctx context.Context, account, addr string) (bool, error)
	MaxMessageBytes int64
	// AcceptRecipient, if set, refuses RCPT TO addresses it returns false
	// for (550 5.7.1): the inbound listener takes mail for our domains
	// only, so it is no open relay to the next hop.
	AcceptRecipient func(addr string) bool
	MaxRecipients   int
	MaxConnections  int
	ReadTimeout     time.Duration
	WriteTimeout    time.Duration
	Log             *slog.Logger
}

// maxLineLength bounds a line in commands and data. RFC 5322 allows 998
// octets, but real senders (Exchange included) exceed it with 8BITMIME;
// Postfix accepts long lines too, so only absurd ones are refused.
const maxLineLength = 64 << 10

// Listener accepts mail from the allowed networks into the queue.
type Listener struct {
	cfg   ListenerConfig
	queue *Queue
	srv   *smtp.Server
	slots chan struct{}
	// dummyHash is checked for unknown users, at the accounts' highest
	// cost (see dummyHashFor).
	dummyHash []byte
	authLimit *authLimiter
}

// NewListener builds the SMTP server.
func NewListener(cfg ListenerConfig, q *Queue) *Listener {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = 200
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 5 * time.Minute
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 5 * time.Minute
	}
	l := &Listener{cfg: cfg, queue: q, slots: make(chan struct{}, cfg.MaxConnections),
		dummyHash: dummyHashFor(cfg.Accounts), authLimit: newAuthLimiter()}
	s := smtp.NewServer(smtp.BackendFunc(l.newSession))
	s.Domain = cfg.Hostname
	s.TLSConfig = cfg.TLS
	s.MaxMessageBytes = cfg.MaxMessageBytes
	s.MaxRecipients = cfg.MaxRecipients
	s.ReadTimeout = cfg.ReadTimeout
	s.WriteTimeout = cfg.WriteTimeout
	s.MaxLineLength = maxLineLength
	s.EnableSMTPUTF8 = true
	s.EnableDSN = true
	s.AllowInsecureAuth = false
	s.ErrorLog = slogAdapter{cfg.Log}
	l.srv = s
	return l
}

type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Printf(format string, v ...any) { a.l.Warn("smtp: " + fmt.Sprintf(format, v...)) }
func (a slogAdapter) Println(v ...any)               { a.l.Warn("smtp: " + fmt.Sprint(v...)) }

// Serve accepts connections on ln until Shutdown.
func (l *Listener) Serve(ln net.Listener) error {
	err := l.srv.Serve(&guardedListener{Listener: ln, l: l})
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting and waits for open sessions (and so for every
// message being received) until ctx ends.
func (l *Listener) Shutdown(ctx context.Context) error { return l.srv.Shutdown(ctx) }

// guardedListener refuses connections from outside the allowed networks
// and beyond the connection limit before the SMTP greeting, so that the
// gateway can never be used as an open relay.
type guardedListener struct {
	net.Listener
	l *Listener
}

func (g *guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !g.l.allowed(c.RemoteAddr()) {
			g.l.cfg.Log.Warn("connection refused: not in smtp.allowed_networks", "remote", c.RemoteAddr().String())
			refuse(c, "554 5.7.1 "+g.l.cfg.Hostname+" does not accept mail from your address (not in allowed_networks)")
			continue
		}
		select {
		case g.l.slots <- struct{}{}:
			return &slotConn{Conn: c, release: func() { <-g.l.slots }}, nil
		default:
			refuse(c, "421 4.7.0 "+g.l.cfg.Hostname+" too many connections, try again later")
		}
	}
}

func refuse(c net.Conn, line string) {
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, line+"\r\n")
	c.Close()
}

type slotConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *slotConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

func (l *Listener) allowed(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, p := range l.cfg.AllowedNetworks {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (l *Listener) newSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{l: l, conn: c}, nil
}

type session struct {
	l    *Listener
	conn *smtp.Conn
	// account and role are set by a successful AUTH.
	account string
	role    AccountRole
	env     *Envelope
}

var (
	errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0},
		Message: "Authentication required (AUTH PLAIN or LOGIN after STARTTLS)"}
	errAuthFailed = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
		Message: "Authentication credentials invalid"}
	errLineTooLong = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: fmt.Sprintf("Line longer than %d octets; encode the content (quoted-printable or base64)", maxLineLength)}
	errTempStore = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Message could not be stored; try again later"}
	errAuthThrottled = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Too many failed authentication attempts; try again later"}
	errSenderUncheckable = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Sender address could not be checked; try again later"}
)

func (s *session) AuthMechanisms() []string {
	if len(s.l.cfg.Accounts) == 0 {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	client := clientKey(s.conn.Conn().RemoteAddr())
	if s.l.authLimit.clientRefused(client) {
		s.l.cfg.Log.Warn("authentication refused: too many failures from this client", "remote", s.conn.Conn().RemoteAddr().String())
		return nil, errAuthThrottled
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, name, pass string) error {
			return s.authenticate(client, identity, name, pass)
		}), nil
	case sasl.Login:
		return &loginServer{check: func(name, pass string) error { return s.authenticate(client, "", name, pass) }}, nil
	}
	return nil, &smtp.SMTPError{Code: 504, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "Unsupported authentication mechanism"}
}

// authenticate checks one AUTH attempt. Blocked attempts are refused
// before the password is looked at; an unknown name costs the same bcrypt
// work as a known one. The password and unknown names (often a password
// typed into the wrong field) are never logged.
func (s *session) authenticate(client, identity, name, pass string) error {
	remote := s.conn.Conn().RemoteAddr().String()
	acct, known := s.l.cfg.Accounts[name]
	logName := ""
	if known {
		logName = name
	}
	if !s.l.authLimit.begin(client, name) {
		s.l.cfg.Log.Warn("authentication refused: too many failures", "user", logName, "remote", remote)
		return errAuthThrottled
	}
	ok := false
	defer func() { s.l.authLimit.end(client, name, ok) }()
	if identity != "" && identity != name {
		// Acting for another identity (SASL authzid) is not offered.
		s.l.cfg.Log.Warn("authentication failed: authorization identity differs", "user", logName, "remote", remote)
		return errAuthFailed
	}
	hash := acct.Hash
	if !known {
		hash = s.l.dummyHash
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil || !known {
		s.l.cfg.Log.Warn("authentication failed", "user", logName, "remote", remote)
		return errAuthFailed
	}
	ok = true
	s.account, s.role = name, acct.Role
	return nil
}

// loginServer is the server side of the (obsolete but widely used, e.g. by
// Exchange) LOGIN mechanism: username, then password, each base64 by SMTP.
type loginServer struct {
	check func(user, pass string) error
	user  string
	step  int
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if len(resp) > 0 { // initial response carries the user name
			l.user = string(resp)
			l.step = 2
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.user = string(resp)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.user, string(resp))
	}
	return nil, true, errAuthFailed
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if len(s.l.cfg.Accounts) > 0 && s.account == "" {
		return errAuthRequired
	}
	if s.role == RolePersonal {
		if err := s.checkPersonalSender(from); err != nil {
			return err
		}
	}
	env := &Envelope{From: from, Received: time.Now().UTC(), Helo: s.conn.Hostname(), AuthUser: s.account, AuthRole: s.role}
	if ta, ok := s.conn.Conn().RemoteAddr().(*net.TCPAddr); ok {
		env.ClientIP = ta.IP.String()
	}
	if opts != nil {
		env.Ret = string(opts.Return)
		env.EnvID = opts.EnvelopeID
		env.Body8Bit = opts.Body == smtp.Body8BitMIME
		env.UTF8 = opts.UTF8
	}
	s.env = env
	return nil
}

// ownsAddressTimeout bounds the directory question of OwnsAddress, asked
// while the client waits for its MAIL FROM reply.
const ownsAddressTimeout = 30 * time.Second

// checkPersonalSender refuses at once an envelope sender that a personal
// account may not use: only its own address (ASCII case ignored) or what
// OwnsAddress accepts (the user's aliases), never the null sender. The
// pipeline checks the header sender against the same account later.
func (s *session) checkPersonalSender(from string) error {
	refused := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Account " + s.account + " may send only as its own address or its aliases"}
	if from == "" {
		s.l.cfg.Log.Warn("sender refused: null sender from a personal account", "user", s.account)
		refused.Message = "Account " + s.account + " may not send with an empty sender (<>); only relay accounts send bounces"
		return refused
	}
	if message.SameAddress(from, s.account) {
		return nil
	}
	if s.l.cfg.OwnsAddress != nil {
		ctx, cancel := context.WithTimeout(context.Background(), ownsAddressTimeout)
		defer cancel()
		owns, err := s.l.cfg.OwnsAddress(ctx, s.account, from)
		if err != nil {
			s.l.cfg.Log.Error("sender check failed", "user", s.account, "from", from, "err", err)
			return errSenderUncheckable
		}
		if owns {
			return nil
		}
	}
	s.l.cfg.Log.Warn("sender refused: not the personal account's address", "user", s.account, "from", from)
	return refused
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if s.env == nil {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "MAIL FROM first"}
	}
	if !strings.Contains(to, "@") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Recipient must be a full address (local@domain)"}
	}
	if s.l.cfg.AcceptRecipient != nil && !s.l.cfg.AcceptRecipient(to) {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relaying denied: not a domain of this gateway"}
	}
	r := Recipient{Addr: to}
	if opts != nil {
		for _, n := range opts.Notify {
			r.Notify = append(r.Notify, string(n))
		}
		if opts.OriginalRecipient != "" {
			r.ORcpt = string(opts.OriginalRecipientType) + ";" + opts.OriginalRecipient
		}
	}
	s.env.Recipients = append(s.env.Recipients, r)
	return nil
}

func (s *session) Data(r io.Reader) error {
	if s.env == nil || len(s.env.Recipients) == 0 {
		_, _ = io.Copy(io.Discard, r)
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "RCPT TO first"}
	}
	env := s.env
	env.ID = NewID()
	_, tlsOn := s.conn.TLSConnectionState()
	br := dataReaders.Get().(*bufio.Reader)
	br.Reset(r)
	defer func() { br.Reset(nil); dataReaders.Put(br) }()
	v := newDataValidator(br, s.l.cfg.Hostname)
	received := s.receivedField(env, tlsOn)
	env.addedLines = strings.Count(received, "\n")
	body := io.MultiReader(strings.NewReader(received), v)
	err := s.l.queue.Accept(context.Background(), env, body)
	if err != nil {
		_, _ = io.Copy(io.Discard, r) // the SMTP layer expects the data consumed
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			s.l.cfg.Log.Warn("message refused", "from", env.From, "rcpts", len(env.Recipients), "reason", se.Message)
			return se
		}
		if errors.Is(err, smtp.ErrDataTooLarge) {
			return smtp.ErrDataTooLarge
		}
		if errors.Is(err, smtp.ErrTooLongLine) {
			return errLineTooLong
		}
		s.l.cfg.Log.Error("spooling failed", "from", env.From, "err", err)
		return errTempStore
	}
	s.l.cfg.Log.Info("accepted", "queue_id", env.ID, "from", env.From, "rcpts", len(env.Recipients), "client", env.ClientIP)
	// go-smtp's way to give a custom 250 text is an SMTPError with a 2xx
	// code; the queue id in it lets admins trace a message.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + env.ID}
}

// dataReaders buffer the DATA stream for the validator; reused, since a
// new 32 KB buffer per message was garbage the collector had to chase.
var dataReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}

func (s *session) receivedField(env *Envelope, tlsOn bool) string {
	with := "ESMTP"
	if tlsOn {
		with += "S"
	}
	if env.AuthUser != "" {
		with += "A"
	}
	forClause := ""
	if len(env.Recipients) == 1 {
		forClause = "\r\n\tfor <" + env.Recipients[0].Addr + ">"
	}
	helo := sanitizeHeader(env.Helo)
	return fmt.Sprintf("Received: from %s ([%s])\r\n\tby %s (sealgate) with %s id %s%s;\r\n\t%s\r\n",
		helo, env.ClientIP, s.l.cfg.Hostname, with, env.ID, forClause, env.Received.Format(time.RFC1123Z))
}

func sanitizeHeader(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e || r == '(' || r == ')' {
			return -1
		}
		return r
	}, s)
}

func (s *session) Reset()        { s.env = nil }
func (s *session) Logout() error { return nil }
