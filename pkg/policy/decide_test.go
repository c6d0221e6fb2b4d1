package policy

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sealgate/sealgate/pkg/config"
)

func mustCompile(t testing.TB, p config.Policy) *Policy {
	t.Helper()
	pol, err := Compile(p, Options{})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return pol
}

// want is the part of a Decision a case checks; the zero strings mean
// "do not care" only for Rule, every other field is always compared.
type want struct {
	rule     string
	action   Action
	method   Method
	fallback Method
	sign     SignMode
	fail     Failure
	tls      TLSMode
	strip    bool
	calendar bool
}

func check(t *testing.T, d Decision, w want) {
	t.Helper()
	got := want{d.Rule, d.Action, d.Method, d.Fallback, d.Sign, d.OnFailure, d.TLS, d.StripSubjectTag, d.CalendarExempt}
	if got != w {
		t.Errorf("decision\n got %+v\nwant %+v", got, w)
	}
}

// catchAll is the last rule of most test policies: it makes visible
// that an earlier rule did NOT match.
var catchAll = config.PolicyRule{Name: "rest", Sign: "if-key", Encrypt: "none", OnFailure: "bounce", TLS: "none"}

var restDecision = want{rule: "rest", action: ActionDeliver, method: MethodNone, sign: SignIfKey, fail: FailBounce, tls: TLSNone}

