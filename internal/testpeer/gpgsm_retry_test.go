package testpeer

import "testing"

func TestGpgsmForgetAndReimport(t *testing.T) {
	Require(t, "gpgsm")
	pki := NewPKI(t)
	id := pki.Issue(t, "retry@example.org", IssueOptions{})
	g := NewGpgsm(t, pki, id)
	if !g.keyWorks(t, id) {
		t.Fatal("key does not work after import")
	}
	g.forgetKey(t, id)
	if g.keyWorks(t, id) {
		t.Fatal("key still works after forgetKey")
	}
	pki.exportP12(t, id)
	g.importP12(t, pki, id)
	if !g.keyWorks(t, id) {
		t.Fatal("key does not work after reimport")
	}
}
