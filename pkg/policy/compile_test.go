package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/pkg/config"
)

// fakeLines gives each rule i the line 10*(i+1) and its keys the lines
// after it, the way config.Load's map would for a file of 10-line rules.
func fakeLines(key string) int {
	var i int
	var field string
	if n, _ := parseRuleKey(key, &i, &field); n {
		off := map[string]int{"": 0, "name": 1, "header": 2, "header_match": 3, "encrypt": 4, "on_failure": 5, "strip_subject_tag": 6,
			"encrypt_calendar": 7, "recipient_domain_file": 8, "min_size": 9}[field]
		return 10*(i+1) + off
	}
	if key == "policy.internal_domains" {
		return 3
	}
	return 0
}

// parseRuleKey reads "policy.rules[i]" or "policy.rules[i].field".
func parseRuleKey(key string, i *int, field *string) (bool, error) {
	rest, ok := strings.CutPrefix(key, "policy.rules[")
	if !ok {
		return false, nil
	}
	idx, after, ok := strings.Cut(rest, "]")
	if !ok {
		return false, nil
	}
	n := 0
	for _, c := range idx {
		if c < '0' || c > '9' {
			return false, nil
		}
		n = n*10 + int(c-'0')
	}
	*i = n
	*field = strings.TrimPrefix(after, ".")
	return *field == "" || !strings.ContainsAny(*field, "[."), nil
}

