package mtasts

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	ok := func(mode string, maxAge time.Duration, mx ...string) *Policy {
		return &Policy{Mode: mode, MX: mx, MaxAge: maxAge}
	}
	cases := []struct {
		name string
		body string
		want *Policy // nil: invalid
	}{
		{"enforce CRLF", "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmx: *.example.test\r\nmax_age: 86400\r\n", ok("enforce", 86400*time.Second, "mx1.example.test", "*.example.test")},
		{"testing LF, upper case mx", "version: STSv1\nmode: testing\nmx: MX.Example.Test.\nmax_age: 604800\n", ok("testing", 604800*time.Second, "mx.example.test")},
		{"none without mx", "version: STSv1\nmode: none\nmax_age: 0\n", ok("none", 0)},
		{"unknown field ignored", "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1\nx-ext: whatever\n", ok("enforce", time.Second, "a.test")},
		{"largest max_age", "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557600\n", ok("enforce", MaxAge, "a.test")},
		{"max_age too large", "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n", nil},
		{"max_age eleven digits", "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 00000000001\n", nil},
		{"max_age negative", "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n", nil},
		{"max_age plus sign", "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: +5\n", nil},
		{"no max_age", "version: STSv1\nmode: enforce\nmx: a.test\n", nil},
		{"wrong version", "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n", nil},
		{"no version", "mode: enforce\nmx: a.test\nmax_age: 1\n", nil},
		{"two modes", "version: STSv1\nmode: testing\nmode: enforce\nmx: a.test\nmax_age: 1\n", nil},
		{"unknown mode", "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n", nil},
		{"enforce without mx", "version: STSv1\nmode: enforce\nmax_age: 1\n", nil},
		{"mx wildcard in the middle", "version: STSv1\nmode: enforce\nmx: a.*.test\nmax_age: 1\n", nil},
		{"mx bare wildcard", "version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n", nil},
		{"mx single label", "version: STSv1\nmode: enforce\nmx: localhost\nmax_age: 1\n", nil},
		{"mx with a space inside", "version: STSv1\nmode: enforce\nmx: a .test\nmax_age: 1\n", nil},
		{"not a field", "version: STSv1\nmode enforce\nmx: a.test\nmax_age: 1\n", nil},
		{"control byte", "version: STSv1\nmode: enforce\x00\nmx: a.test\nmax_age: 1\n", nil},
		{"html instead", "<html><body>hello</body></html>", nil},
		{"oversize", "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1\n" + strings.Repeat("x-pad: y\n", MaxPolicyBytes/9+1), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse([]byte(c.body))
			if c.want == nil {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Parse = %+v, %v; want ErrInvalid", got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Fatalf("Parse = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	p := &Policy{Mode: ModeEnforce, MX: []string{"mx1.example.test", "*.backup.test"}}
	cases := []struct {
		host string
		want bool
	}{
		{"mx1.example.test", true},
		{"MX1.Example.Test.", true},
		{"mx2.example.test", false},
		{"a.backup.test", true},
		{"backup.test", false},
		{"a.b.backup.test", false},
		{".backup.test", false},
		{"mx1.example.test.evil.test", false},
		{"", false},
	}
	for _, c := range cases {
		if got := p.Match(c.host); got != c.want {
			t.Errorf("Match(%q) = %v, want %v", c.host, got, c.want)
		}
	}
}

func TestParseTXT(t *testing.T) {
	cases := []struct {
		name    string
		records []string
		want    string // "": no policy
	}{
		{"one", []string{"v=STSv1; id=20260101T000000;"}, "20260101T000000"},
		{"others ignored", []string{"v=spf1 -all", "v=STSv1; id=abc"}, "abc"},
		{"extension ignored", []string{"v=STSv1; foo=bar; id=x1"}, "x1"},
		{"none", []string{"v=spf1 -all"}, ""},
		{"two records", []string{"v=STSv1; id=a", "v=STSv1; id=b"}, ""},
		{"no id", []string{"v=STSv1;"}, ""},
		{"two ids", []string{"v=STSv1; id=a; id=b"}, ""},
		{"id too long", []string{"v=STSv1; id=" + strings.Repeat("a", 33)}, ""},
		{"id not alphanumeric", []string{"v=STSv1; id=a-b"}, ""},
		{"version glued", []string{"v=STSv10; id=a"}, ""},
		{"field without =", []string{"v=STSv1; id"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, err := ParseTXT(c.records)
			if c.want == "" {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("ParseTXT = %q, %v; want ErrInvalid", id, err)
				}
				return
			}
			if err != nil || id != c.want {
				t.Fatalf("ParseTXT = %q, %v; want %q", id, err, c.want)
			}
		})
	}
}

// FuzzParse: whatever a policy host sends, Parse does not panic, and what
// it accepts is consistent: a known mode, a max_age within the limit,
// patterns that Match finds themselves with (non-wildcards).
func FuzzParse(f *testing.F) {
	f.Add([]byte("version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmx: *.example.test\r\nmax_age: 86400\r\n"))
	f.Add([]byte("version: STSv1\nmode: none\nmax_age: 0\n"))
	f.Add([]byte("version: STSv1\nmode: testing\nmx: a.b\nmax_age: 31557600\nx: y"))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := Parse(body)
		if err != nil {
			return
		}
		if p.Mode != ModeEnforce && p.Mode != ModeTesting && p.Mode != ModeNone {
			t.Fatalf("mode %q accepted", p.Mode)
		}
		if p.MaxAge < 0 || p.MaxAge > MaxAge {
			t.Fatalf("max_age %v accepted", p.MaxAge)
		}
		for _, m := range p.MX {
			if !strings.HasPrefix(m, "*.") && !p.Match(m) {
				t.Fatalf("pattern %q does not match itself", m)
			}
			if strings.ContainsAny(m, " \t\r\n") {
				t.Fatalf("pattern %q with white space", m)
			}
		}
	})
}

func FuzzParseTXT(f *testing.F) {
	f.Add("v=STSv1; id=abc;", "v=spf1")
	f.Fuzz(func(t *testing.T, a, b string) {
		id, err := ParseTXT([]string{a, b})
		if err == nil && (id == "" || len(id) > 32) {
			t.Fatalf("id %q accepted", id)
		}
	})
}
