package policy

import (
	"fmt"
	"testing"

	"github.com/sealgate/sealgate/pkg/config"
)

// bigPolicy is a 200-rule policy shaped like a large customer's: a few
// classification rules, many partner-domain rules (one per partner, some
// per department), per-address rules, and a catch-all.
func bigPolicy(tb testing.TB) *Policy {
	rules := []config.PolicyRule{
		{Name: "confidential", Header: []string{"X-Classification: Confidential"}, Encrypt: "smime-required", TLS: "required"},
		{Name: "label", HeaderMatch: []string{"msip_labels: MSIP_Label_[0-9a-f-]+_Name=(Confidential|Highly Confidential)"}, Encrypt: "smime-required"},
		{Name: "secure-subject", SubjectTag: "[secure]", StripSubjectTag: true, Encrypt: "smime-or-pdf"},
		{Name: "huge", MinSize: 50 << 20, Encrypt: "none"},
	}
	for i := 0; len(rules) < 150; i++ {
		rules = append(rules, config.PolicyRule{Name: fmt.Sprintf("partner-%d", i),
			RecipientDomain: []string{fmt.Sprintf("partner%d.example", i), fmt.Sprintf("*.partner%d.example", i)}, Encrypt: "smime-or-pdf"})
	}
	for i := 0; len(rules) < 170; i++ {
		rules = append(rules, config.PolicyRule{Name: fmt.Sprintf("dept-%d", i), SenderGroup: []string{fmt.Sprintf("dept-%d", i)},
			RecipientDomain: []string{fmt.Sprintf("supplier%d.example", i)}, Encrypt: "pdf"})
	}
	for i := 0; len(rules) < 190; i++ {
		rules = append(rules, config.PolicyRule{Name: fmt.Sprintf("person-%d", i), Recipient: []string{fmt.Sprintf("clerk%d@tax.example", i)}, Encrypt: "pdf"})
	}
	for i := 0; len(rules) < 199; i++ {
		rules = append(rules, config.PolicyRule{Name: fmt.Sprintf("exec-%d", i), Sender: []string{fmt.Sprintf("exec%d@example.org", i)}, Encrypt: "smime-required"})
	}
	rules = append(rules, config.PolicyRule{Name: "default", Encrypt: "smime"})
	pol, err := Compile(config.Policy{InternalDomains: []string{"example.org"}, Rules: rules}, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return pol
}

// typicalFacts is an Exchange-relayed message with a dozen header fields.
func typicalFacts() Facts {
	return Facts{
		Sender:       "alice@example.org",
		SenderGroups: []string{"smime-users", "dept-7", "all-staff"},
		Subject:      "Quarterly figures",
		Size:         48_000,
		Headers: []Header{
			{"Received", "from exchange.example.org by sealgate"},
			{"From", "Alice Example <alice@example.org>"},
			{"To", "partner <bob@partner99.example>"},
			{"Subject", "Quarterly figures"},
			{"Date", "Wed, 25 Nov 2026 09:00:00 +0000"},
			{"Message-ID", "<abc@example.org>"},
			{"MIME-Version", "1.0"},
			{"Content-Type", "multipart/mixed; boundary=x"},
			{"X-MS-Exchange-Organization-AuthAs", "Internal"},
			{"X-MS-Has-Attach", "yes"},
			{"Thread-Topic", "Quarterly figures"},
			{"Content-Language", "en-US"},
		},
	}
}

func BenchmarkDecide200Rules(b *testing.B) {
	pol := bigPolicy(b)
	cases := []struct {
		name string
		to   string
		want string
	}{
		{"catch-all", "someone@unknown.example", "default"},
		{"partner-subdomain", "bob@mail.partner99.example", "partner-99"},
		{"dept-and-domain", "x@supplier7.example", "dept-7"},
		{"address", "clerk17@tax.example", "person-17"},
		{"internal", "bob@example.org", RuleInternal},
	}
	f := typicalFacts()
	for _, c := range cases {
		r := Recipient{Address: c.to, HasCert: true}
		if d := pol.Decide(f, r); d.Rule != c.want {
			b.Fatalf("%s: decided by %q, want %q", c.name, d.Rule, c.want)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				pol.Decide(f, r)
			}
		})
	}
}

// BenchmarkExplain is the exhaustive path `policy explain` uses: no index,
// every rule evaluated, reasons formatted.
func BenchmarkExplain200Rules(b *testing.B) {
	pol := bigPolicy(b)
	f := typicalFacts()
	r := Recipient{Address: "someone@unknown.example"}
	b.ReportAllocs()
	for b.Loop() {
		pol.Explain(f, r)
	}
}

// BenchmarkCompile200Rules is the one-time cost at startup and reload.
func BenchmarkCompile200Rules(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		bigPolicy(b)
	}
}