func TestDecideConditions(t *testing.T) {
	dir := t.TempDir()
	domFile := filepath.Join(dir, "partners.txt")
	if err := os.WriteFile(domFile, []byte("# partners\n\nTax.Example.NET\n*.gov.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hit := func(name string) want {
		return want{rule: name, action: ActionDeliver, method: MethodPDF, sign: SignAlways, fail: FailHold, tls: TLSOpportunistic}
	}
	base := Facts{Sender: "Alice@Example.ORG", SenderGroups: []string{"Staff", "Legal"}, Subject: "Offer", Size: 1000,
		Headers: []Header{{"Subject", "Offer"}, {"x-classification", "  confidential "}, {"msip_labels", "MSIP_Label_1234-ab_Enabled=true; MSIP_Label_1234-ab_Name=Highly Confidential"}}}
	cases := []struct {
		name string
		rule config.PolicyRule
		f    Facts
		to   string
		hit  bool
	}{
		{"sender exact, case-insensitive", config.PolicyRule{Sender: []string{"alice@example.org"}}, base, "x@partner.test", true},
		{"sender other", config.PolicyRule{Sender: []string{"bob@example.org"}}, base, "x@partner.test", false},
		{"sender domain glob", config.PolicyRule{Sender: []string{"*@EXAMPLE.org"}}, base, "x@partner.test", true},
		{"sender subdomain glob", config.PolicyRule{Sender: []string{"*@*.example.org"}}, Facts{Sender: "a@legal.example.org"}, "x@partner.test", true},
		{"sender subdomain glob not apex", config.PolicyRule{Sender: []string{"*@*.example.org"}}, base, "x@partner.test", false},
		{"sender free glob", config.PolicyRule{Sender: []string{"ali?e*@example.org"}}, base, "x@partner.test", true},
		{"sender free glob miss", config.PolicyRule{Sender: []string{"b*@example.org"}}, base, "x@partner.test", false},
		{"sender list alternatives", config.PolicyRule{Sender: []string{"bob@example.org", "alice@example.org"}}, base, "x@partner.test", true},
		{"sender empty address", config.PolicyRule{Sender: []string{"*@example.org"}}, Facts{}, "x@partner.test", false},
		{"sender_domain", config.PolicyRule{SenderDomain: []string{"example.org"}}, base, "x@partner.test", true},
		{"sender_domain miss", config.PolicyRule{SenderDomain: []string{"example.com"}}, base, "x@partner.test", false},
		{"sender_domain wildcard", config.PolicyRule{SenderDomain: []string{"*.example.org"}}, Facts{Sender: "a@b.c.example.org"}, "x@partner.test", true},
		{"sender_group", config.PolicyRule{SenderGroup: []string{"legal"}}, base, "x@partner.test", true},
		{"sender_group miss", config.PolicyRule{SenderGroup: []string{"board"}}, base, "x@partner.test", false},
		{"sender_group none", config.PolicyRule{SenderGroup: []string{"legal"}}, Facts{Sender: "a@example.org"}, "x@partner.test", false},
		{"recipient", config.PolicyRule{Recipient: []string{"Office@Tax.example.net"}}, base, "office@tax.example.net", true},
		{"recipient miss", config.PolicyRule{Recipient: []string{"office@tax.example.net"}}, base, "other@tax.example.net", false},
		{"recipient glob", config.PolicyRule{Recipient: []string{"*@tax.example.net"}}, base, "any@TAX.example.net", true},
		{"recipient_domain", config.PolicyRule{RecipientDomain: []string{"tax.example.net"}}, base, "a@tax.example.net", true},
		{"recipient_domain trailing dot", config.PolicyRule{RecipientDomain: []string{"tax.example.net."}}, base, "a@tax.example.net.", true},
		{"recipient_domain not a subdomain", config.PolicyRule{RecipientDomain: []string{"example.net"}}, base, "a@tax.example.net", false},
		{"recipient_domain wildcard", config.PolicyRule{RecipientDomain: []string{"*.example.net"}}, base, "a@tax.example.net", true},
		{"recipient_domain wildcard not apex", config.PolicyRule{RecipientDomain: []string{"*.example.net"}}, base, "a@example.net", false},
		{"recipient_domain_file exact", config.PolicyRule{RecipientDomainFile: domFile}, base, "a@tax.example.net", true},
		{"recipient_domain_file wildcard", config.PolicyRule{RecipientDomainFile: domFile}, base, "a@finance.gov.example", true},
		{"recipient_domain_file miss", config.PolicyRule{RecipientDomainFile: domFile}, base, "a@partner.test", false},
		{"recipient_domain united with file", config.PolicyRule{RecipientDomain: []string{"partner.test"}, RecipientDomainFile: domFile}, base, "a@partner.test", true},
		{"recipient without @", config.PolicyRule{RecipientDomain: []string{"partner.test"}}, base, "partner.test", false},
		{"header equals, case and space", config.PolicyRule{Header: []string{"X-Classification: Confidential"}}, base, "x@partner.test", true},
		{"header other value", config.PolicyRule{Header: []string{"X-Classification: Secret"}}, base, "x@partner.test", false},
		{"header absent", config.PolicyRule{Header: []string{"X-Other: Confidential"}}, base, "x@partner.test", false},
		{"header alternatives", config.PolicyRule{Header: []string{"X-Classification: Secret", "X-Classification: Confidential"}}, base, "x@partner.test", true},
		{"header_match sensitivity label", config.PolicyRule{HeaderMatch: []string{"msip_labels: MSIP_Label_[0-9a-f-]+_Name=highly confidential"}}, base, "x@partner.test", true},
		{"header_match miss", config.PolicyRule{HeaderMatch: []string{"msip_labels: _Name=Public"}}, base, "x@partner.test", false},
		{"header_match anchored", config.PolicyRule{HeaderMatch: []string{"Subject: ^off"}}, base, "x@partner.test", true},
		{"header_match absent header", config.PolicyRule{HeaderMatch: []string{"X-None: .*"}}, base, "x@partner.test", false},
		{"subject_tag", config.PolicyRule{SubjectTag: "[secure]"}, Facts{Subject: "Re: [SECURE] offer"}, "x@partner.test", true},
		{"subject_tag miss", config.PolicyRule{SubjectTag: "[secure]"}, base, "x@partner.test", false},
		{"min_size inclusive", config.PolicyRule{MinSize: 1000}, base, "x@partner.test", true},
		{"min_size miss", config.PolicyRule{MinSize: 1001}, base, "x@partner.test", false},
		{"max_size inclusive", config.PolicyRule{MaxSize: 1000}, base, "x@partner.test", true},
		{"max_size miss", config.PolicyRule{MaxSize: 999}, base, "x@partner.test", false},
		{"all conditions together", config.PolicyRule{Sender: []string{"*@example.org"}, SenderDomain: []string{"example.org"}, SenderGroup: []string{"legal"},
			Recipient: []string{"*@tax.example.net"}, RecipientDomain: []string{"tax.example.net"}, Header: []string{"X-Classification: confidential"},
			HeaderMatch: []string{"msip_labels: Enabled=true"}, SubjectTag: "offer", MinSize: 10, MaxSize: 2000}, base, "a@tax.example.net", true},
		{"all but one", config.PolicyRule{Sender: []string{"*@example.org"}, SenderGroup: []string{"legal"}, RecipientDomain: []string{"tax.example.net"},
			SubjectTag: "offer", MaxSize: 999}, base, "a@tax.example.net", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.rule
			r.Name, r.Sign, r.Encrypt = "hit", "always", "pdf"
			pol := mustCompile(t, config.Policy{Rules: []config.PolicyRule{r, catchAll}})
			d := pol.Decide(tc.f, Recipient{Address: tc.to})
			w := restDecision
			if tc.hit {
				w = hit("hit")
			}
			check(t, d, w)
			assertExplainAgrees(t, pol, tc.f, Recipient{Address: tc.to})
		})
	}
}