func TestCompileProblems(t *testing.T) {
	ok := config.PolicyRule{Name: "ok", RecipientDomain: []string{"partner.test"}}
	last := config.PolicyRule{Name: "last"}
	cases := []struct {
		name  string
		pol   config.Policy
		key   string
		line  int
		words []string // all must occur in the message+hint
	}{
		{"header without colon", config.Policy{Rules: []config.PolicyRule{{Name: "h", Header: []string{"X-Classification Confidential"}}}},
			"policy.rules[0].header[0]", 12, []string{`rule "h"`, "no ':'", "Name: value"}},
		{"header name with space", config.Policy{Rules: []config.PolicyRule{{Name: "h", Header: []string{"X Classification: Confidential"}}}},
			"policy.rules[0].header[0]", 12, []string{"header name", "cannot contain"}},
		{"header without value", config.Policy{Rules: []config.PolicyRule{{Name: "h", Header: []string{"X-Classification:  "}}}},
			"policy.rules[0].header[0]", 12, []string{"no value"}},
		{"header without name", config.Policy{Rules: []config.PolicyRule{{Name: "h", Header: []string{": x"}}}},
			"policy.rules[0].header[0]", 12, []string{"no header name"}},
		{"header_match bad regexp", config.Policy{Rules: []config.PolicyRule{{Name: "m", HeaderMatch: []string{"msip_labels: Name=(Confidential"}}}},
			"policy.rules[0].header_match[0]", 13, []string{`rule "m"`, "not a valid regular expression", "missing closing )"}},
		{"unreachable after catch-all", config.Policy{Rules: []config.PolicyRule{ok, last, {Name: "late", Encrypt: "pdf", RecipientDomain: []string{"x.test"}}}},
			"policy.rules[2]", 30, []string{`rule "late"`, "unreachable", `rule "last" (line 20)`, `move "last" to the end`}},
		{"strip without tag", config.Policy{Rules: []config.PolicyRule{{Name: "s", StripSubjectTag: true}}},
			"policy.rules[0].strip_subject_tag", 16, []string{"no tag to strip"}},
		{"encrypt_calendar with none", config.Policy{Rules: []config.PolicyRule{{Name: "c", Encrypt: "none", EncryptCalendar: true}}},
			"policy.rules[0].encrypt_calendar", 17, []string{"encrypts nothing"}},
		{"plain with smime-required", config.Policy{Rules: []config.PolicyRule{{Name: "p", Encrypt: "smime-required", OnFailure: "plain"}}},
			"policy.rules[0].on_failure", 15, []string{"contradicts", "smime-required"}},
		{"plain with none", config.Policy{Rules: []config.PolicyRule{{Name: "p", Encrypt: "none", OnFailure: "plain"}}},
			"policy.rules[0].on_failure", 15, []string{"nothing to fall back from"}},
		{"unknown encrypt", config.Policy{Rules: []config.PolicyRule{{Name: "e", Encrypt: "aes"}}},
			"policy.rules[0].encrypt", 14, []string{`"aes" is not one of none, smime, smime-or-pdf, pdf, smime-required`}},
		{"unknown sign", config.Policy{Rules: []config.PolicyRule{{Name: "e", Sign: "sometimes"}}},
			"policy.rules[0].sign", 10, []string{`"sometimes"`}},
		{"unknown tls", config.Policy{Rules: []config.PolicyRule{{Name: "e", TLS: "pkix"}}}, "policy.rules[0].tls", 10, []string{`"pkix" is not one of opportunistic, required, none, verified, dane`}},
		{"unknown tls_fallback", config.Policy{Rules: []config.PolicyRule{{Name: "e", TLS: "dane", TLSFallback: "plain"}}}, "policy.rules[0].tls_fallback", 10, []string{`"plain" is not one of hold, pdf, bounce`}},
		{"tls_fallback without a TLS demand", config.Policy{Rules: []config.PolicyRule{{Name: "e", TLSFallback: "pdf"}}}, "policy.rules[0].tls_fallback", 10, []string{"demands no TLS", `tls = "required"`}},
		{"unknown on_failure", config.Policy{Rules: []config.PolicyRule{{Name: "e", OnFailure: "drop"}}}, "policy.rules[0].on_failure", 15, []string{`"drop"`}},
		{"min above max", config.Policy{Rules: []config.PolicyRule{{Name: "z", MinSize: 10, MaxSize: 5}}},
			"policy.rules[0].min_size", 19, []string{"can never match"}},
		{"negative size", config.Policy{Rules: []config.PolicyRule{{Name: "z", MaxSize: -1}}}, "policy.rules[0].max_size", 10, []string{"negative"}},
		{"missing name", config.Policy{Rules: []config.PolicyRule{{Encrypt: "pdf"}}}, "policy.rules[0].name", 11, []string{"no name"}},
		{"duplicate name", config.Policy{Rules: []config.PolicyRule{ok, ok}}, "policy.rules[1].name", 21, []string{"already used by policy.rules[0]"}},
		{"sender without @", config.Policy{Rules: []config.PolicyRule{{Name: "a", Sender: []string{"example.org"}}}},
			"policy.rules[0].sender[0]", 10, []string{`"*@example.org"`}},
		{"recipient with display name", config.Policy{Rules: []config.PolicyRule{{Name: "a", Recipient: []string{"Bob <bob@x.test>"}}}},
			"policy.rules[0].recipient[0]", 10, []string{"write it bare"}},
		{"domain is an address", config.Policy{Rules: []config.PolicyRule{{Name: "a", RecipientDomain: []string{"bob@x.test"}}}},
			"policy.rules[0].recipient_domain[0]", 10, []string{"is an address"}},
		{"domain bare star", config.Policy{Rules: []config.PolicyRule{{Name: "a", SenderDomain: []string{"*"}}}},
			"policy.rules[0].sender_domain[0]", 10, []string{"leave the condition out"}},
		{"domain inner wildcard", config.Policy{Rules: []config.PolicyRule{{Name: "a", RecipientDomain: []string{"a.*.test"}}}},
			"policy.rules[0].recipient_domain[0]", 10, []string{"leading"}},
		{"domain empty label", config.Policy{Rules: []config.PolicyRule{{Name: "a", RecipientDomain: []string{"a..test"}}}},
			"policy.rules[0].recipient_domain[0]", 10, []string{"empty label"}},
		{"empty group", config.Policy{Rules: []config.PolicyRule{{Name: "a", SenderGroup: []string{" "}}}},
			"policy.rules[0].sender_group[0]", 10, []string{"empty group"}},
		{"blank subject tag", config.Policy{Rules: []config.PolicyRule{{Name: "a", SubjectTag: "  "}}},
			"policy.rules[0].subject_tag", 10, []string{"white space"}},
		{"missing domain file", config.Policy{Rules: []config.PolicyRule{{Name: "f", RecipientDomainFile: "/nonexistent/partners.txt"}}},
			"policy.rules[0].recipient_domain_file", 18, []string{"/nonexistent/partners.txt", "cannot read"}},
		{"internal domain bad", config.Policy{InternalDomains: []string{"exa mple.org"}}, "policy.internal_domains[0]", 3, []string{"cannot contain"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile(c.pol, Options{Line: fakeLines, File: "sealgate.toml"})
			var ce *config.Errors
			if !errors.As(err, &ce) {
				t.Fatalf("want *config.Errors, got %v", err)
			}
			var found *config.Problem
			for i := range ce.Problems {
				if ce.Problems[i].Key == c.key {
					found = &ce.Problems[i]
				}
			}
			if found == nil {
				t.Fatalf("no problem at %s; got:\n%v", c.key, err)
			}
			if found.Line != c.line {
				t.Errorf("line = %d, want %d", found.Line, c.line)
			}
			text := found.Message + " " + found.Hint
			for _, w := range c.words {
				if !strings.Contains(text, w) {
					t.Errorf("%q lacks %q", text, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "sealgate.toml:") {
				t.Errorf("error does not name the file: %v", err)
			}
		})
	}
}

func TestCompileCollectsEveryProblem(t *testing.T) {
	_, err := Compile(config.Policy{Rules: []config.PolicyRule{
		{Name: "a", Header: []string{"bad"}, HeaderMatch: []string{"X: ("}},
		{Name: "b"},
		{Name: "c", Encrypt: "none", OnFailure: "plain"},
	}}, Options{})
	var ce *config.Errors
	if !errors.As(err, &ce) || len(ce.Problems) != 4 {
		t.Fatalf("want 4 problems (header, header_match, unreachable, plain), got %v", err)
	}
}

func TestCompileDomainFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("good.txt", "a.test\n  # comment\n\n*.b.test  \n")
	write("bad.txt", "a.test\nnot a domain\n")
	write("empty.txt", "# nothing\n")
	resolve := func(p string) string { return filepath.Join(dir, p) }

	pol, err := Compile(config.Policy{Rules: []config.PolicyRule{{Name: "g", RecipientDomainFile: "good.txt", Encrypt: "pdf"}}}, Options{Path: resolve})
	if err != nil {
		t.Fatal(err)
	}
	if d := pol.Decide(Facts{}, Recipient{Address: "x@c.b.test"}); d.Rule != "g" {
		t.Errorf("relative domain file not used: %+v", d)
	}
	for file, want := range map[string]string{"bad.txt": "bad.txt:2", "empty.txt": "lists no domain", "missing.txt": filepath.Join(dir, "missing.txt")} {
		_, err := Compile(config.Policy{Rules: []config.PolicyRule{{Name: "g", RecipientDomainFile: file}}}, Options{Path: resolve})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v lacks %q", file, err, want)
		}
	}
}

