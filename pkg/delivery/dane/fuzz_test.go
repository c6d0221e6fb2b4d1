package dane

import (
	"strings"
	"testing"
)

// FuzzMatchName: a certificate's name (the server's choice) matches a
// reference name only when equal, or as a wildcard for exactly one whole
// leftmost label under a parent of at least two labels.
func FuzzMatchName(f *testing.F) {
	for _, s := range [][2]string{
		{"mx.example.org", "mx.example.org"}, {"*.example.org", "mx.example.org"}, {"*.example.org", "a.mx.example.org"},
		{"*.org", "example.org"}, {"mx*.example.org", "mx1.example.org"}, {"*.", "a."}, {"*..", "a.."}, {"", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, host string) {
		p, h := normalize(pattern), normalize(host)
		if !matchName(p, h) {
			return
		}
		if p == h {
			if strings.Contains(p, "*") {
				t.Fatalf("%q matched itself as a literal with a wildcard", p)
			}
			return
		}
		rest, ok := strings.CutPrefix(p, "*.")
		if !ok || strings.Contains(rest, "*") || !strings.Contains(rest, ".") {
			t.Fatalf("%q matched %q without being a valid wildcard", p, h)
		}
		label, parent, _ := strings.Cut(h, ".")
		if label == "" || parent != rest {
			t.Fatalf("%q matched %q: not exactly one label more", p, h)
		}
	})
}
