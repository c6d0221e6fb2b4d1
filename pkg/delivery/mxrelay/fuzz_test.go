package mxrelay

import (
	"strings"
	"testing"
)

// MTA-STS mx patterns come from the recipient's web server: whatever they
// hold, a pattern matches a host only when equal (case-insensitively,
// without the root dot) or, as "*.parent", when the host is one more
// label in front of parent.
func FuzzSTSMatch(f *testing.F) {
	for _, s := range [][2]string{{"mx.example.org", "mx.example.org"}, {"*.example.org", "a.b.example.org"}, {"*.", "a."}, {"*", "x"}, {"MX.Example.ORG.", "mx.example.org"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pat, host string) {
		host = strings.ToLower(host)
		if !(stsPolicy{mx: []string{pat}}).matches(host) {
			return
		}
		p := strings.ToLower(strings.TrimSuffix(pat, "."))
		if p == host {
			return
		}
		// A wildcard match: host is "label" + ".parent" for "*.parent",
		// with a non-empty label that has no dot.
		suffix, ok := strings.CutPrefix(p, "*")
		label := strings.TrimSuffix(host, suffix)
		if !ok || !strings.HasPrefix(suffix, ".") || !strings.HasSuffix(host, suffix) || label == "" || strings.Contains(label, ".") {
			t.Fatalf("pattern %q matched host %q", pat, host)
		}
	})
}

// The table the fuzz target cannot state: what RFC 8461 4.1 means.
func TestSTSMatch(t *testing.T) {
	for _, tc := range []struct {
		pat, host string
		want      bool
	}{
		{"mx.example.org", "mx.example.org", true},
		{"MX.example.org.", "mx.example.org", true},
		{"*.example.org", "mx1.example.org", true},
		{"*.example.org", "a.mx1.example.org", false},
		{"*.example.org", "example.org", false},
		{"*.org", "mx.example.org", false},
		{"mx.example.org", "mx.example.org.evil.test", false},
	} {
		if got := (stsPolicy{mx: []string{tc.pat}}).matches(tc.host); got != tc.want {
			t.Errorf("%q ~ %q = %v, want %v", tc.pat, tc.host, got, tc.want)
		}
	}
}