func TestParseHeaderCondition(t *testing.T) {
	cases := []struct {
		in, name, value string
		ok              bool
	}{
		{"X-Classification: Confidential", "X-Classification", "Confidential", true},
		{"msip_labels:MSIP_Label_x_Enabled=true", "msip_labels", "MSIP_Label_x_Enabled=true", true},
		{"Subject: a: b", "Subject", "a: b", true},
		{"X-A:\tv\t", "X-A", "v", true},
		{"X-A :v", "", "", false},
		{" X-A: v", "", "", false},
		{"X-Ä: v", "", "", false},
		{"X-A", "", "", false},
		{"X-A:", "", "", false},
		{":v", "", "", false},
		{"", "", "", false},
	}
	for _, c := range cases {
		name, value, err := ParseHeaderCondition(c.in)
		if (err == nil) != c.ok || name != c.name || value != c.value {
			t.Errorf("ParseHeaderCondition(%q) = %q, %q, %v", c.in, name, value, err)
		}
	}
}

// TestTLSModes: the strict TLS modes and the fallback reach the Decision,
// the fallback is hold unless the rule says otherwise (fail closed), and
// AtLeast orders the modes.
func TestTLSModes(t *testing.T) {
	cases := []struct {
		tls, fallback string
		want          TLSMode
		wantFallback  TLSFallback
	}{
		{"verified", "pdf", TLSVerified, TLSFallbackPDF},
		{"dane", "", TLSDANE, TLSFallbackHold},
		{"dane", "bounce", TLSDANE, TLSFallbackBounce},
		{"required", "hold", TLSRequired, TLSFallbackHold},
	}
	for _, c := range cases {
		t.Run(c.tls+"/"+c.fallback, func(t *testing.T) {
			p, err := Compile(config.Policy{Rules: []config.PolicyRule{{Name: "r", Encrypt: "smime-or-pdf", TLS: c.tls, TLSFallback: c.fallback}}}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			d := p.Decide(Facts{Sender: "a@example.org"}, Recipient{Address: "b@partner.test"})
			if d.TLS != c.want || d.TLSFallback != c.wantFallback {
				t.Fatalf("decision TLS %v fallback %v, want %v %v", d.TLS, d.TLSFallback, c.want, c.wantFallback)
			}
		})
	}
	order := []TLSMode{TLSNone, TLSOpportunistic, TLSRequired, TLSVerified, TLSDANE}
	for i, a := range order {
		for j, b := range order {
			if a.AtLeast(b) != (i >= j) {
				t.Errorf("%v.AtLeast(%v) = %v", a, b, a.AtLeast(b))
			}
		}
	}
}
