package api

import (
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3.1 description of every /api/v1 route. It is the
// canonical copy; docs/openapi.json is kept identical by a test.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3.1 document (a copy).
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

// OpenAPIHandler serves the document at GET /api/v1/openapi.json. It needs
// no token: it describes the routes, never data, and tools fetch it before
// anyone has created a token for them. The internal listener only.
func OpenAPIHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(openAPI)
	})
}
