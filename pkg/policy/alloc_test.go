//go:build !race

package policy

import "testing"

// TestDecideDoesNotAllocate holds Decide to its promise of no allocation
// (up to 512 rules), for every kind of outcome. The race detector adds
// allocations of its own, hence the build tag.
func TestDecideDoesNotAllocate(t *testing.T) {
	pol := bigPolicy(t)
	f := typicalFacts()
	withHeaders := f
	withHeaders.Headers = append(append([]Header(nil), f.Headers...), Header{"X-Classification", "Confidential"},
		Header{"msip_labels", "MSIP_Label_12ab-cd_Enabled=true; MSIP_Label_12ab-cd_Name=Confidential"})
	withHeaders.Subject = "[secure] x"
	for _, to := range []string{"someone@unknown.example", "bob@mail.partner99.example", "x@supplier7.example", "clerk17@tax.example", "bob@example.org"} {
		for _, facts := range []Facts{f, withHeaders} {
			r := Recipient{Address: to, HasCert: true}
			if n := testing.AllocsPerRun(100, func() { pol.Decide(facts, r) }); n != 0 {
				t.Errorf("Decide to %s allocates %.0f times per call", to, n)
			}
		}
	}
	many := manyConditionPolicy(t)
	facts := Facts{SenderGroups: []string{"x", "group-j"}, Headers: []Header{{"X-Class-c", "level c"}, {"X-Label-d", "lvl-d"}}}
	if n := testing.AllocsPerRun(100, func() { many.Decide(facts, Recipient{Address: "x@partner.test"}) }); n != 0 {
		t.Errorf("Decide with indexed groups and headers allocates %.0f times per call", n)
	}
}
