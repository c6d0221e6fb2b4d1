package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/apitest"
	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

func openStore(t testing.TB) *store.Store {
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

// get calls the handler and checks the answer against the OpenAPI
// document whatever its status.
func get(t *testing.T, v *apitest.Validator, h http.Handler, rawQuery string) (int, []byte) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/api/v1/events", nil)
	req.URL.RawQuery = rawQuery
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	v.Response(t, req, rec.Code, rec.Header(), rec.Body.Bytes())
	return rec.Code, rec.Body.Bytes()
}

func page(t *testing.T, body []byte) events.PageJSON {
	t.Helper()
	var p events.PageJSON
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return p
}

// seed records n events through the Recorder (as the queue does) and
// returns them as recorded.
func seed(t *testing.T, st *store.Store, n int) {
	t.Helper()
	rec := &events.Recorder{Store: st, Node: "gw1.example.org"}
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	outcomes := []string{events.Accepted, events.Delivered, events.Deferred, events.Held, events.Bounced}
	for i := range n {
		d := events.Delivery{Time: base.Add(time.Duration(i) * time.Minute), QueueID: fmt.Sprintf("%04x", i/2),
			MessageID: fmt.Sprintf("<m%d@org.example>", i/2), Sender: "alice@org.example",
			Recipient: fmt.Sprintf("R%d@Partner.example", i%3), Outcome: outcomes[i%len(outcomes)], Attempt: 1}
		if d.Outcome == events.Delivered {
			d.Method, d.Signed, d.Rule = "smime", true, "default"
			d.TLS = &events.TLS{Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256", Verified: true}
		}
		rec.Record(context.Background(), d)
	}
}

// TestEventsPaging walks every event with small pages: each exactly once,
// in order, and the cursor of an empty page is the one given.
func TestEventsPaging(t *testing.T) {
	st := openStore(t)
	seed(t, st, 47)
	v := apitest.New(t)
	h := &events.API{Events: st}
	var (
		seen   []string
		cursor string
	)
	for range 100 {
		q := "limit=10"
		if cursor != "" {
			q += "&after=" + cursor
		}
		code, body := get(t, v, h, q)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", q, code, body)
		}
		p := page(t, body)
		if len(p.Events) == 0 {
			want := cursor
			if want == "" {
				want = "0"
			}
			if p.Next != want {
				t.Fatalf("empty page: next %q, want the cursor given %q", p.Next, want)
			}
			break
		}
		if len(p.Events) > 10 {
			t.Fatalf("%d events on a page of 10", len(p.Events))
		}
		for _, e := range p.Events {
			seen = append(seen, e.ID)
		}
		if p.Next != p.Events[len(p.Events)-1].ID {
			t.Fatalf("next %q, want the last id %q", p.Next, p.Events[len(p.Events)-1].ID)
		}
		cursor = p.Next
	}
	if len(seen) != 47 {
		t.Fatalf("saw %d events, want 47", len(seen))
	}
	prev := int64(0)
	for _, id := range seen {
		n, _ := strconv.ParseInt(id, 10, 64)
		if n <= prev {
			t.Fatalf("ids not increasing: %v", seen)
		}
		prev = n
	}
	// The default page is 100, and a delivered event shows its hop's TLS.
	_, body := get(t, v, h, "")
	p := page(t, body)
	if len(p.Events) != 47 {
		t.Fatalf("default page: %d events", len(p.Events))
	}
	d := p.Events[1]
	if d.Outcome != "delivered" || d.TLS == nil || d.TLS.Version != "TLS 1.3" || !d.TLS.Verified || d.Method != "smime" || d.Rule != "default" || !d.Signed || d.Node != "gw1.example.org" {
		t.Fatalf("delivered event: %+v", d)
	}
	if p.Events[0].TLS != nil {
		t.Fatalf("accepted event has tls %+v", p.Events[0].TLS)
	}
}

