package events

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/sealgate/sealgate/pkg/api"
	"github.com/sealgate/sealgate/pkg/store"
)

// Page sizes of GET /api/v1/events.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Reader reads stored delivery events; *store.Store satisfies it.
type Reader interface {
	DeliveryEvents(ctx context.Context, f store.EventFilter) ([]store.DeliveryEvent, error)
}

// API serves GET /api/v1/events: the stored delivery events, oldest first,
// paged by a cursor (the last id seen). Wrap it in api.Authenticator.Require
// with api.ScopeEventsRead.
type API struct {
	Events Reader
	Log    *slog.Logger
	// Timeout bounds the store read per request (default 10 s).
	Timeout time.Duration
}

// EventJSON is one event as the API shows it. Every field is always
// present (empty when unknown), so a SIEM's schema does not change with
// the outcome; tls is null when the hop's TLS is unknown or there was no
// hop (held, the outbox directory).
type EventJSON struct {
	ID        string `json:"id"`
	Time      string `json:"time"`
	QueueID   string `json:"queue_id"`
	MessageID string `json:"message_id"`
	Sender    string `json:"sender"`
	Recipient string `json:"recipient"`
	Outcome   string `json:"outcome"`
	Method    string `json:"method"`
	Rule      string `json:"rule"`
	TLS       *TLS   `json:"tls"`
	Reason    string `json:"reason"`
	Attempt   int    `json:"attempt"`
	Signed    bool   `json:"signed"`
	Node      string `json:"node"`
}

// PageJSON is the answer of GET /api/v1/events.
type PageJSON struct {
	Events []EventJSON `json:"events"`
	// Next is the cursor for the next request: the last id returned, or
	// the cursor given when the page is empty ("0" without one).
	Next string `json:"next"`
}

// query is a parsed, checked request.
type query struct {
	filter store.EventFilter
	cursor string
}

// queryParams are the parameters the route knows.
var queryParams = []string{"after", "limit", "since", "until", "recipient", "queue_id", "outcome"}

// maxParamLen bounds every parameter value: an address is at most 254
// octets in practice, a queue id 64, an outcome list under 100.
const maxParamLen = 320

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q, bad := parseQuery(r.URL.RawQuery)
	if bad != nil {
		api.InvalidParam(w, bad.name, bad.reason)
		return
	}
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	evs, err := a.Events.DeliveryEvents(ctx, q.filter)
	if err != nil {
		a.logger().Error("api: reading delivery events", "err", err)
		api.Problem(w, http.StatusServiceUnavailable, "store unavailable", "the events cannot be read right now; try again with the same cursor")
		return
	}
	page := PageJSON{Events: make([]EventJSON, 0, len(evs)), Next: q.cursor}
	for _, e := range evs {
		page.Events = append(page.Events, toJSON(e))
	}
	if n := len(evs); n > 0 {
		page.Next = strconv.FormatInt(evs[n-1].ID, 10)
	}
	api.JSON(w, page)
}

func (a *API) logger() *slog.Logger {
	if a.Log != nil {
		return a.Log
	}
	return slog.Default()
}

func toJSON(e store.DeliveryEvent) EventJSON {
	j := EventJSON{ID: strconv.FormatInt(e.ID, 10), Time: e.Time.UTC().Format(time.RFC3339Nano), QueueID: e.QueueID,
		MessageID: e.MessageID, Sender: e.Sender, Recipient: e.Recipient, Outcome: e.Outcome, Method: e.Method,
		Rule: e.Rule, Reason: e.Reason, Attempt: e.Attempt, Signed: e.Signed, Node: e.Node}
	if e.TLS != "" {
		var t TLS
		// The recorder wrote it; a row that does not parse shows as
		// unknown rather than failing the page.
		if json.Unmarshal([]byte(e.TLS), &t) == nil {
			j.TLS = &t
		}
	}
	return j
}

// badParam names the parameter a request got wrong and what to do.
type badParam struct{ name, reason string }

