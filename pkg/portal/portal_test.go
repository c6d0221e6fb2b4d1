package portal

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/pdfmail"
	"github.com/sealgate/sealgate/pkg/store"
)

const goodPassword = "violet tram humming 42"

// The invitation path end to end inside the package: the source invites
// once, the page takes the password, the store holds it sealed as the
// portal's, the waker hears of it, and the source then returns it.
func TestInviteChooseAndUse(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok := f.invite(t, "Bob@Partner.Example", "alice@example.org")
	inv := f.mailer.all()[0]
	if inv.from != "alice@example.org" || len(inv.to) != 1 || inv.to[0] != "bob@partner.example" {
		t.Errorf("invitation envelope %q → %v", inv.from, inv.to)
	}
	if bytes.Contains(inv.data, []byte("merger")) {
		t.Error("the invitation carries the message's subject")
	}
	if !bytes.Contains(inv.data, []byte("text/html")) || !bytes.Contains(inv.data, []byte("Auto-Submitted: auto-generated")) {
		t.Error("the invitation lacks its HTML part or Auto-Submitted")
	}
	// A second message to the same recipient waits without a second mail.
	found, err := f.srv.PasswordSource().Lookup(ctx, pdfmail.Query{Sender: "alice@example.org", SenderIsUser: true, Recipient: "bob@partner.example"})
	if err != nil || !found.Pending || len(f.mailer.all()) != 1 {
		t.Fatalf("second message: %v %v, %d mails; want pending and still one invitation", found, err, len(f.mailer.all()))
	}

	c := newClient("198.51.100.7")
	page := c.do(f.h, "GET", "/p/"+tok, nil)
	body := page.Body.String()
	for _, want := range []string{"alice@example.org", "bob@partner.example", `for="password"`, `for="confirm"`, `name="viewport"`, "At least 10 characters"} {
		if !strings.Contains(body, want) {
			t.Errorf("set page lacks %q", want)
		}
	}
	done := c.do(f.h, "POST", "/p/"+tok, url.Values{"csrf": {csrfOf(t, page)}, "password": {goodPassword}, "confirm": {goodPassword}})
	if done.Code != http.StatusOK || !strings.Contains(done.Body.String(), "Your password is saved") {
		t.Fatalf("POST: %d\n%s", done.Code, done.Body)
	}
	pw, source, announced, err := f.st.PDFPasswordState(ctx, "bob@partner.example")
	if err != nil || string(pw) != goodPassword || source != Source || !announced {
		t.Fatalf("stored: %q %q %v %v", pw, source, announced, err)
	}
	if len(f.waker.ready) != 1 || f.waker.ready[0] != "bob@partner.example" {
		t.Errorf("waker heard %v", f.waker.ready)
	}
	found, err = f.srv.PasswordSource().Lookup(ctx, pdfmail.Query{Recipient: "bob@partner.example"})
	if err != nil || string(found.Password) != goodPassword || found.Pending || found.ChosenAt.IsZero() {
		t.Fatalf("after choosing: %v %v (chosen at %v)", found, err, found.ChosenAt)
	}
	// Used once: the link now gives the neutral page.
	if again := c.do(f.h, "GET", "/p/"+tok, nil); again.Code != http.StatusNotFound {
		t.Errorf("reused link: %d", again.Code)
	}
}

// An outsider's From line is never named to the recipient.
func TestInviteNamesOnlyKnownSenders(t *testing.T) {
	f := newFixture(t)
	_, err := f.srv.PasswordSource().Lookup(context.Background(), pdfmail.Query{Sender: "ceo@evil.example", SenderIsUser: false, Recipient: "bob@partner.example"})
	if err != nil {
		t.Fatal(err)
	}
	m := f.mailer.all()[0]
	if bytes.Contains(m.data, []byte("evil.example")) || m.from != "" {
		t.Errorf("outsider named in the invitation (envelope %q):\n%s", m.from, m.data)
	}
}

// A failed queueing leaves the message waiting (not held) and the next
// attempt invites again.
func TestInviteQueueFailureRetries(t *testing.T) {
	f := newFixture(t)
	f.mailer.err = errors.New("spool full")
	q := pdfmail.Query{Sender: "alice@example.org", SenderIsUser: true, Recipient: "bob@partner.example"}
	found, err := f.srv.PasswordSource().Lookup(context.Background(), q)
	if err != nil || !found.Pending {
		t.Fatalf("with the queue failing: %v %v, want pending", found, err)
	}
	f.mailer.err = nil
	f.invite(t, "bob@partner.example", "alice@example.org")
}

