package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/pkg/api"
	"github.com/sealgate/sealgate/pkg/config"
)

// TestAPITokenCLI: create prints the token once (and stores only its
// hash), list never shows it, revoke makes it invalid, and bad input
// exits 2 with what to do.
func TestAPITokenCLI(t *testing.T) {
	_, conf := pdfTestEnv(t)
	code, stdout, stderr := pdfRunCLI(nil, "api", "token", "create", "siem", "--scope", "events:read", "--config", conf)
	if code != 0 {
		t.Fatalf("create: exit %d: %s", code, stderr)
	}
	token := strings.TrimSpace(stdout)
	if !strings.HasPrefix(token, "sgt_") {
		t.Fatalf("create printed %q", stdout)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"api", "token", "create", "siem", "--scope", "events:read"}, "exists already"},
		{[]string{"api", "token", "create", "x", "--scope", "events:write"}, `unknown scope "events:write"`},
		{[]string{"api", "token", "create", "x"}, "--scope is required"},
		{[]string{"api", "token", "create", "a b", "--scope", "events:read"}, "not allowed"},
		{[]string{"api", "token", "revoke", "nobody"}, `no valid token named "nobody"`},
	} {
		code, _, stderr := pdfRunCLI(nil, append(tc.args, "--config", conf)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	code, stdout, stderr = pdfRunCLI(nil, "api", "token", "list", "--output", "json", "--config", conf)
	if code != 0 || strings.Contains(stdout, token) || strings.Contains(stdout, api.HashToken(token)) {
		t.Fatalf("list: exit %d, %s %s", code, stdout, stderr)
	}
	var list []apiTokenJSON
	if err := json.Unmarshal([]byte(stdout), &list); err != nil || len(list) != 1 || list[0].Name != "siem" || !list[0].RevokedAt.IsZero() {
		t.Fatalf("list: %s (%v)", stdout, err)
	}

	cfg, err := config.Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := openStore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := st.APITokenByHash(context.Background(), api.HashToken(token))
	st.Close()
	if err != nil || tok.Name != "siem" {
		t.Fatalf("the printed token is not the stored one: %+v, %v", tok, err)
	}

	if code, _, stderr = pdfRunCLI(nil, "api", "token", "revoke", "siem", "--config", conf); code != 0 {
		t.Fatalf("revoke: exit %d: %s", code, stderr)
	}
	code, stdout, _ = pdfRunCLI(nil, "api", "token", "list", "--config", conf)
	if code != 0 || !strings.Contains(stdout, "revoked") {
		t.Fatalf("list after revoke: %s", stdout)
	}
}
