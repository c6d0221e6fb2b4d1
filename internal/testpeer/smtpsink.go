package testpeer

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// SinkMessage is one message a Sink received.
type SinkMessage struct {
	From  string
	Rcpts []string
	Data  []byte
	TLS   bool
	User  string
	// Helo is the name the client greeted with (tells cluster nodes apart).
	Helo string
}

// Sink is a small SMTP server for tests: the next hop the gateway relays
// to. It can offer STARTTLS and require AUTH PLAIN, and fail on demand.
type Sink struct {
	Addr string

	mu   sync.Mutex
	msgs []SinkMessage
	// more is closed when the next message arrives (see Next).
	more  chan struct{}
	fail  *smtp.SMTPError // answer to every RCPT while set
	srv   *smtp.Server
	ln    net.Listener
	creds map[string]string
}

// SinkOptions shape a Sink.
type SinkOptions struct {
	TLS   *tls.Config       // non-nil: offer STARTTLS
	Users map[string]string // non-empty: require AUTH PLAIN over TLS
	Addr  string            // "" picks a free loopback port
	// Listener, if set, is served instead of listening on Addr.
	Listener net.Listener
}

// StartSink starts a sink; it stops when the test ends.
func StartSink(t testing.TB, opts SinkOptions) *Sink {
	t.Helper()
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln := opts.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			t.Fatalf("sink: %v", err)
		}
	}
	s := &Sink{Addr: ln.Addr().String(), creds: opts.Users, ln: ln}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &sinkSession{s: s, c: c}, nil
	}))
	srv.Domain = "sink.test"
	srv.TLSConfig = opts.TLS
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.ErrorLog = nopLogger{}
	s.srv = srv
	go srv.Serve(ln)
	t.Cleanup(s.Close)
	return s
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

// Close stops the sink (to simulate the next hop going down).
// The listener is closed here too: Server.Close misses it when Serve
// has not registered it yet.
func (s *Sink) Close() {
	s.ln.Close()
	s.srv.Close()
}

// Fail makes every RCPT answer with code and message until Fail(0, "").
func (s *Sink) Fail(code int, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code == 0 {
		s.fail = nil
		return
	}
	s.fail = &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 0, 0}, Message: msg}
}

// Next returns the messages that arrived after the first from, and a
// channel that is closed when one more arrives: a test waits for mail
// without polling, and reads each message once however many arrive.
func (s *Sink) Next(from int) ([]SinkMessage, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.more == nil {
		s.more = make(chan struct{})
	}
	var got []SinkMessage
	if from < len(s.msgs) {
		got = append(got, s.msgs[max(from, 0):]...)
	}
	return got, s.more
}

// Messages returns a copy of what arrived so far.
func (s *Sink) Messages() []SinkMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SinkMessage(nil), s.msgs...)
}

// WaitMessages waits until at least n messages arrived.
func (s *Sink) WaitMessages(t testing.TB, n int, timeout time.Duration) []SinkMessage {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := s.Messages()
		if len(m) >= n {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("sink: %d of %d messages after %s", len(m), n, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type sinkSession struct {
	s    *Sink
	c    *smtp.Conn
	user string
	from string
	to   []string
}

func (ss *sinkSession) AuthMechanisms() []string {
	if len(ss.s.creds) == 0 {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *sinkSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if p, ok := ss.s.creds[user]; ok && p == pass {
			ss.user = user
			return nil
		}
		return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
	}), nil
}

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	if len(ss.s.creds) > 0 && ss.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "auth required"}
	}
	ss.from = from
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	f := ss.s.fail
	ss.s.mu.Unlock()
	if f != nil {
		return f
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, tlsOn := ss.c.TLSConnectionState()
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, SinkMessage{From: ss.from, Rcpts: append([]string(nil), ss.to...), Data: b, TLS: tlsOn, User: ss.user, Helo: ss.c.Hostname()})
	if ss.s.more != nil {
		close(ss.s.more)
		ss.s.more = nil
	}
	ss.s.mu.Unlock()
	return nil
}

func (ss *sinkSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *sinkSession) Logout() error { return nil }

// HasRcpt says whether m was addressed to addr.
func (m SinkMessage) HasRcpt(addr string) bool {
	for _, r := range m.Rcpts {
		if strings.EqualFold(r, addr) {
			return true
		}
	}
	return false
}