// Malformed, unknown, used, expired and foreign tokens get the same
// neutral page, byte for byte.
func TestNeutralPageForBadTokens(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	used := f.invite(t, "used@partner.example", "alice@example.org")
	if w := newClient("192.0.2.50").choose(t, f.h, used, goodPassword, goodPassword); w.Code != http.StatusOK {
		t.Fatal(w.Code)
	}
	mk := func(kind string, expires time.Time) string {
		raw, hash, _ := newToken()
		if _, err := f.st.AddPortalToken(ctx, store.PortalToken{Hash: hash, Kind: kind, Email: "x@partner.example", ExpiresAt: expires}, false); err != nil {
			t.Fatal(err)
		}
		return raw
	}
	unknown, _, _ := newToken()
	tests := map[string]string{
		"malformed":     "not-a-token",
		"too long":      strings.Repeat("A", 44),
		"bad alphabet":  strings.Repeat("+", 43),
		"unknown":       unknown,
		"used":          used,
		"expired":       mk(KindInvite, time.Now().Add(-time.Minute)),
		"foreign kind":  mk("reply", time.Now().Add(time.Hour)),
		"path traverse": "..%2F..%2Fetc%2Fpasswd",
	}
	var first []byte
	i := 0
	for name, tok := range tests {
		i++
		addr := "192.0.2." + strconv.Itoa(100+i) // below the per-address lockout
		t.Run(name, func(t *testing.T) {
			w := newClient(addr).do(f.h, "GET", "/p/"+tok, nil)
			if w.Code != http.StatusNotFound {
				t.Fatalf("status %d, want 404", w.Code)
			}
			if first == nil {
				first = w.Body.Bytes()
			} else if !bytes.Equal(first, w.Body.Bytes()) {
				t.Errorf("page differs from the other bad tokens'")
			}
			if bytes.Contains(w.Body.Bytes(), []byte("x@partner.example")) {
				t.Error("the page names the token's recipient")
			}
		})
	}
}

func TestPasswordRulesOnThePage(t *testing.T) {
	tests := []struct {
		name, pw, confirm, want string
	}{
		{"mismatch", goodPassword, goodPassword + "x", "The two entries differ"},
		{"too short", "tram42!", "tram42!", "too short"},
		{"common", "Password123", "Password123", "too easy to guess"},
		{"common with digits", "qwertzuiop2026", "qwertzuiop2026", "too easy to guess"},
		{"own address", "bob@partner.example", "bob@partner.example", "too easy to guess"},
		{"one character", "aaaaaaaaaaaaaa", "aaaaaaaaaaaaaa", "too easy to guess"},
		{"too long", strings.Repeat("x", 300), strings.Repeat("x", 300), "too long"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tok := f.invite(t, "bob@partner.example", "alice@example.org")
			w := newClient("192.0.2.60").choose(t, f.h, tok, tc.pw, tc.confirm)
			if w.Code != http.StatusUnprocessableEntity || !strings.Contains(w.Body.String(), tc.want) || !strings.Contains(w.Body.String(), `role="alert"`) {
				t.Fatalf("%d, want 422 with %q:\n%s", w.Code, tc.want, w.Body)
			}
			if _, _, _, err := f.st.PDFPasswordState(context.Background(), "bob@partner.example"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("a refused password was stored (%v)", err)
			}
		})
	}
}

// CSRF: the form token must match the cookie, and a browser's
// cross-origin post is refused even with both.
func TestCSRF(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *client, form url.Values)
	}{
		{"no form token", func(_ *client, form url.Values) { form.Del("csrf") }},
		{"wrong form token", func(_ *client, form url.Values) { form.Set("csrf", strings.Repeat("A", 43)) }},
		{"no cookie", func(c *client, _ url.Values) { delete(c.cookies, csrfCookie) }},
		{"cross-site browser post", func(c *client, _ url.Values) { c.header.Set("Sec-Fetch-Site", "cross-site") }},
		{"foreign origin", func(c *client, _ url.Values) { c.header.Set("Origin", "https://evil.example") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tok := f.invite(t, "bob@partner.example", "alice@example.org")
			c := newClient("192.0.2.70")
			page := c.do(f.h, "GET", "/p/"+tok, nil)
			form := url.Values{"csrf": {csrfOf(t, page)}, "password": {goodPassword}, "confirm": {goodPassword}}
			tc.mutate(c, form)
			if w := c.do(f.h, "POST", "/p/"+tok, form); w.Code != http.StatusForbidden {
				t.Fatalf("status %d, want 403", w.Code)
			}
			if _, _, _, err := f.st.PDFPasswordState(context.Background(), "bob@partner.example"); !errors.Is(err, store.ErrNotFound) {
				t.Error("a forged post set the password")
			}
		})
	}
}

