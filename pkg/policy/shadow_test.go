package policy

import (
	"strings"
	"testing"

	"github.com/sealgate/sealgate/pkg/config"
)

func TestShadowedRulesAreRejected(t *testing.T) {
	cases := []struct {
		name     string
		a, b     config.PolicyRule
		shadowed bool
	}{
		{"same domain, b adds a header", config.PolicyRule{RecipientDomain: []string{"x.test"}}, config.PolicyRule{RecipientDomain: []string{"X.test"}, Header: []string{"X-A: b"}}, true},
		{"wildcard covers subdomain", config.PolicyRule{RecipientDomain: []string{"*.x.test"}}, config.PolicyRule{RecipientDomain: []string{"a.x.test"}}, true},
		{"wildcard does not cover apex", config.PolicyRule{RecipientDomain: []string{"*.x.test"}}, config.PolicyRule{RecipientDomain: []string{"x.test"}}, false},
		{"wildcard covers deeper wildcard", config.PolicyRule{RecipientDomain: []string{"*.x.test"}}, config.PolicyRule{RecipientDomain: []string{"*.a.x.test"}}, true},
		{"b has an alternative a lacks", config.PolicyRule{RecipientDomain: []string{"x.test"}}, config.PolicyRule{RecipientDomain: []string{"x.test", "y.test"}}, false},
		{"domain glob covers address", config.PolicyRule{Sender: []string{"*@example.org"}}, config.PolicyRule{Sender: []string{"Alice@example.org"}}, true},
		{"glob covers address", config.PolicyRule{Recipient: []string{"tax-*@*.gov.test"}}, config.PolicyRule{Recipient: []string{"tax-1@a.gov.test"}}, true},
		{"subdomain glob is not covered by domain glob", config.PolicyRule{Sender: []string{"*@example.org"}}, config.PolicyRule{Sender: []string{"*@*.example.org"}}, false},
		{"a constrains what b does not", config.PolicyRule{SenderGroup: []string{"legal"}}, config.PolicyRule{RecipientDomain: []string{"x.test"}}, false},
		{"same group", config.PolicyRule{SenderGroup: []string{"Legal", "board"}}, config.PolicyRule{SenderGroup: []string{"legal"}, MinSize: 5}, true},
		{"header alternatives", config.PolicyRule{Header: []string{"X-A: b"}}, config.PolicyRule{Header: []string{"X-A: b", "X-C: d"}}, false},
		{"same header, other case", config.PolicyRule{Header: []string{"X-A: B"}}, config.PolicyRule{Header: []string{"x-a:b"}}, true},
		{"same header_match", config.PolicyRule{HeaderMatch: []string{"X-A: ^b"}}, config.PolicyRule{HeaderMatch: []string{"x-a: ^b"}}, true},
		{"different header_match", config.PolicyRule{HeaderMatch: []string{"X-A: ^b"}}, config.PolicyRule{HeaderMatch: []string{"X-A: ^bc"}}, false},
		{"longer tag contains shorter", config.PolicyRule{SubjectTag: "[secure]"}, config.PolicyRule{SubjectTag: "[SECURE] now"}, true},
		{"other tag", config.PolicyRule{SubjectTag: "[secure]"}, config.PolicyRule{SubjectTag: "[secure-pdf]"}, false},
		{"narrower size range", config.PolicyRule{MinSize: 100, MaxSize: 1000}, config.PolicyRule{MinSize: 200, MaxSize: 900}, true},
		{"unbounded b", config.PolicyRule{MaxSize: 1000}, config.PolicyRule{MinSize: 10}, false},
		{"a needs two conditions", config.PolicyRule{RecipientDomain: []string{"x.test"}, SubjectTag: "[s]"}, config.PolicyRule{RecipientDomain: []string{"x.test"}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.a.Name, c.b.Name = "a", "b"
			_, err := Compile(config.Policy{Rules: []config.PolicyRule{c.a, c.b}}, Options{})
			got := err != nil && strings.Contains(err.Error(), `rule "b": unreachable: rule "a"`)
			if got != c.shadowed {
				t.Errorf("shadowed = %v, want %v (err: %v)", got, c.shadowed, err)
			}
			if !c.shadowed && err != nil {
				t.Errorf("unexpected error: %v", err)
			}
			// The other order is always fine unless both shadow each other.
			if c.shadowed {
				if _, err := Compile(config.Policy{Rules: []config.PolicyRule{c.b, c.a}}, Options{}); err != nil && !strings.Contains(c.name, "same") {
					t.Errorf("reversed order rejected: %v", err)
				}
			}
		})
	}
}

// FuzzShadows checks that "shadows" is sound: whenever it claims that a
// covers b, no message matched by b escapes a.
func FuzzShadows(f *testing.F) {
	f.Add("*@example.org", "alice@example.org", "*.x.test", "a.x.test", "X-A: b", "[s]", "[s] t", "alice@example.org", "bob@a.x.test", "X-A", "B", "[S] T")
	f.Add("a*", "a*b", "x.test", "x.test", "X-A: b", "", "", "ab", "c@x.test", "x-a", "b", "")
	f.Fuzz(func(t *testing.T, sa, sb, da, db, h, ta, tb, from, to, hn, hv, subject string) {
		mk := func(name, s, d, tag string) config.PolicyRule {
			r := config.PolicyRule{Name: name, SubjectTag: tag, Header: []string{h}}
			if s != "" {
				r.Sender = []string{s}
			}
			if d != "" {
				r.RecipientDomain = []string{d}
			}
			return r
		}
		pa, errA := Compile(config.Policy{Rules: []config.PolicyRule{mk("a", sa, da, ta)}}, Options{})
		pb, errB := Compile(config.Policy{Rules: []config.PolicyRule{mk("b", sb, db, tb)}}, Options{})
		if errA != nil || errB != nil {
			return
		}
		a, b := &pa.rules[0], &pb.rules[0]
		if !shadows(a, b) {
			return
		}
		facts := Facts{Sender: from, Subject: subject, Headers: []Header{{hn, hv}}}
		c := prepare(&facts, to, nil, nil)
		if b.eval(&c, facts.Headers) == condNone && a.eval(&c, facts.Headers) != condNone {
			t.Fatalf("shadows(a, b) but b matches and a does not: from %q to %q", from, to)
		}
	})
}
