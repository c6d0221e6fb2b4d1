package portal

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/sealgate/sealgate/pkg/store"
)

// pageData is what every page template gets; values from mails (Sender,
// Email) are inserted by html/template, escaped for their context.
type pageData struct {
	L         lang
	Token     string
	CSRF      string
	Email     string
	Sender    string
	Reset     bool
	Problem   string
	Rule      string
	MinLength int
	Text      string
	Subject   string // a reply's original subject
	// HideSubject leaves the subject line off the reply page.
	HideSubject bool
	MaxSize     string // the largest reply, for people
}

// maxFormBytes bounds a form post (two passwords and a token).
const maxFormBytes = 16 << 10

// csrfCookie is the double-submit cookie: __Host- pins it to this origin,
// over HTTPS, for the whole path.
const csrfCookie = "__Host-sealgate-csrf"

// freeFailures are the failures per key before the delay starts; it then
// doubles from one second up to an hour.
const freeFailures = 5

func lockDelay(n int) time.Duration {
	if n < freeFailures {
		return 0
	}
	return min(time.Second<<min(n-freeFailures, 12), time.Hour)
}

// page renders a whole page into a buffer first, so that a template
// failure gives the neutral error page rather than half a page.
func (s *Server) page(w http.ResponseWriter, status int, name string, d pageData) {
	d.L = s.lang()
	var b bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&b, "layout", d); err != nil {
		s.Log.Error("portal: rendering a page", "page", name, "err", err)
		b.Reset()
		status = http.StatusInternalServerError
		if err := s.pages["error"].ExecuteTemplate(&b, "layout", pageData{L: d.L}); err != nil {
			http.Error(w, "error", status)
			return
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func (s *Server) home(w http.ResponseWriter, _ *http.Request) {
	s.page(w, http.StatusOK, "home", pageData{})
}

// clientKey is the lockout key of the client's address. The portal sees
// the TCP peer: behind a reverse proxy that is the proxy, which then
// shares one lockout (fail closed rather than trusting a header anyone
// can write).
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "addr:" + host
}

// blocked says whether any of keys is locked out; a store failure counts
// as blocked (fail closed).
func (s *Server) blocked(ctx context.Context, keys ...string) bool {
	for _, k := range keys {
		until, err := s.Store.PortalBlockedUntil(ctx, k)
		if err != nil {
			s.Log.Error("portal: reading the lockout", "err", err)
			return true
		}
		if !until.IsZero() {
			return true
		}
	}
	return false
}

func (s *Server) fail(ctx context.Context, keys ...string) {
	for _, k := range keys {
		if _, _, err := s.Store.AddPortalFailure(ctx, k, lockDelay); err != nil {
			s.Log.Error("portal: counting a failed attempt", "err", err)
		}
	}
}

// token reads the token of a /p/ or /r/ request, which must be one of
// kinds: the live token and its hash,
// or ok=false with the answer already written (the same neutral page for
// malformed, unknown, used, expired and foreign tokens).
func (s *Server) token(w http.ResponseWriter, r *http.Request, kinds ...string) (t store.PortalToken, hash string, ok bool) {
	ctx, addr := r.Context(), clientKey(r)
	if s.blocked(ctx, addr) {
		s.page(w, http.StatusTooManyRequests, "blocked", pageData{})
		return t, "", false
	}
	hash, err := tokenHash(r.PathValue("token"))
	if err == nil {
		t, err = s.Store.LivePortalToken(ctx, hash)
		if err == nil && !slices.Contains(kinds, t.Kind) {
			err = store.ErrNotFound
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, errBadToken), errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrTokenSpent):
		s.fail(ctx, addr)
		s.page(w, http.StatusNotFound, "invalid", pageData{})
		return t, "", false
	default:
		s.Log.Error("portal: reading a token", "err", err)
		s.page(w, http.StatusServiceUnavailable, "error", pageData{})
		return t, "", false
	}
	if s.blocked(ctx, "token:"+hash) {
		s.page(w, http.StatusTooManyRequests, "blocked", pageData{})
		return t, "", false
	}
	return t, hash, true
}

// csrfToken returns the client's CSRF cookie value, setting a new one
// when it has none.
func (s *Server) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && validCSRF(c.Value) {
		return c.Value
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	v := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: v, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	return v
}

func validCSRF(v string) bool {
	b, err := base64.RawURLEncoding.Strict().DecodeString(v)
	return err == nil && len(b) == 32
}

// csrfOK compares the form's token with the cookie's.
func csrfOK(r *http.Request) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || !validCSRF(c.Value) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue("csrf"))) == 1
}

func (s *Server) setData(t store.PortalToken, raw, csrf string) pageData {
	l := s.lang()
	return pageData{Token: raw, CSRF: csrf, Email: t.Email, Sender: t.Sender, Reset: t.Kind == KindReset,
		MinLength: s.MinLength, Rule: l.F("rule", s.MinLength)}
}

func (s *Server) showSet(w http.ResponseWriter, r *http.Request) {
	t, _, ok := s.token(w, r, KindInvite, KindReset)
	if !ok {
		return
	}
	s.page(w, http.StatusOK, "set", s.setData(t, r.PathValue("token"), s.csrfToken(w, r)))
}