func TestEventsFilters(t *testing.T) {
	st := openStore(t)
	seed(t, st, 30)
	v := apitest.New(t)
	h := &events.API{Events: st}
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		query string
		want  func(e events.EventJSON) bool
		count int
	}{
		{"recipient, case-insensitive", "recipient=r1%40PARTNER.example", func(e events.EventJSON) bool { return e.Recipient == "R1@Partner.example" }, 10},
		{"queue id", "queue_id=0003", func(e events.EventJSON) bool { return e.QueueID == "0003" }, 2},
		{"outcomes", "outcome=delivered,bounced", func(e events.EventJSON) bool { return e.Outcome == "delivered" || e.Outcome == "bounced" }, 12},
		{"since and until", "since=" + url.QueryEscape(base.Add(10*time.Minute).Format(time.RFC3339)) + "&until=" + url.QueryEscape(base.Add(15*time.Minute).Format(time.RFC3339)),
			func(e events.EventJSON) bool {
				tm, _ := time.Parse(time.RFC3339Nano, e.Time)
				return !tm.Before(base.Add(10*time.Minute)) && tm.Before(base.Add(15*time.Minute))
			}, 5},
		{"offset in since", "since=" + url.QueryEscape("2026-03-01T14:25:00+02:00"), func(e events.EventJSON) bool { return true }, 5},
		{"all together", "recipient=r0%40partner.example&outcome=accepted&limit=1000", func(e events.EventJSON) bool {
			return e.Recipient == "R0@Partner.example" && e.Outcome == "accepted"
		}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(t, v, h, tc.query)
			if code != http.StatusOK {
				t.Fatalf("%d %s", code, body)
			}
			p := page(t, body)
			if len(p.Events) != tc.count {
				t.Fatalf("%d events, want %d: %s", len(p.Events), tc.count, body)
			}
			for _, e := range p.Events {
				if !tc.want(e) {
					t.Fatalf("event outside the filter: %+v", e)
				}
			}
		})
	}
}

