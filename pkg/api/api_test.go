package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	dir := t.TempDir()
	kr, err := secret.LoadOrCreateKeyring(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), store.Options{Driver: "sqlite", Path: filepath.Join(dir, "sealgate.db"), Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestParseScopes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"events:read", "[events:read]", true},
		{"events:read, capability:read", "[events:read capability:read]", true},
		{"events:write", "", false},
		{"events:read,events:read", "", false},
		{"", "", false},
	} {
		got, err := ParseScopes(tc.in)
		if (err == nil) != tc.ok || (tc.ok && strings.Join(got, " ") != strings.Trim(tc.want, "[]")) {
			t.Errorf("ParseScopes(%q) = %v, %v", tc.in, got, err)
		}
	}
}

// TestRequire plays callers without, with forged, revoked and
// under-scoped tokens: only a valid token with the route's scope gets
// through, and every refusal is problem+json without the token in it.
func TestRequire(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	events, evHash, _ := NewToken()
	capOnly, capHash, _ := NewToken()
	revoked, revHash, _ := NewToken()
	for _, tk := range []store.APIToken{
		{Name: "siem", Hash: evHash, Scopes: []string{ScopeEventsRead}},
		{Name: "addin", Hash: capHash, Scopes: []string{ScopeCapabilityRead}},
		{Name: "old", Hash: revHash, Scopes: []string{ScopeEventsRead}},
	} {
		if err := st.CreateAPIToken(ctx, tk); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.RevokeAPIToken(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	a := &Authenticator{Tokens: st}
	h := a.Require(ScopeEventsRead, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+TokenName(r.Context()))
	}))
	forged, _, _ := NewToken()
	for _, tc := range []struct {
		name   string
		header []string
		status int
	}{
		{"valid", []string{"Bearer " + events}, 200},
		{"scheme case-insensitive", []string{"bearer " + events}, 200},
		{"no header", nil, 401},
		{"basic scheme", []string{"Basic " + events}, 401},
		{"forged token", []string{"Bearer " + forged}, 401},
		{"revoked token", []string{"Bearer " + revoked}, 401},
		{"truncated token", []string{"Bearer " + events[:20]}, 401},
		{"two headers", []string{"Bearer " + events, "Bearer " + forged}, 401},
		{"wrong scope", []string{"Bearer " + capOnly}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/api/v1/events", nil)
			for _, v := range tc.header {
				req.Header.Add("Authorization", v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			body := rec.Body.String()
			if tc.status == 200 {
				if body != "hello siem" {
					t.Fatalf("body %q", body)
				}
				return
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("content type %q", ct)
			}
			var p struct {
				Title  string
				Status int
			}
			if err := json.Unmarshal([]byte(body), &p); err != nil || p.Status != tc.status || p.Title == "" {
				t.Fatalf("problem %s (%v)", body, err)
			}
			for _, tok := range []string{events, capOnly, revoked, forged} {
				if strings.Contains(body, tok) || strings.Contains(rec.Header().Get("WWW-Authenticate"), tok) {
					t.Fatal("a token is echoed in the refusal")
				}
			}
			if rec.Header().Get("WWW-Authenticate") == "" {
				t.Fatal("no WWW-Authenticate challenge")
			}
		})
	}
	list, _ := st.APITokens(ctx)
	for _, tk := range list {
		if tk.Name == "siem" && tk.LastUsedAt.IsZero() {
			t.Error("the use of siem was not recorded")
		}
		if tk.Name == "addin" && !tk.LastUsedAt.IsZero() {
			t.Error("a refused token was recorded as used")
		}
	}
}

func TestTokenHashIsNotTheToken(t *testing.T) {
	tok, hash, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != len(tokenPrefix)+43 || !strings.HasPrefix(tok, tokenPrefix) || len(hash) != 64 || strings.Contains(hash, tok[len(tokenPrefix):]) {
		t.Fatalf("token %q hash %q", tok, hash)
	}
	if HashToken(tok) != hash {
		t.Fatal("hash not deterministic")
	}
	other, _, _ := NewToken()
	if other == tok {
		t.Fatal("two tokens alike")
	}
}