func (s *Server) postSet(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.page(w, http.StatusBadRequest, "error", pageData{})
		return
	}
	t, hash, ok := s.token(w, r, KindInvite, KindReset)
	if !ok {
		return
	}
	ctx, addr := r.Context(), clientKey(r)
	if !csrfOK(r) {
		s.fail(ctx, addr)
		s.page(w, http.StatusForbidden, "error", pageData{})
		return
	}
	pw, confirm := r.PostFormValue("password"), r.PostFormValue("confirm")
	if p := checkPassword(pw, confirm, t.Email, s.MinLength); p != pwOK {
		s.fail(ctx, addr, "token:"+hash)
		d := s.setData(t, r.PathValue("token"), s.csrfToken(w, r))
		d.Problem = string(p)
		s.page(w, http.StatusUnprocessableEntity, "set", d)
		return
	}
	t, err := s.Store.SetPDFPasswordWithToken(ctx, hash, t.Kind, []byte(pw), Source)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrTokenSpent):
		// Spent by a concurrent request (another tab, another node).
		s.page(w, http.StatusNotFound, "invalid", pageData{})
		return
	case err != nil:
		s.Log.Error("portal: saving a chosen password", "recipient", t.Email, "err", err)
		s.page(w, http.StatusServiceUnavailable, "error", pageData{})
		return
	}
	if err := s.Store.ClearPortalFailures(ctx, "token:"+hash); err != nil {
		s.Log.Warn("portal: clearing failures", "err", err)
	}
	s.Log.Info("portal: PDF password chosen", "recipient", t.Email, "kind", t.Kind)
	if s.Waker != nil {
		s.Waker.RecipientReady(context.WithoutCancel(ctx), t.Email)
	}
	s.page(w, http.StatusOK, "done", pageData{Reset: t.Kind == KindReset})
}

func (s *Server) showForgot(w http.ResponseWriter, r *http.Request) {
	if s.blocked(r.Context(), clientKey(r), "reset:"+clientKey(r)) {
		s.page(w, http.StatusTooManyRequests, "blocked", pageData{})
		return
	}
	s.page(w, http.StatusOK, "forgot", pageData{CSRF: s.csrfToken(w, r)})
}

// postForgot answers every address the same, at once; the reset link (if
// the address has a password) is made and queued after the answer, so
// neither the page nor its timing tells which addresses are known.
func (s *Server) postForgot(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.page(w, http.StatusBadRequest, "error", pageData{})
		return
	}
	ctx, addr := r.Context(), clientKey(r)
	if s.blocked(ctx, addr, "reset:"+addr) {
		s.page(w, http.StatusTooManyRequests, "blocked", pageData{})
		return
	}
	if !csrfOK(r) {
		s.fail(ctx, addr)
		s.page(w, http.StatusForbidden, "error", pageData{})
		return
	}
	// Every request counts: a few are free, then they slow down (no
	// mail-bombing a mailbox, no bulk probing).
	s.fail(ctx, "reset:"+addr)
	email := plainAddress(r.PostFormValue("email"))
	if email != "" {
		go s.sendReset(context.WithoutCancel(ctx), email)
	}
	l := s.lang()
	s.page(w, http.StatusOK, "sent", pageData{Text: l.F("sent_text", l.Date(s.Now().Add(s.TTL)))})
}

// plainAddress returns the bare, lower-case address, or "" for anything
// that is not exactly one plain ASCII address.
func plainAddress(in string) string {
	in = strings.TrimSpace(in)
	if in == "" || len(in) > 254 || strings.ContainsAny(in, "<>\"\r\n,; \t") {
		return ""
	}
	for _, c := range []byte(in) {
		if c < 0x21 || c > 0x7e {
			return ""
		}
	}
	a, err := mail.ParseAddress(in)
	if err != nil || a.Address != in || a.Name != "" {
		return ""
	}
	return strings.ToLower(in)
}

// sendReset mails a reset link to email if it has a PDF password and no
// live reset link yet.
func (s *Server) sendReset(ctx context.Context, email string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pw, _, _, err := s.Store.PDFPasswordState(ctx, email)
	clear(pw)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.Log.Error("portal: reset request", "err", err)
		}
		return
	}
	raw, hash, err := newToken()
	if err != nil {
		s.Log.Error("portal: reset request", "err", err)
		return
	}
	now := s.Now()
	added, err := s.Store.AddPortalToken(ctx, store.PortalToken{Hash: hash, Kind: KindReset, Email: email,
		CreatedAt: now, ExpiresAt: now.Add(s.TTL)}, true)
	if err != nil || !added {
		if err != nil {
			s.Log.Error("portal: reset request", "err", err)
		}
		return
	}
	msg, err := s.buildMail(mailReset, email, "", raw, now)
	if err == nil {
		err = s.Mailer.Send(ctx, "", []string{email}, msg)
	}
	if err != nil {
		s.Log.Error("portal: queueing a reset mail", "recipient", email, "err", err)
		_ = s.Store.DeletePortalToken(ctx, hash)
		return
	}
	s.Log.Info("portal: reset link sent", "recipient", email)
}
