package portal

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/pdfmail"
	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

type sentMail struct {
	from string
	to   []string
	data []byte
}

type fakeMailer struct {
	mu   sync.Mutex
	sent []sentMail
	err  error
}

func (m *fakeMailer) Send(_ context.Context, from string, to []string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	m.sent = append(m.sent, sentMail{from, to, data})
	return nil
}

func (m *fakeMailer) all() []sentMail {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]sentMail(nil), m.sent...)
}

// waitMails waits (for the reset goroutine) until n mails are queued.
func (m *fakeMailer) waitMails(t testing.TB, n int) []sentMail {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(m.all()) < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return m.all()
}

type fakeWaker struct {
	mu    sync.Mutex
	ready []string
}

func (w *fakeWaker) RecipientReady(_ context.Context, email string) {
	w.mu.Lock()
	w.ready = append(w.ready, email)
	w.mu.Unlock()
}

// fakeOutbox reads a reply to the end as the spool does, and keeps it
// only when it could read all of it (a read error queues nothing).
type fakeOutbox struct {
	mu      sync.Mutex
	replies []sentMail
}

func (o *fakeOutbox) QueueReply(_ context.Context, from, to string, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.replies = append(o.replies, sentMail{from, []string{to}, b})
	return nil
}

func (o *fakeOutbox) all() []sentMail {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]sentMail(nil), o.replies...)
}

type fixture struct {
	srv    *Server
	st     *store.Store
	mailer *fakeMailer
	waker  *fakeWaker
	outbox *fakeOutbox
	h      http.Handler
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	k := make([]byte, secret.KeySize)
	_, _ = rand.Read(k)
	kr, err := secret.NewKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), store.Options{Driver: "sqlite", Path: filepath.Join(t.TempDir(), "s.db"), Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, mailer: &fakeMailer{}, waker: &fakeWaker{}, outbox: &fakeOutbox{}}
	f.srv, err = New(&Server{Store: st, Mailer: f.mailer, Waker: f.waker, Outbox: f.outbox, MaxReplyBytes: testMaxReply,
		BaseURL:  "https://secure.example.test/",
		Language: "en", TTL: time.Hour, MinLength: 10, Hostname: "gw.example.test",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f.h = f.srv.Handler()
	return f
}

var linkRE = regexp.MustCompile(`https://secure\.example\.test/p/([A-Za-z0-9_-]{43})`)

// invite runs the password source for rcpt (as the pipeline would) and
// returns the token from the invitation it queued.
func (f *fixture) invite(t testing.TB, rcpt, sender string) string {
	t.Helper()
	before := len(f.mailer.all())
	found, err := f.srv.PasswordSource().Lookup(context.Background(), pdfmail.Query{Sender: sender, SenderIsUser: true, Recipient: rcpt, Subject: "Q3 merger", CleanSubject: "Q3 merger"})
	if err != nil || !found.Pending {
		t.Fatalf("Lookup = %v, %v; want Pending", found, err)
	}
	mails := f.mailer.all()
	if len(mails) != before+1 {
		t.Fatalf("%d invitations queued, want 1", len(mails)-before)
	}
	return tokenIn(t, mails[len(mails)-1].data)
}

func tokenIn(t testing.TB, data []byte) string {
	t.Helper()
	m := linkRE.FindSubmatch(textOf(t, data))
	if m == nil {
		t.Fatalf("no portal link in the mail:\n%s", data)
	}
	return string(m[1])
}

// textOf decodes the text/plain part of a portal mail.
func textOf(t testing.TB, data []byte) []byte { return partOf(t, data, "text/plain") }

// partOf decodes the part of type ct of a portal mail.
func partOf(t testing.TB, data []byte, ct string) []byte {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("no %s part: %v", ct, err)
		}
		if strings.HasPrefix(p.Header.Get("Content-Type"), ct) {
			b, _ := io.ReadAll(p) // multipart decodes quoted-printable
			return b
		}
	}
}

// client is one browser: its address and cookies.
type client struct {
	addr    string
	cookies map[string]*http.Cookie
	header  http.Header
}

func newClient(addr string) *client {
	return &client{addr: addr + ":40000", cookies: map[string]*http.Cookie{}, header: http.Header{}}
}

func (c *client) do(h http.Handler, method, path string, form url.Values) *httptest.ResponseRecorder {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, "https://secure.example.test"+path, body)
	r.RemoteAddr = c.addr
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range c.header {
		r.Header[k] = v
	}
	for _, ck := range c.cookies {
		r.AddCookie(ck)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	for _, ck := range w.Result().Cookies() {
		c.cookies[ck.Name] = ck
	}
	return w
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t testing.TB, w *httptest.ResponseRecorder) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(w.Body.String())
	if m == nil {
		t.Fatalf("no csrf field in the page (%d):\n%s", w.Code, w.Body)
	}
	return m[1]
}

// choose opens the link and submits pw twice, returning the answer.
func (c *client) choose(t testing.TB, h http.Handler, token, pw, confirm string) *httptest.ResponseRecorder {
	t.Helper()
	get := c.do(h, "GET", "/p/"+token, nil)
	if get.Code != http.StatusOK {
		t.Fatalf("GET /p/: %d\n%s", get.Code, get.Body)
	}
	return c.do(h, "POST", "/p/"+token, url.Values{"csrf": {csrfOf(t, get)}, "password": {pw}, "confirm": {confirm}})
}
