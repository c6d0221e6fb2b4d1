package capability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/sealgate/sealgate/pkg/api"
)

// maxBody bounds a POST body: 100 addresses of 254 characters with JSON
// quoting fit in well under 64 KiB.
const maxBody = 64 << 10

// DefaultTimeout bounds one request: a lookup still running then answers
// "unknown". Key servers have their own, shorter timeouts.
const DefaultTimeout = 10 * time.Second

// Handler serves one recipient (GET) and batches (POST). Wrap it with
// api.Authenticator.Require(api.ScopeCapabilityRead, ...).
type Handler struct {
	Service *Service
	// Timeout bounds each request (default DefaultTimeout).
	Timeout time.Duration
}

func (h *Handler) context(r *http.Request) (context.Context, context.CancelFunc) {
	t := h.Timeout
	if t <= 0 {
		t = DefaultTimeout
	}
	return context.WithTimeout(r.Context(), t)
}

// Recipient serves GET /api/v1/recipients/{address}/capability?sender=A.
func (h *Handler) Recipient(w http.ResponseWriter, r *http.Request) {
	addr := r.PathValue("address")
	q := r.URL.Query()
	for k := range q {
		if k != "sender" {
			badRequest(w, &FieldError{Field: k, Msg: "unknown query parameter (only sender)"})
			return
		}
	}
	senders := q["sender"]
	if len(senders) > 1 {
		badRequest(w, &FieldError{Field: "sender", Msg: "given more than once"})
		return
	}
	sender := ""
	if len(senders) == 1 {
		sender = senders[0]
	}
	if err := CheckAddress("sender", sender); err != nil {
		badRequest(w, err)
		return
	}
	if err := CheckAddress("address", addr); err != nil {
		badRequest(w, err)
		return
	}
	ctx, cancel := h.context(r)
	defer cancel()
	api.JSON(w, h.Service.Answer(ctx, sender, []string{addr})[0])
}

// batchRequest is the POST body.
type batchRequest struct {
	Sender     *string   `json:"sender"`
	Recipients *[]string `json:"recipients"`
}

// Batch serves POST /api/v1/capability {"sender", "recipients": [...]}:
// a list of answers in the order asked.
func (h *Handler) Batch(w http.ResponseWriter, r *http.Request) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		api.Problem(w, http.StatusUnsupportedMediaType, "unsupported media type", "send the body as application/json")
		return
	}
	req, err := decodeBatch(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			api.Problem(w, http.StatusRequestEntityTooLarge, "body too large", fmt.Sprintf("at most %d bytes", maxBody))
			return
		}
		badRequest(w, err)
		return
	}
	ctx, cancel := h.context(r)
	defer cancel()
	api.JSON(w, h.Service.Answer(ctx, *req.Sender, *req.Recipients))
}

// decodeBatch reads one JSON object with exactly the two fields, checks
// them, and refuses anything else (unknown fields, trailing data).
func decodeBatch(body io.Reader) (batchRequest, error) {
	var req batchRequest
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return req, err
		}
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field != "" {
			return req, &FieldError{Field: ute.Field, Msg: "wrong type: want " + wantType(ute.Field)}
		}
		return req, &FieldError{Field: "body", Msg: "not a JSON object with sender and recipients: " + sanitize(err.Error())}
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, &FieldError{Field: "body", Msg: "data after the JSON object"}
	}
	if req.Sender == nil {
		return req, &FieldError{Field: "sender", Msg: "required"}
	}
	if err := CheckAddress("sender", *req.Sender); err != nil {
		return req, err
	}
	switch {
	case req.Recipients == nil || len(*req.Recipients) == 0:
		return req, &FieldError{Field: "recipients", Msg: "at least one address is required"}
	case len(*req.Recipients) > MaxBatch:
		return req, &FieldError{Field: "recipients", Msg: fmt.Sprintf("at most %d addresses per request (%d given)", MaxBatch, len(*req.Recipients))}
	}
	for i, a := range *req.Recipients {
		if err := CheckAddress(fmt.Sprintf("recipients[%d]", i), a); err != nil {
			return req, err
		}
	}
	return req, nil
}

func wantType(field string) string {
	if strings.HasPrefix(field, "recipients") && field != "recipients" {
		return "a string"
	}
	if field == "recipients" {
		return "an array of strings"
	}
	return "a string"
}

// sanitize keeps a decoder message printable and short: it may quote the
// caller's bytes back.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < ' ' || c >= 0x7f {
			b[i] = '?'
		}
	}
	if len(b) > 200 {
		b = append(b[:200], "..."...)
	}
	return string(b)
}

func badRequest(w http.ResponseWriter, err error) {
	var fe *FieldError
	if errors.As(err, &fe) {
		// The field may be the caller's own (a query parameter's name).
		api.Problem(w, http.StatusBadRequest, sanitize("invalid "+fe.Field), sanitize(fe.Error()))
		return
	}
	api.Problem(w, http.StatusBadRequest, "invalid request", sanitize(err.Error()))
}
