package portal

import (
	"net/http"
	"net/url"
	"strconv"
	"testing"
)

// BenchmarkSetPage is one GET of the set-password page: token checked
// against the store (SQLite), lockout read, page rendered.
func BenchmarkSetPage(b *testing.B) {
	f := newFixture(b)
	tok := f.invite(b, "bob@partner.example", "alice@example.org")
	c := newClient("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		if w := c.do(f.h, "GET", "/p/"+tok, nil); w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

// BenchmarkChoosePassword is one accepted POST: checks, the token spent
// and the password sealed and stored in one transaction, the done page.
func BenchmarkChoosePassword(b *testing.B) {
	f := newFixture(b)
	toks := make([]string, 0, 1024)
	csrf := ""
	c := newClient("192.0.2.2")
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		if len(toks) == 0 {
			for j := 0; j < 256; j++ {
				i++
				toks = append(toks, f.invite(b, "r"+strconv.Itoa(i)+"@partner.example", "alice@example.org"))
			}
			csrf = csrfOf(b, c.do(f.h, "GET", "/p/"+toks[0], nil))
		}
		tok := toks[len(toks)-1]
		toks = toks[:len(toks)-1]
		b.StartTimer()
		w := c.do(f.h, "POST", "/p/"+tok, url.Values{"csrf": {csrf}, "password": {goodPassword}, "confirm": {goodPassword}})
		if w.Code != http.StatusOK {
			b.Fatal(w.Code, w.Body)
		}
	}
}

// BenchmarkCheckPassword is the rule alone.
func BenchmarkCheckPassword(b *testing.B) {
	for b.Loop() {
		if checkPassword(goodPassword, goodPassword, "bob@partner.example", 10) != pwOK {
			b.Fatal("refused")
		}
	}
}