// parseQuery checks the query string strictly: every parameter known, none
// given twice, every value well-formed. A poller that sends something we
// do not understand gets told, rather than a page filtered differently
// from what it meant (an ignored "recipent=" would return everything).
func parseQuery(raw string) (query, *badParam) {
	q := query{filter: store.EventFilter{Limit: DefaultLimit}, cursor: "0"}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return q, &badParam{"query", "the query string is malformed (" + err.Error() + "): percent-encode values and separate parameters with &"}
	}
	for name, vs := range vals {
		if name == "" {
			return q, &badParam{"query", "a parameter without a name; write name=value"}
		}
		if !slices.Contains(queryParams, name) {
			return q, &badParam{printable(name), "unknown parameter; the known ones are " + strings.Join(queryParams, ", ")}
		}
		if len(vs) > 1 {
			return q, &badParam{name, "given more than once; give it once"}
		}
		if len(vs[0]) > maxParamLen {
			return q, &badParam{name, fmt.Sprintf("longer than %d characters", maxParamLen)}
		}
	}
	get := func(name string) (string, bool) {
		vs, ok := vals[name]
		if !ok {
			return "", false
		}
		return vs[0], true
	}
	if v, ok := get("after"); ok {
		id, ok := parseCursor(v)
		if !ok {
			return q, &badParam{"after", "not a cursor: pass the \"next\" value of the previous page unchanged (or leave it out to start at the oldest event)"}
		}
		q.filter.After, q.cursor = id, v
	}
	if v, ok := get("limit"); ok {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil || !isDigits(v):
			return q, &badParam{"limit", fmt.Sprintf("not a whole number; use 1 to %d", MaxLimit)}
		case n < 1:
			return q, &badParam{"limit", fmt.Sprintf("must be at least 1; use 1 to %d", MaxLimit)}
		case n > MaxLimit:
			return q, &badParam{"limit", fmt.Sprintf("more than %d; ask for at most %d events per page and follow \"next\"", MaxLimit, MaxLimit)}
		}
		q.filter.Limit = n
	}
	for _, p := range []struct {
		name string
		to   *time.Time
	}{{"since", &q.filter.Since}, {"until", &q.filter.Until}} {
		if v, ok := get(p.name); ok {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return q, &badParam{p.name, "not an RFC 3339 time; write e.g. 2026-01-31T23:00:00Z (percent-encode a + offset as %2B)"}
			}
			*p.to = t
		}
	}
	if !q.filter.Since.IsZero() && !q.filter.Until.IsZero() && !q.filter.Until.After(q.filter.Since) {
		return q, &badParam{"until", "not after since: the range since ≤ time < until is empty; swap them?"}
	}
	if v, ok := get("recipient"); ok {
		if v == "" || !strings.Contains(v, "@") || hasControl(v) {
			return q, &badParam{"recipient", "not an address; give one recipient address, e.g. bob@partner.example"}
		}
		q.filter.Recipient = v
	}
	if v, ok := get("queue_id"); ok {
		if v == "" || len(v) > 64 || !isLowerHex(v) {
			return q, &badParam{"queue_id", "not a queue id (lower-case hex, as in an event's queue_id or sealgate queue list)"}
		}
		q.filter.QueueID = v
	}
	if v, ok := get("outcome"); ok {
		for o := range strings.SplitSeq(v, ",") {
			switch {
			case !slices.Contains(Outcomes, o):
				return q, &badParam{"outcome", fmt.Sprintf("%q is not an outcome; use a comma list of %s", printable(o), strings.Join(Outcomes, ", "))}
			case slices.Contains(q.filter.Outcomes, o):
				return q, &badParam{"outcome", fmt.Sprintf("%q is listed twice", o)}
			}
			q.filter.Outcomes = append(q.filter.Outcomes, o)
		}
	}
	return q, nil
}

// parseCursor accepts what "next" gives: a decimal event id without sign,
// leading zeros or anything else around it.
func parseCursor(s string) (int64, bool) {
	if s == "" || len(s) > 19 || !isDigits(s) || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	id, err := strconv.ParseInt(s, 10, 64)
	return id, err == nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == unicode.ReplacementChar })
}

// printable quotes what a caller sent for an error message: control
// characters escaped, at most 64 characters.
func printable(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	q := strconv.QuoteToASCII(s)
	return q[1 : len(q)-1]
}
