package api

import (
	"encoding/json"
	"net/http"
)

// InvalidParam answers 400 problem+json for a query parameter the caller
// got wrong, naming it in the detail and, for programs, in the
// "invalid-params" extension member (the shape of RFC 9457's example).
// reason must be safe to show (it may quote what the caller sent).
func InvalidParam(w http.ResponseWriter, name, reason string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusBadRequest)
	type param struct {
		Name   string `json:"name"`
		Reason string `json:"reason"`
	}
	_ = json.NewEncoder(w).Encode(struct {
		Type          string  `json:"type"`
		Title         string  `json:"title"`
		Status        int     `json:"status"`
		Detail        string  `json:"detail"`
		InvalidParams []param `json:"invalid-params"`
	}{"about:blank", "invalid parameter", http.StatusBadRequest, "parameter " + name + ": " + reason,
		[]param{{name, reason}}})
}