// TestEventsRefusesWhatItDoesNotUnderstand plays a caller (or attacker)
// who sends parameters the route does not know, twice, or malformed: each
// gets a 400 problem naming the parameter, never a page filtered
// differently from what was meant.
func TestEventsRefusesWhatItDoesNotUnderstand(t *testing.T) {
	st := openStore(t)
	seed(t, st, 3)
	v := apitest.New(t)
	h := &events.API{Events: st}
	tests := []struct {
		name, query, param, hint string
	}{
		{"unknown parameter (a typo must not return everything)", "recipent=a%40b.example", "recipent", "known ones"},
		{"parameter twice", "recipient=a%40b.example&recipient=c%40d.example", "recipient", "more than once"},
		{"after twice", "after=1&after=2", "after", "more than once"},
		{"cursor negative", "after=-1", "after", "next"},
		{"cursor with leading zero", "after=01", "after", "next"},
		{"cursor hex", "after=0x10", "after", "next"},
		{"cursor beyond int64", "after=99999999999999999999", "after", "next"},
		{"cursor with SQL", "after=1%20OR%201%3D1", "after", "next"},
		{"cursor empty", "after=", "after", "next"},
		{"limit too large", "limit=1001", "limit", "at most 1000"},
		{"limit zero", "limit=0", "limit", "at least 1"},
		{"limit negative", "limit=-5", "limit", "whole number"},
		{"limit with sign", "limit=%2B5", "limit", "whole number"},
		{"limit not a number", "limit=ten", "limit", "whole number"},
		{"since not RFC 3339", "since=yesterday", "since", "RFC 3339"},
		{"until unix seconds", "until=1700000000", "until", "RFC 3339"},
		{"until before since", "since=2026-03-02T00:00:00Z&until=2026-03-01T00:00:00Z", "until", "empty"},
		{"outcome unknown", "outcome=delivered,stolen", "outcome", "not an outcome"},
		{"outcome empty element", "outcome=delivered,", "outcome", "not an outcome"},
		{"outcome twice in the list", "outcome=held,held", "outcome", "twice"},
		{"recipient with CRLF", "recipient=a%40b.example%0D%0AX-Injected:%201", "recipient", "not an address"},
		{"recipient without @", "recipient=admin", "recipient", "not an address"},
		{"queue id not hex", "queue_id=..%2F..%2Fetc", "queue_id", "not a queue id"},
		{"value too long", "recipient=" + strings.Repeat("a", 400) + "%40b.example", "recipient", "longer than"},
		{"bad percent escape", "recipient=%zz", "query", "malformed"},
		{"semicolon separator", "limit=5;after=1", "query", "malformed"},
		{"parameter without a name (found by FuzzParseQuery)", "=0", "query", "without a name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/api/v1/events", nil)
			req.URL.RawQuery = tc.query
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			v.Response(t, req, rec.Code, rec.Header(), rec.Body.Bytes())
			if rec.Code != http.StatusBadRequest || rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d %q: %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
			}
			var p struct {
				Detail        string `json:"detail"`
				InvalidParams []struct {
					Name, Reason string
				} `json:"invalid-params"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			if len(p.InvalidParams) != 1 || p.InvalidParams[0].Name != tc.param || !strings.Contains(p.Detail, tc.param) {
				t.Fatalf("problem names %+v (detail %q), want %q", p.InvalidParams, p.Detail, tc.param)
			}
			if !strings.Contains(p.InvalidParams[0].Reason, tc.hint) {
				t.Fatalf("reason %q does not say %q", p.InvalidParams[0].Reason, tc.hint)
			}
			if strings.ContainsAny(rec.Body.String(), "\r") || strings.Contains(rec.Body.String(), "X-Injected: 1\n") {
				t.Fatalf("control characters echoed: %q", rec.Body)
			}
		})
	}
}

type failingReader struct{}

func (failingReader) DeliveryEvents(context.Context, store.EventFilter) ([]store.DeliveryEvent, error) {
	return nil, errors.New("database is locked: /var/lib/sealgate/sealgate.db")
}

// TestEventsStoreDown: a store failure is a 503 problem that tells the
// poller to retry with its cursor, without the internals.
func TestEventsStoreDown(t *testing.T) {
	v := apitest.New(t)
	code, body := get(t, v, &events.API{Events: failingReader{}}, "after=5")
	if code != http.StatusServiceUnavailable || strings.Contains(string(body), "sealgate.db") || !strings.Contains(string(body), "same cursor") {
		t.Fatalf("%d %s", code, body)
	}
}

// TestEventsDocumentedRequestsValidate: the requests a poller makes are
// valid for the document too (its parameters are described as they are).
func TestEventsDocumentedRequestsValidate(t *testing.T) {
	v := apitest.New(t)
	for _, q := range []string{"", "after=0&limit=1000", "after=12&limit=1&since=2026-03-01T00:00:00Z&until=2026-03-02T00:00:00Z",
		"recipient=a%40b.example&queue_id=19a3f&outcome=delivered,bounced"} {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/events?"+q, nil)
		v.Request(t, req)
	}
	// And the document rejects what the handler rejects.
	for _, q := range []string{"limit=1001", "after=-1", "queue_id=XYZ"} {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/events?"+q, nil)
		if err := v.RequestErr(req); err == nil {
			t.Errorf("the document accepts %q", q)
		}
	}
}

// TestValidatorCatchesDrift proves the document check above has teeth: an
// id as a number, a missing field or an unknown outcome is refused.
func TestValidatorCatchesDrift(t *testing.T) {
	v := apitest.New(t)
	req := httptest.NewRequest(http.MethodGet, "/api/v1/events", nil)
	hdr := http.Header{"Content-Type": {"application/json"}}
	ok := `{"id":"1","time":"2026-03-01T12:00:00Z","queue_id":"ab","message_id":"","sender":"","recipient":"b@x.example","outcome":"held","method":"","rule":"","tls":null,"reason":"r","attempt":1,"signed":false,"node":"n"}`
	if err := v.Check(req, 200, hdr, []byte(`{"events":[`+ok+`],"next":"1"}`)); err != nil {
		t.Fatalf("a good page is refused: %v", err)
	}
	for _, bad := range []string{
		strings.Replace(ok, `"id":"1"`, `"id":1`, 1),
		strings.Replace(ok, `"outcome":"held"`, `"outcome":"stolen"`, 1),
		strings.Replace(ok, `"reason":"r",`, ``, 1),
		strings.Replace(ok, `"tls":null`, `"tls":{"version":"TLS 1.3"}`, 1),
		strings.Replace(ok, `"node":"n"`, `"node":"n","subject":"secret"`, 1),
	} {
		if err := v.Check(req, 200, hdr, []byte(`{"events":[`+bad+`],"next":"1"}`)); err == nil {
			t.Errorf("accepted: %s", bad)
		}
	}
}