func TestDecideActions(t *testing.T) {
	type tc struct {
		name string
		rule config.PolicyRule
		f    Facts
		cert bool
		want want
	}
	r := func(sign, encrypt, onFailure, tls string) config.PolicyRule {
		return config.PolicyRule{Name: "r", Sign: sign, Encrypt: encrypt, OnFailure: onFailure, TLS: tls}
	}
	cal := Facts{Calendar: true}
	cases := []tc{
		{"none", r("always", "none", "hold", "opportunistic"), Facts{}, true, want{"r", ActionDeliver, MethodNone, MethodNone, SignAlways, FailHold, TLSOpportunistic, false, false}},
		{"smime with cert", r("always", "smime", "hold", "required"), Facts{}, true, want{"r", ActionDeliver, MethodSMIME, MethodNone, SignAlways, FailHold, TLSRequired, false, false}},
		{"smime without cert: signed only", r("always", "smime", "hold", "opportunistic"), Facts{}, false, want{"r", ActionDeliver, MethodNone, MethodNone, SignAlways, FailHold, TLSOpportunistic, false, false}},
		{"smime plain on failure", r("if-key", "smime", "plain", "none"), Facts{}, true, want{"r", ActionDeliver, MethodSMIME, MethodNone, SignIfKey, FailPlain, TLSNone, false, false}},
		{"smime-or-pdf with cert", r("always", "smime-or-pdf", "bounce", "opportunistic"), Facts{}, true, want{"r", ActionDeliver, MethodSMIME, MethodPDF, SignAlways, FailBounce, TLSOpportunistic, false, false}},
		{"smime-or-pdf without cert", r("always", "smime-or-pdf", "hold", "opportunistic"), Facts{}, false, want{"r", ActionDeliver, MethodPDF, MethodNone, SignAlways, FailHold, TLSOpportunistic, false, false}},
		{"pdf with cert", r("never", "pdf", "hold", "opportunistic"), Facts{}, true, want{"r", ActionDeliver, MethodPDF, MethodNone, SignNever, FailHold, TLSOpportunistic, false, false}},
		{"smime-required with cert", r("always", "smime-required", "hold", "required"), Facts{}, true, want{"r", ActionDeliver, MethodSMIME, MethodNone, SignAlways, FailHold, TLSRequired, false, false}},
		{"smime-required without cert holds", r("always", "smime-required", "hold", "required"), Facts{}, false, want{"r", ActionHold, MethodNone, MethodNone, SignAlways, FailHold, TLSRequired, false, false}},
		{"smime-required without cert bounces", r("always", "smime-required", "bounce", "required"), Facts{}, false, want{"r", ActionBounce, MethodNone, MethodNone, SignAlways, FailBounce, TLSRequired, false, false}},
		{"absent actions get the defaults", config.PolicyRule{Name: "r"}, Facts{}, false, want{"r", ActionDeliver, MethodPDF, MethodNone, SignAlways, FailHold, TLSOpportunistic, false, false}},
		{"calendar exempt from smime", r("always", "smime", "hold", "opportunistic"), cal, true, want{"r", ActionDeliver, MethodNone, MethodNone, SignAlways, FailHold, TLSOpportunistic, false, true}},
		{"calendar exempt from pdf", r("always", "smime-or-pdf", "hold", "opportunistic"), cal, false, want{"r", ActionDeliver, MethodNone, MethodNone, SignAlways, FailHold, TLSOpportunistic, false, true}},
		{"calendar with encrypt none is not an exemption", r("always", "none", "hold", "opportunistic"), cal, true, want{"r", ActionDeliver, MethodNone, MethodNone, SignAlways, FailHold, TLSOpportunistic, false, false}},
		{"calendar under smime-required still encrypted", r("always", "smime-required", "hold", "opportunistic"), cal, true, want{"r", ActionDeliver, MethodSMIME, MethodNone, SignAlways, FailHold, TLSOpportunistic, false, false}},
		{"calendar under smime-required still held", r("always", "smime-required", "hold", "opportunistic"), cal, false, want{"r", ActionHold, MethodNone, MethodNone, SignAlways, FailHold, TLSOpportunistic, false, false}},
		{"encrypt_calendar", config.PolicyRule{Name: "r", Encrypt: "smime-or-pdf", EncryptCalendar: true}, cal, true, want{"r", ActionDeliver, MethodSMIME, MethodPDF, SignAlways, FailHold, TLSOpportunistic, false, false}},
		{"strip subject tag", config.PolicyRule{Name: "r", SubjectTag: "[secure]", StripSubjectTag: true, Encrypt: "pdf"}, Facts{Subject: "[secure] x"}, false, want{"r", ActionDeliver, MethodPDF, MethodNone, SignAlways, FailHold, TLSOpportunistic, true, false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pol := mustCompile(t, config.Policy{Rules: []config.PolicyRule{c.rule}})
			rc := Recipient{Address: "x@partner.test", HasCert: c.cert}
			d := pol.Decide(c.f, rc)
			check(t, d, c.want)
			if d.StripSubjectTag && d.SubjectTag != "[secure]" {
				t.Errorf("SubjectTag = %q", d.SubjectTag)
			}
			assertExplainAgrees(t, pol, c.f, rc)
		})
	}
}