// Probing tokens from one address locks that address out (growing
// delay), even for a good link, while others carry on.
func TestLockoutPerClientAddress(t *testing.T) {
	f := newFixture(t)
	tok := f.invite(t, "bob@partner.example", "alice@example.org")
	attacker := newClient("203.0.113.9")
	for i := 0; i < freeFailures; i++ {
		probe, _, _ := newToken()
		if w := attacker.do(f.h, "GET", "/p/"+probe, nil); w.Code != http.StatusNotFound {
			t.Fatalf("probe %d: %d", i, w.Code)
		}
	}
	if w := attacker.do(f.h, "GET", "/p/"+tok, nil); w.Code != http.StatusTooManyRequests {
		t.Fatalf("after %d failed probes a good link gave %d, want 429", freeFailures, w.Code)
	}
	if w := newClient("198.51.100.8").do(f.h, "GET", "/p/"+tok, nil); w.Code != http.StatusOK {
		t.Fatalf("another address is locked out too: %d", w.Code)
	}
}

// Rejected passwords on one link lock the link, whatever the address.
func TestLockoutPerToken(t *testing.T) {
	f := newFixture(t)
	tok := f.invite(t, "bob@partner.example", "alice@example.org")
	for i := 0; i < freeFailures; i++ {
		c := newClient("203.0.113." + string(rune('1'+i)))
		if w := c.choose(t, f.h, tok, "short", "short"); w.Code != http.StatusUnprocessableEntity {
			t.Fatalf("attempt %d: %d", i, w.Code)
		}
	}
	if w := newClient("198.51.100.9").do(f.h, "GET", "/p/"+tok, nil); w.Code != http.StatusTooManyRequests {
		t.Fatalf("locked link from a fresh address: %d, want 429", w.Code)
	}
}

func TestLockDelayGrows(t *testing.T) {
	prev := time.Duration(0)
	for n := 1; n < 40; n++ {
		d := lockDelay(n)
		if d < prev || d > time.Hour {
			t.Fatalf("lockDelay(%d) = %v after %v", n, d, prev)
		}
		prev = d
	}
	if lockDelay(freeFailures-1) != 0 || lockDelay(freeFailures) == 0 || lockDelay(39) != time.Hour {
		t.Errorf("free %v, first %v, cap %v", lockDelay(freeFailures-1), lockDelay(freeFailures), lockDelay(39))
	}
}

// A value from a mail (here the sender's address, which the sender
// writes) is shown as text.
func TestMailValuesEscaped(t *testing.T) {
	f := newFixture(t)
	tok := f.invite(t, "bob@partner.example", `"<script>alert(1)</script>"@example.org`)
	w := newClient("192.0.2.80").do(f.h, "GET", "/p/"+tok, nil)
	body := w.Body.String()
	if strings.Contains(body, "<script") || !strings.Contains(body, "&lt;script&gt;") {
		t.Fatalf("sender not escaped:\n%s", body)
	}
	inv := partOf(t, f.mailer.all()[0].data, "text/html")
	if bytes.Contains(inv, []byte("<script")) || !bytes.Contains(inv, []byte("&lt;script&gt;")) {
		t.Error("the invitation's HTML carries the raw markup")
	}
}

