package api

import (
	"net/http"
	"slices"
)

// CORS lets pages from the listed origins (http.cors_origins) call the
// wrapped API routes from a browser, as the Outlook add-in and the sample
// client page do. Without origins it adds nothing: browsers then refuse
// cross-origin calls themselves. Credentials are the bearer token in the
// Authorization header, never cookies, so Access-Control-Allow-Credentials
// is not sent.
type CORS struct {
	// Origins are exact origins ("https://addin.example.org"); "*" is
	// refused by config validation.
	Origins []string
	// Methods are the methods of the wrapped routes (for preflights).
	Methods string
}

func (c CORS) allowed(origin string) bool {
	return origin != "" && slices.Contains(c.Origins, origin)
}

// Wrap adds Access-Control-Allow-Origin for an allowed Origin to h's
// answers (also to 401/403 problems, so that the page can show them).
func (c CORS) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Origin")
		if origin := r.Header.Get("Origin"); c.allowed(origin) {
			w.Header().Set("Access-Control-Allow-Origin", origin)
		}
		h.ServeHTTP(w, r)
	})
}

// Preflight answers OPTIONS: 204 with the allowed method and headers for
// an allowed origin, 403 (a problem, no CORS headers) for any other, so
// the browser refuses the call.
func (c CORS) Preflight() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if !c.allowed(origin) {
			Problem(w, http.StatusForbidden, "origin not allowed", "this origin is not in http.cors_origins")
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Methods", c.Methods)
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
	})
}
