// Package portal is the recipient portal: the pages where a recipient of
// PDF mail chooses (and later resets) the password the PDFs open with,
// and the pdfmail.PasswordSource that invites a recipient without one.
//
// It faces the internet on its own listener ([portal] listen) and serves
// only these pages. Every link carries a 256-bit random token; the store
// keeps its SHA-256 only, bound to the recipient, expiring, and spent
// atomically with the password it sets, so any gateway node on the same
// database can serve it. Failed attempts are counted per client address
// and per token in the store, with a growing delay. Forms carry a CSRF
// token (double-submit cookie) behind Go's cross-origin protection, pages
// have a strict CSP without any script, and every value that comes from
// a mail is escaped by html/template.
package portal

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/sealgate/sealgate/pkg/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static/portal.css
var portalCSS []byte

// Store is the part of the store the portal needs (*store.Store).
type Store interface {
	PDFPasswordState(ctx context.Context, email string) (password []byte, source string, announced bool, err error)
	PDFPasswordSetAt(ctx context.Context, email string) (source string, at time.Time, err error)
	AddPortalToken(ctx context.Context, t store.PortalToken, live bool) (added bool, err error)
	LivePortalToken(ctx context.Context, hash string) (store.PortalToken, error)
	DeletePortalToken(ctx context.Context, hash string) error
	SetPDFPasswordWithToken(ctx context.Context, hash, kind string, password []byte, source string) (store.PortalToken, error)
	PortalBlockedUntil(ctx context.Context, key string) (time.Time, error)
	AddPortalFailure(ctx context.Context, key string, delay func(failures int) time.Duration) (int, time.Time, error)
	ClearPortalFailures(ctx context.Context, key string) error
}

// Mailer queues a complete message for delivery (the gateway's queue and
// relay, like its other notices). It returns once the message is durable.
type Mailer interface {
	Send(ctx context.Context, from string, to []string, data []byte) error
}

// Waker is told that a recipient's password is set, so that the messages
// deferred for that recipient are retried at once rather than at their
// next backoff.
type Waker interface {
	RecipientReady(ctx context.Context, email string)
}

// Token kinds.
const (
	KindInvite = "invite"
	KindReset  = "reset"
)

// Source is the password source name written into the store.
const Source = "portal"

// Server is the portal: its handler and its password source.
type Server struct {
	Store  Store
	Mailer Mailer
	Waker  Waker // may be nil
	// Outbox queues secure replies; nil offers none (no reply links).
	Outbox Outbox
	// MaxReplyBytes is smtp.max_message_bytes: the largest reply.
	MaxReplyBytes int64
	// ReplyTTL is pdf.portal_reply_ttl: how long a reply link works.
	ReplyTTL time.Duration
	// HideSubject is pdf.hide_subject: reply links keep no subject, the
	// reply page shows none and a reply's subject is neutral.
	HideSubject bool
	// BaseURL is portal.url, the address written into mails.
	BaseURL string
	// Language is pdf.language (de | en).
	Language string
	// TTL is pdf.portal_token_ttl: how long a link is valid.
	TTL time.Duration
	// MinLength is pdf.min_password_length.
	MinLength int
	// From is the author of reset mails ("" = noreply@Hostname);
	// invitations come from the sender who is waiting.
	From     string
	Hostname string
	Log      *slog.Logger
	Now      func() time.Time

	pages map[string]*template.Template
}

// New checks s and parses the templates.
func New(s *Server) (*Server, error) {
	if s.Store == nil || s.Mailer == nil {
		return nil, fmt.Errorf("portal: a store and a mailer are required")
	}
	if s.BaseURL == "" {
		return nil, fmt.Errorf("portal: portal.url is required")
	}
	if s.TTL <= 0 {
		s.TTL = 7 * 24 * time.Hour
	}
	if s.ReplyTTL <= 0 {
		s.ReplyTTL = 30 * 24 * time.Hour
	}
	if s.MaxReplyBytes <= 0 {
		s.MaxReplyBytes = 50 << 20
	}
	if s.MinLength <= 0 {
		s.MinLength = 10
	}
	if s.Hostname == "" {
		s.Hostname = "sealgate.invalid"
	}
	if s.From == "" {
		s.From = "noreply@" + s.Hostname
	}
	if s.Log == nil {
		s.Log = slog.Default()
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	s.pages = map[string]*template.Template{}
	for _, name := range []string{"set", "done", "invalid", "blocked", "error", "forgot", "sent", "home", "reply", "replied", "toolarge"} {
		t, err := template.ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("portal: template %s: %w", name, err)
		}
		s.pages[name] = t
	}
	return s, nil
}

func (s *Server) lang() lang { return langFor(s.Language) }

func (s *Server) link(raw string) string { return trimSlash(s.BaseURL) + "/p/" + raw }

func trimSlash(u string) string {
	for len(u) > 0 && u[len(u)-1] == '/' {
		u = u[:len(u)-1]
	}
	return u
}

// Handler serves the recipient pages, and nothing else.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /static/portal.css", s.css)
	mux.HandleFunc("GET /p/{token}", s.showSet)
	mux.HandleFunc("POST /p/{token}", s.postSet)
	mux.HandleFunc("GET /r/{token}", s.showReply)
	mux.HandleFunc("POST /r/{token}", s.postReply)
	mux.HandleFunc("GET /reset", s.showForgot)
	mux.HandleFunc("POST /reset", s.postForgot)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.page(w, http.StatusForbidden, "error", pageData{})
	}))
	return securityHeaders(cop.Handler(mux))
}

// securityHeaders are on every answer, errors included.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("Strict-Transport-Security", "max-age=31536000")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		// The token is in the path: no Referer may carry it elsewhere.
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

func (s *Server) css(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	_, _ = w.Write(portalCSS)
}