// Every answer carries the headers; no page has a script or inline style.
func TestSecurityHeadersEverywhere(t *testing.T) {
	f := newFixture(t)
	tok := f.invite(t, "bob@partner.example", "alice@example.org")
	for _, path := range []string{"/", "/p/" + tok, "/p/nope", "/reset", "/static/portal.css", "/crl", "/metrics", "/api/v1/events", "/healthz"} {
		w := newClient("192.0.2.90").do(f.h, "GET", path, nil)
		h := w.Header()
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if !strings.HasPrefix(h.Get("Strict-Transport-Security"), "max-age=") || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: headers %v", path, h)
		}
		body := w.Body.String()
		if strings.Contains(body, "<script") || strings.Contains(body, " style=") || strings.Contains(body, "http://") || strings.Contains(body, "https://") {
			t.Errorf("%s: inline script/style or a third-party address in the page", path)
		}
		switch path {
		case "/crl", "/metrics", "/api/v1/events", "/healthz":
			if w.Code != http.StatusNotFound {
				t.Errorf("%s on the portal: %d, want 404 (internal endpoints stay on [http])", path, w.Code)
			}
		}
	}
}

// The reset form answers known and unknown addresses alike; only a known
// one gets a link, and the new password replaces the old for new PDFs.
func TestResetWithoutEnumeration(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if err := f.st.SetPDFPassword(ctx, "bob@partner.example", []byte("the old long password"), Source); err != nil {
		t.Fatal(err)
	}
	ask := func(addr, email string) []byte {
		c := newClient(addr)
		page := c.do(f.h, "GET", "/reset", nil)
		w := c.do(f.h, "POST", "/reset", url.Values{"csrf": {csrfOf(t, page)}, "email": {email}})
		if w.Code != http.StatusOK {
			t.Fatalf("reset %s: %d", email, w.Code)
		}
		return w.Body.Bytes()
	}
	// One instant for both answers: the page names the link's expiry to
	// the minute, and the two requests must not straddle a minute (the
	// clock stays fixed: the reset mail is made in the background).
	now := time.Now()
	f.srv.Now = func() time.Time { return now }
	unknown := ask("192.0.2.100", "nobody@partner.example")
	known := ask("192.0.2.101", "bob@partner.example")
	if !bytes.Equal(unknown, known) {
		t.Error("the reset answer differs between known and unknown addresses")
	}
	mails := f.mailer.waitMails(t, 1)
	if len(mails) != 1 || mails[0].to[0] != "bob@partner.example" {
		t.Fatalf("reset mails %+v, want one to bob", mails)
	}
	tok := tokenIn(t, mails[0].data)
	c := newClient("192.0.2.102")
	page := c.do(f.h, "GET", "/p/"+tok, nil)
	if !strings.Contains(page.Body.String(), "keep the password they were sent with") {
		t.Error("the reset page does not say that old PDFs keep the old password")
	}
	w := c.do(f.h, "POST", "/p/"+tok, url.Values{"csrf": {csrfOf(t, page)}, "password": {goodPassword}, "confirm": {goodPassword}})
	if w.Code != http.StatusOK {
		t.Fatalf("reset POST %d", w.Code)
	}
	if pw, _, _, _ := f.st.PDFPasswordState(ctx, "bob@partner.example"); string(pw) != goodPassword {
		t.Error("the reset did not replace the password")
	}
	// Header injection through the address field gets nothing.
	ask("192.0.2.103", "bob@partner.example\r\nBcc: eve@evil.example")
	if len(f.mailer.all()) != 1 {
		t.Error("a crafted address got a mail")
	}
}

// Asking for reset links over and over slows down (no mail bombing).
func TestResetRateLimited(t *testing.T) {
	f := newFixture(t)
	c := newClient("203.0.113.50")
	var last int
	for i := 0; i <= freeFailures+1; i++ {
		page := c.do(f.h, "GET", "/reset", nil)
		if page.Code == http.StatusTooManyRequests {
			last = page.Code
			break
		}
		last = c.do(f.h, "POST", "/reset", url.Values{"csrf": {csrfOf(t, page)}, "email": {"x@partner.example"}}).Code
	}
	if last != http.StatusTooManyRequests {
		t.Fatalf("after many reset requests: %d, want 429", last)
	}
}

func TestPlainAddress(t *testing.T) {
	for in, want := range map[string]string{
		"Bob@Partner.Example":            "bob@partner.example",
		" bob@partner.example ":          "bob@partner.example",
		"Bob <bob@partner.example>":      "",
		"bob@partner.example, eve@x.org": "",
		"bob@partner.example\r\nBcc: e":  "",
		"bøb@partner.example":            "",
		"":                               "",
		"not an address":                 "",
	} {
		if got := plainAddress(in); got != want {
			t.Errorf("plainAddress(%q) = %q, want %q", in, got, want)
		}
	}
}
