package api

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// TestOpenAPIDocument loads the embedded document with kin-openapi as
// OpenAPI 3.1 and validates it, and keeps docs/openapi.json identical.
func TestOpenAPIDocument(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI())
	if err != nil {
		t.Fatalf("loading: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi = %q, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("validating: %v", err)
	}
	docs, err := os.ReadFile("../../docs/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(docs, OpenAPI()) {
		t.Fatal("docs/openapi.json differs from pkg/api/openapi.json: copy pkg/api/openapi.json over it")
	}
	// Every operation but the document itself names its scope, and the
	// scope is one a token can carry.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.Security == nil {
				t.Errorf("%s %s: no security requirement of its own", method, path)
				continue
			}
			// Only the document itself and CORS preflights (which a
			// browser sends without credentials) are open.
			if path == "/api/v1/openapi.json" || method == "OPTIONS" {
				if len(*op.Security) != 0 {
					t.Errorf("%s %s: should need no token", method, path)
				}
				continue
			}
			if len(*op.Security) == 0 {
				t.Errorf("%s %s: needs no token", method, path)
			}
			for _, req := range *op.Security {
				for _, s := range req["bearer"] {
					if !slices.Contains(Scopes, s) {
						t.Errorf("%s %s: scope %q is not one of %v", method, path, s, Scopes)
					}
				}
				if len(req["bearer"]) != 1 {
					t.Errorf("%s %s: want exactly one scope, got %v", method, path, req)
				}
			}
			for _, code := range []string{"401", "403"} {
				if op.Responses.Value(code) == nil {
					t.Errorf("%s %s: no %s response documented", method, path, code)
				}
			}
		}
	}
}

func TestOpenAPIHandler(t *testing.T) {
	rec := httptest.NewRecorder()
	OpenAPIHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/openapi.json", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" || !bytes.Equal(rec.Body.Bytes(), openAPI) {
		t.Fatalf("%d %q, %d bytes", rec.Code, rec.Header().Get("Content-Type"), rec.Body.Len())
	}
}
