package events

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzParseQuery: whatever query string a caller sends, the parser does
// not panic, and what it accepts is within bounds: a limit of 1 to 1000,
// a cursor that is the decimal form of the id it filters after, only
// known outcomes, no control characters in the recipient.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "after=12&limit=37", "limit=1000", "since=2026-03-01T00:00:00Z&until=2026-03-02T00:00:00%2B01:00",
		"recipient=a%40b.example&queue_id=19a3f&outcome=delivered,bounced", "after=01", "limit=%2B5", "a=1;b=2", "outcome=held,held",
		"recipient=%0d%0a@x", "after=9223372036854775807", "after=9223372036854775808"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, bad := parseQuery(raw)
		if bad != nil {
			if bad.name == "" || bad.reason == "" {
				t.Fatalf("%q: a refusal without a parameter or reason: %+v", raw, bad)
			}
			return
		}
		if q.filter.Limit < 1 || q.filter.Limit > MaxLimit {
			t.Fatalf("%q: limit %d accepted", raw, q.filter.Limit)
		}
		if q.cursor != strconv.FormatInt(q.filter.After, 10) || q.filter.After < 0 {
			t.Fatalf("%q: cursor %q for after %d", raw, q.cursor, q.filter.After)
		}
		for _, o := range q.filter.Outcomes {
			if !strings.Contains(","+strings.Join(Outcomes, ",")+",", ","+o+",") {
				t.Fatalf("%q: outcome %q accepted", raw, o)
			}
		}
		if hasControl(q.filter.Recipient) {
			t.Fatalf("%q: recipient %q accepted", raw, q.filter.Recipient)
		}
		if !q.filter.Since.IsZero() && !q.filter.Until.IsZero() && !q.filter.Until.After(q.filter.Since) {
			t.Fatalf("%q: empty range accepted", raw)
		}
	})
}
