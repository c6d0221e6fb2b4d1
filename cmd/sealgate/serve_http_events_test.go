package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/sealgate/sealgate/internal/apitest"
	"github.com/sealgate/sealgate/pkg/api"
	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/store"
)

// TestInternalMuxAPI drives the internal listener's mux over a real
// loopback HTTP server: the document needs no token, the events route
// wants one with events:read, every answer matches the OpenAPI document,
// and every documented route is routed.
func TestInternalMuxAPI(t *testing.T) {
	_, conf := pdfTestEnv(t)
	cfg, err := config.Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt, _, _, pipeline := servePieces(t, ctx, cfg, slog.New(slog.DiscardHandler))
	evTok, evHash, _ := api.NewToken()
	capTok, capHash, _ := api.NewToken()
	for _, tk := range []store.APIToken{{Name: "siem", Hash: evHash, Scopes: []string{api.ScopeEventsRead}},
		{Name: "addin", Hash: capHash, Scopes: []string{api.ScopeCapabilityRead}}} {
		if err := rt.store.CreateAPIToken(ctx, tk); err != nil {
			t.Fatal(err)
		}
	}
	(&events.Recorder{Store: rt.store, Logger: slog.New(slog.DiscardHandler)}).Record(ctx,
		events.Delivery{QueueID: "19a3f", Sender: "a@example.org", Recipient: "b@partner.example", Outcome: events.Accepted})
	srv := httptest.NewServer(internalMux(internalHTTP{rt: rt, log: slog.New(slog.DiscardHandler),
		capability: newCapabilityHandler(pipeline, slog.New(slog.DiscardHandler))}))
	defer srv.Close()
	v := apitest.New(t)

	call := func(method, path, token string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusNotFound {
			v.Response(t, req, resp.StatusCode, resp.Header, body)
		}
		return resp.StatusCode, body
	}
	tests := []struct {
		name, path, token string
		want              int
	}{
		{"document without token", "/api/v1/openapi.json", "", 200},
		{"events without token", "/api/v1/events", "", 401},
		{"events with a forged token", "/api/v1/events", "sgt_" + strings.Repeat("A", 43), 401},
		{"events with the wrong scope", "/api/v1/events", capTok, 403},
		{"events", "/api/v1/events?limit=10", evTok, 200},
		{"events, bad parameter after auth", "/api/v1/events?limit=5000", evTok, 400},
		// The capability API's answers are checked against the document too.
		{"capability", "/api/v1/recipients/b%40partner.example/capability?sender=alice%40example.org", capTok, 200},
		{"capability, a look-alike address", "/api/v1/recipients/b%40p%D0%B0rtner.example/capability?sender=alice%40example.org", capTok, 400},
		{"capability with the events scope", "/api/v1/recipients/b%40partner.example/capability?sender=alice%40example.org", evTok, 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := call(http.MethodGet, tc.path, tc.token)
			if code != tc.want {
				t.Fatalf("%d, want %d: %s", code, tc.want, body)
			}
			if strings.Contains(string(body), evTok) || strings.Contains(string(body), capTok) {
				t.Fatal("a token in the answer")
			}
		})
	}
	// The batch route, validated against the document as well.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/capability",
		strings.NewReader(`{"sender":"alice@example.org","recipients":["b@partner.example","c@partner.example"]}`))
	req.Header.Set("Authorization", "Bearer "+capTok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	batch, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/v1/capability: %d %s", resp.StatusCode, batch)
	}
	v.Response(t, req, resp.StatusCode, resp.Header, batch)

	_, body := call(http.MethodGet, "/api/v1/events", evTok)
	var p events.PageJSON
	if err := json.Unmarshal(body, &p); err != nil || len(p.Events) != 1 || p.Events[0].Outcome != "accepted" || p.Next != p.Events[0].ID {
		t.Fatalf("page %s (%v)", body, err)
	}

	// Every documented operation is routed: without a token it is
	// refused by auth (or served, for the document), never the mux's
	// "no such route".
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			key := method + " " + path
			code, body := call(method, strings.ReplaceAll(path, "{address}", "b%40partner.example"), "")
			if code == http.StatusNotFound || code == http.StatusMethodNotAllowed {
				t.Errorf("%s is documented but not routed: %d %s", key, code, body)
			}
		}
	}
	// And what is not documented is not routed.
	for _, path := range []string{"/api/v1/event", "/api/v1/events/1", "/api/v2/events", "/api/v1/tokens"} {
		if code, _ := call(http.MethodGet, path, evTok); code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, code)
		}
	}
}
