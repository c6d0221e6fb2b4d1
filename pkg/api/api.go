// Package api is the access layer of sealgate's internal HTTP API: bearer
// tokens with scopes, and errors as RFC 9457 problem details. The routes
// themselves (events, capability, ...) live with what they serve and are
// wrapped by Authenticator.Require.
//
// A token is "sgt_" followed by 32 random bytes in base64url. Only its
// SHA-256 is stored, so a copy of the database lets nobody call the API.
package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sealgate/sealgate/pkg/store"
)

// Scopes a token can carry.
const (
	ScopeEventsRead     = "events:read"
	ScopeCapabilityRead = "capability:read"
)

// Scopes lists every scope, for validation and help texts.
var Scopes = []string{ScopeEventsRead, ScopeCapabilityRead}

const tokenPrefix = "sgt_"

// NewToken returns a fresh token and the hash to store for it.
func NewToken() (token, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("api: generating a token: %w", err)
	}
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token), nil
}

// HashToken is the stored form of a token: SHA-256, hex. The token has
// 256 random bits, so a plain hash (no salt, no stretching) suffices and
// lets the store find it by an index.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// ParseScopes splits a comma-separated scope list and refuses unknown or
// repeated scopes.
func ParseScopes(list string) ([]string, error) {
	var out []string
	for s := range strings.SplitSeq(list, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(Scopes, s) {
			return nil, fmt.Errorf("unknown scope %q: use %s", s, strings.Join(Scopes, ", "))
		}
		if slices.Contains(out, s) {
			return nil, fmt.Errorf("scope %q given twice", s)
		}
		out = append(out, s)
	}
	return out, nil
}

// TokenStore finds tokens by hash; *store.Store satisfies it.
type TokenStore interface {
	APITokenByHash(ctx context.Context, hash string) (store.APIToken, error)
	TouchAPIToken(ctx context.Context, name string, at time.Time) error
}

// Authenticator checks bearer tokens against the store.
type Authenticator struct {
	Tokens TokenStore
	Log    *slog.Logger
	// Timeout bounds the store lookup per request (default 5 s).
	Timeout time.Duration
}

type tokenKey struct{}

// TokenName returns the name of the token that authenticated the request
// ("" outside Require).
func TokenName(ctx context.Context) string {
	s, _ := ctx.Value(tokenKey{}).(string)
	return s
}

// Require serves h only to requests with a valid token carrying scope:
// 401 without one (or with a revoked or unknown one), 403 when the scope
// is missing. The answers do not say which tokens exist.
func (a *Authenticator) Require(scope string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, err := bearer(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sealgate"`)
			Problem(w, http.StatusUnauthorized, "token required", err.Error())
			return
		}
		timeout := a.Timeout
		if timeout <= 0 {
			timeout = 5 * time.Second
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		t, err := a.Tokens.APITokenByHash(ctx, HashToken(token))
		switch {
		case errors.Is(err, store.ErrNotFound) || (err == nil && !t.RevokedAt.IsZero()):
			w.Header().Set("WWW-Authenticate", `Bearer realm="sealgate", error="invalid_token"`)
			Problem(w, http.StatusUnauthorized, "invalid token", "the token is unknown or revoked")
			return
		case err != nil:
			a.logger().Error("api: looking up a token", "err", err)
			Problem(w, http.StatusServiceUnavailable, "store unavailable", "tokens cannot be checked right now; try again")
			return
		}
		if !slices.Contains(t.Scopes, scope) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sealgate", error="insufficient_scope", scope="`+scope+`"`)
			Problem(w, http.StatusForbidden, "insufficient scope", "this route needs a token with scope "+scope)
			return
		}
		if err := a.Tokens.TouchAPIToken(ctx, t.Name, time.Now()); err != nil {
			a.logger().Warn("api: recording token use", "token", t.Name, "err", err)
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tokenKey{}, t.Name)))
	})
}

func (a *Authenticator) logger() *slog.Logger {
	if a.Log != nil {
		return a.Log
	}
	return slog.Default()
}

// bearer reads the one Authorization header: two of them (which proxies
// may merge or split differently) or a scheme other than Bearer is refused
// rather than guessed at.
func bearer(r *http.Request) (string, error) {
	vals := r.Header.Values("Authorization")
	switch {
	case len(vals) == 0:
		return "", errors.New("send the token as Authorization: Bearer <token>")
	case len(vals) > 1:
		return "", errors.New("more than one Authorization header")
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errors.New("the Authorization header must use the Bearer scheme")
	}
	token = strings.TrimSpace(token)
	if !strings.HasPrefix(token, tokenPrefix) || len(token) != len(tokenPrefix)+43 || strings.ContainsAny(token, " \t") {
		return "", errors.New("the bearer token is malformed")
	}
	return token, nil
}

// Problem writes an RFC 9457 problem+json answer. detail must be safe to
// show to the caller (no secrets, no internals).
func Problem(w http.ResponseWriter, status int, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail,omitempty"`
	}{"about:blank", title, status, detail})
}

// JSON writes v as a 200 application/json answer.
func JSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}