func TestDecidePrecedence(t *testing.T) {
	pol := mustCompile(t, config.Policy{
		InternalDomains: []string{"example.org", "*.example.org"},
		Rules: []config.PolicyRule{
			{Name: "confidential", Header: []string{"X-Classification: Confidential"}, Encrypt: "smime-required", OnFailure: "hold", TLS: "required"},
			{Name: "tax", RecipientDomain: []string{"tax.example.net"}, Encrypt: "pdf"},
			{Name: "tax-office", Recipient: []string{"office@tax.example.net"}, Encrypt: "smime"},
			{Name: "legal", SenderGroup: []string{"legal"}, Encrypt: "smime-or-pdf"},
		},
	})
	conf := []Header{{"X-Classification", "Confidential"}}
	cases := []struct {
		name string
		f    Facts
		to   string
		rule string
		act  Action
	}{
		{"internal beats every rule", Facts{Headers: conf}, "bob@example.org", RuleInternal, ActionPass},
		{"internal subdomain", Facts{}, "bob@de.example.org", RuleInternal, ActionPass},
		{"first match wins over later, more specific rule", Facts{}, "office@tax.example.net", "tax", ActionDeliver},
		{"earlier rule wins over group rule", Facts{Headers: conf, SenderGroups: []string{"legal"}}, "office@tax.example.net", "confidential", ActionHold},
		{"group rule", Facts{SenderGroups: []string{"legal"}}, "a@partner.test", "legal", ActionDeliver},
		{"no rule: implicit default", Facts{}, "a@partner.test", RuleImplicitDefault, ActionDeliver},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rc := Recipient{Address: c.to}
			d := pol.Decide(c.f, rc)
			if d.Rule != c.rule || d.Action != c.act {
				t.Errorf("got rule %q action %v, want %q %v", d.Rule, d.Action, c.rule, c.act)
			}
			assertExplainAgrees(t, pol, c.f, rc)
		})
	}
	d := pol.Decide(Facts{}, Recipient{Address: "a@partner.test"})
	check(t, d, want{RuleImplicitDefault, ActionDeliver, MethodPDF, MethodNone, SignAlways, FailHold, TLSOpportunistic, false, false})
	if d.RuleIndex != -1 {
		t.Errorf("implicit default RuleIndex = %d", d.RuleIndex)
	}
	in := pol.Decide(Facts{}, Recipient{Address: "bob@example.org", HasCert: true})
	check(t, in, want{RuleInternal, ActionPass, MethodNone, MethodNone, SignNever, FailHold, TLSOpportunistic, false, false})
	if in.Signs() {
		t.Error("internal decision signs")
	}
	if pol.HasCatchAll() {
		t.Error("HasCatchAll without a catch-all")
	}
}

