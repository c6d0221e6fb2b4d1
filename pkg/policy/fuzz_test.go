package policy

import (
	"strings"
	"testing"

	"github.com/sealgate/sealgate/pkg/config"
)

// FuzzCompile feeds arbitrary rule text to Compile: it must never panic,
// and a policy that compiles must decide exactly like its exhaustive
// explanation for a message built from the same text.
func FuzzCompile(f *testing.F) {
	f.Add("alice@example.org", "example.org", "legal", "*@tax.example.net", "*.gov.example",
		"X-Classification: Confidential", "msip_labels: _Name=Confidential", "[secure]", "smime-required", "hold", int64(0), int64(0))
	f.Add("a*?@x", "*.x", "", "b@y", "y", "X-A: v", "Subject: ^re:", "", "smime-or-pdf", "plain", int64(5), int64(1))
	f.Add("", "", "", "", "", "bad header", "X: (", " ", "nope", "drop", int64(-1), int64(10))
	f.Add("@", "a..b", "G", "*@*.", "*", ":", ":", "[", "pdf", "bounce", int64(0), int64(0))
	f.Fuzz(func(t *testing.T, sender, senderDomain, group, recipient, recipientDomain, header, headerMatch, tag, encrypt, onFailure string, minSize, maxSize int64) {
		list := func(s string) []string {
			if s == "" {
				return nil
			}
			return strings.Split(s, "|")
		}
		r := config.PolicyRule{Name: "fuzz", Sender: list(sender), SenderDomain: list(senderDomain), SenderGroup: list(group),
			Recipient: list(recipient), RecipientDomain: list(recipientDomain), Header: list(header), HeaderMatch: list(headerMatch),
			SubjectTag: tag, MinSize: minSize, MaxSize: maxSize, Encrypt: encrypt, OnFailure: onFailure}
		pol, err := Compile(config.Policy{InternalDomains: list(recipientDomain), Rules: []config.PolicyRule{r, {Name: "rest", Encrypt: "none"}}}, Options{})
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		hname, hval, _ := strings.Cut(header, ":")
		mname, mval, _ := strings.Cut(headerMatch, ":")
		facts := Facts{Sender: sender, SenderGroups: list(group), Subject: tag + " x", Size: minSize,
			Headers: []Header{{hname, hval}, {mname, mval}, {strings.ToUpper(hname), strings.ToUpper(hval)}}}
		for _, to := range []string{recipient, "x@" + recipientDomain, "x@a." + recipientDomain, strings.ToUpper(recipient)} {
			assertExplainAgrees(t, pol, facts, Recipient{Address: to})
		}
	})
}

// FuzzDecide throws arbitrary facts at a policy that uses every kind of
// condition: the indexed Decide must agree with the exhaustive Explain.
func FuzzDecide(f *testing.F) {
	pol, err := Compile(config.Policy{
		InternalDomains: []string{"example.org"},
		Rules: []config.PolicyRule{
			{Name: "conf", Header: []string{"X-Classification: Confidential", "X-Kelvin: K"}, Encrypt: "smime-required"},
			{Name: "label", HeaderMatch: []string{"msip_labels: Name=(Confidential|Secret)"}, Encrypt: "smime-or-pdf"},
			{Name: "legal", SenderGroup: []string{"Legal"}, RecipientDomain: []string{"*.partner.test"}, Encrypt: "pdf"},
			{Name: "ceo", Sender: []string{"ceo@example.org", "*@board.example.org"}, Encrypt: "smime-required", OnFailure: "bounce"},
			{Name: "glob", Recipient: []string{"tax-*@*.gov.test"}, Encrypt: "pdf"},
			{Name: "tax", Recipient: []string{"office@tax.test", "*@*.tax.test"}, SenderDomain: []string{"example.org"}, Encrypt: "pdf"},
			{Name: "tag", SubjectTag: "[Secure]", MaxSize: 1 << 20, Encrypt: "smime-or-pdf"},
			{Name: "big", MinSize: 1 << 20, Sign: "never", Encrypt: "none"},
			{Name: "rest", Encrypt: "smime"},
		},
	}, Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("alice@example.org", "legal", "X-Classification", "confidential", "[secure] hi", "bob@a.partner.test", int64(10), false)
	f.Add("ceo@EXAMPLE.org", "", "msip_labels", "x; Name=Secret", "", "tax-1@x.gov.test", int64(2<<20), true)
	f.Add("a@example.org", "", "X-\u212aelvin", "\u212a", "", "office@TAX.test", int64(0), false)
	f.Add("\xff@\xfe", "\xff", "\xff", "\xff", "\xff", "\xff@\xff.", int64(-1), true)
	f.Add("a@b.test", "Group-C", "X-\u212aelvin", "\u212a", "", "x@y.test", int64(1), false)
	f.Add("a@b.test", "", "x-label-e", "LVL-E", "", "x@y.test", int64(1), false)
	many := manyConditionPolicy(f)
	f.Fuzz(func(t *testing.T, sender, group, hname, hval, subject, to string, size int64, cert bool) {
		facts := Facts{Sender: sender, SenderGroups: []string{group}, Subject: subject, Size: size, Calendar: cert && size%2 == 0,
			Headers: []Header{{"Subject", subject}, {hname, hval}}}
		assertExplainAgrees(t, pol, facts, Recipient{Address: to, HasCert: cert})
		assertExplainAgrees(t, many, facts, Recipient{Address: to, HasCert: cert})
	})
}

// FuzzParseHeaderCondition checks the header-condition parser on
// arbitrary input: no panic, and what it accepts is a valid name with a
// trimmed, non-empty value that round-trips.
func FuzzParseHeaderCondition(f *testing.F) {
	for _, s := range []string{"X-Classification: Confidential", "a:b", ":", "", " x: y", "X\x00: y", "msip_labels: MSIP_Label_1_Enabled=true"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, value, err := ParseHeaderCondition(s)
		if err != nil {
			return
		}
		if name == "" || value == "" || strings.TrimSpace(value) != value || strings.ContainsAny(name, ": \t") {
			t.Fatalf("accepted %q as %q / %q", s, name, value)
		}
		n2, v2, err := ParseHeaderCondition(name + ": " + value)
		if err != nil || n2 != name || v2 != value {
			t.Fatalf("round trip of %q: %q %q %v", s, n2, v2, err)
		}
	})
}
