// Package apitest checks live HTTP answers against sealgate's OpenAPI
// document with kin-openapi, for the tests of every /api/v1 route.
package apitest

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/sealgate/sealgate/pkg/api"
)

// Validator holds the loaded document and its router.
type Validator struct {
	doc    *openapi3.T
	router routers.Router
}

// New loads and validates the embedded document (failing t if it does
// not load).
func New(t testing.TB) *Validator {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI())
	if err != nil {
		t.Fatalf("apitest: loading the OpenAPI document: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("apitest: the OpenAPI document is invalid: %v", err)
	}
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("apitest: router: %v", err)
	}
	return &Validator{doc: doc, router: r}
}

// Response fails t unless the answer (status, header, body) to req is one
// the document describes for req's route.
func (v *Validator) Response(t testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	t.Helper()
	if err := v.check(req, status, header, body); err != nil {
		t.Errorf("%s %s → %d does not match the OpenAPI document: %v\nbody: %.600s", req.Method, req.URL, status, err, body)
	}
}

// Check is Response as an error (for tests that play a bad answer).
func (v *Validator) Check(req *http.Request, status int, header http.Header, body []byte) error {
	return v.check(req, status, header, body)
}

func (v *Validator) check(req *http.Request, status int, header http.Header, body []byte) error {
	// The router matches on the path; a request made for a live server
	// carries its own host, which the document does not name.
	route, params, err := v.router.FindRoute(req)
	if err != nil {
		return err
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(bytes.Clone(body))
	return openapi3filter.ValidateResponse(context.Background(), in)
}

// Request fails t unless req (with body) is valid for its route; the
// bearer scheme is taken as satisfied (the Authenticator is tested on
// its own).
func (v *Validator) Request(t testing.TB, req *http.Request) {
	t.Helper()
	if err := v.RequestErr(req); err != nil {
		t.Errorf("%s %s: request does not match the OpenAPI document: %v", req.Method, req.URL, err)
	}
}

// RequestErr is Request as an error.
func (v *Validator) RequestErr(req *http.Request) error {
	route, params, err := v.router.FindRoute(req)
	if err != nil {
		return err
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	return openapi3filter.ValidateRequest(context.Background(), in)
}