func TestSignFailure(t *testing.T) {
	cases := []struct {
		d    Decision
		act  Action
		sent bool
	}{
		{Decision{Action: ActionDeliver, Sign: SignAlways, OnFailure: FailHold}, ActionHold, false},
		{Decision{Action: ActionDeliver, Sign: SignAlways, OnFailure: FailPlain}, ActionHold, false},
		{Decision{Action: ActionDeliver, Sign: SignAlways, OnFailure: FailBounce}, ActionBounce, false},
		{Decision{Action: ActionDeliver, Sign: SignIfKey}, ActionDeliver, true},
		{Decision{Action: ActionDeliver, Sign: SignNever}, ActionDeliver, true},
		{Decision{Action: ActionPass, Sign: SignNever}, ActionPass, true},
	}
	for _, c := range cases {
		act, ok := c.d.SignFailure()
		if act != c.act || ok != c.sent {
			t.Errorf("%+v: SignFailure = %v,%v want %v,%v", c.d, act, ok, c.act, c.sent)
		}
	}
}

func TestStripTag(t *testing.T) {
	cases := []struct{ subject, tag, want string }{
		{"[secure] Offer", "[secure]", "Offer"},
		{"Re: [SECURE]  Offer", "[secure]", "Re: Offer"},
		{"Offer [Secure]", "[secure]", "Offer"},
		{"Offer", "[secure]", "Offer"},
		{"[secure]", "[secure]", ""},
		{"Grüße [VERTRAULICH] Ä", "[vertraulich]", "Grüße Ä"},
	}
	for _, c := range cases {
		if got := StripTag(c.subject, c.tag); got != c.want {
			t.Errorf("StripTag(%q, %q) = %q, want %q", c.subject, c.tag, got, c.want)
		}
	}
}

func TestGlobMatch(t *testing.T) {
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "abc", true},
		{"a*c", "abbbc", true},
		{"a*c", "abbbd", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a?c", "aüc", true},
		{"*@*.x.org", "a@b.x.org", true},
		{"*@*.x.org", "a@x.org", false},
		{"a**b", "ab", true},
		{"", "", true},
		{"", "a", false},
	}
	for _, c := range cases {
		if got := globMatch(c.pattern, []byte(c.s)); got != c.want {
			t.Errorf("globMatch(%q, %q) = %v", c.pattern, c.s, got)
		}
	}
}

// assertExplainAgrees checks that the indexed Decide and the exhaustive
// Explain reach the same decision, and that Explain's trace is coherent.
func assertExplainAgrees(t testing.TB, pol *Policy, f Facts, r Recipient) {
	t.Helper()
	d := pol.Decide(f, r)
	e := pol.Explain(f, r)
	other := r
	other.HasCert = !r.HasCert
	if d.WantsCertificate() != (pol.Decide(f, other) != d) {
		t.Errorf("WantsCertificate() = %v, but the certificate status changes the decision: %v", d.WantsCertificate(), !d.WantsCertificate())
	}
	if d != e.Decision {
		t.Fatalf("Decide and Explain disagree:\n Decide  %+v\n Explain %+v", d, e.Decision)
	}
	matched := 0
	for _, tr := range e.Trace {
		switch tr.Result {
		case ResultMatched:
			matched++
			if tr.Rule != d.Rule {
				t.Errorf("trace matched %q, decision by %q", tr.Rule, d.Rule)
			}
		case ResultNoMatch:
			if tr.Condition == "" || tr.Reason == "" {
				t.Errorf("trace %+v lacks the failing condition", tr)
			}
		}
	}
	if matched > 1 || (matched == 0 && d.RuleIndex >= 0) {
		t.Errorf("trace has %d matched rules for decision by %q", matched, d.Rule)
	}
}

// manyConditionPolicy has enough group and header rules that Decide looks
// them up in the index instead of evaluating them one by one.
func manyConditionPolicy(t testing.TB) *Policy {
	var rules []config.PolicyRule
	for i := 0; i < 10; i++ {
		n := string(rune('a' + i))
		rules = append(rules,
			config.PolicyRule{Name: "h-" + n, Header: []string{"X-Class-" + n + ": Level " + n}, Encrypt: "smime-required"},
			config.PolicyRule{Name: "m-" + n, HeaderMatch: []string{"X-Label-" + n + ": ^lvl-" + n + "$"}, Encrypt: "pdf"},
			config.PolicyRule{Name: "g-" + n, SenderGroup: []string{"Group-" + n}, Encrypt: "smime-or-pdf"},
		)
	}
	rules = append(rules, config.PolicyRule{Name: "h-kelvin", Header: []string{"X-Kelvin: K"}, Encrypt: "pdf"})
	return mustCompile(t, config.Policy{Rules: append(rules, config.PolicyRule{Name: "rest", Encrypt: "none"})})
}

func TestDecideIndexedGroupsAndHeaders(t *testing.T) {
	pol := manyConditionPolicy(t)
	cases := []struct {
		f    Facts
		rule string
	}{
		{Facts{Headers: []Header{{"x-class-c", " level C "}}}, "h-c"},
		{Facts{Headers: []Header{{"X-Label-d", "LVL-D"}}}, "m-d"},
		{Facts{Headers: []Header{{"X-Label-d", "lvl-dd"}}}, "rest"},
		{Facts{SenderGroups: []string{"other", " group-E "}}, "g-e"},
		{Facts{SenderGroups: []string{"group-e"}, Headers: []Header{{"X-Class-j", "level j"}}}, "g-e"},
		{Facts{Headers: []Header{{"X-Class-\u212a", "level k"}}}, "rest"},
		{Facts{Headers: []Header{{"X-\u212aelvin", "\u212a"}}}, "h-kelvin"},
		{Facts{Headers: []Header{{"X-Class-a", "level b"}, {"X-Class-b", "level b"}}}, "h-b"},
		{Facts{}, "rest"},
	}
	for _, c := range cases {
		r := Recipient{Address: "x@partner.test"}
		if d := pol.Decide(c.f, r); d.Rule != c.rule {
			t.Errorf("%+v: decided by %q, want %q", c.f, d.Rule, c.rule)
		}
		assertExplainAgrees(t, pol, c.f, r)
	}
}
