package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// portalGateway is a gateway whose PDF passwords come only from the
// portal. Deferred messages wait 10 minutes before their next attempt, so
// a PDF that leaves within the test's wait was released by the portal,
// not by a retry.
func portalGateway(t *testing.T) *gw { return portalize(t, newGateway(t, "")) }

// portalize turns g's PDF passwords over to the portal (see portalGateway).
func portalize(t *testing.T, g *gw) *gw {
	cfg, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(cfg), `password = ["subject", "preset"]`, `password = ["portal"]`, 1)
	s = strings.Replace(s, "mode = \"dir\"\n", "mode = \"dir\"\nretry_backoff = \"10m\"\n", 1)
	s += "\n[portal]\nlisten = \"127.0.0.1:0\"\nurl = \"https://secure.example.test\"\n"
	if err := os.WriteFile(g.config, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return g
}

// portalAddr is the portal's address in serve's "listening" line.
func portalAddr(log string) string {
	for _, line := range strings.Split(log, "\n") {
		var rec struct{ Msg, Portal string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" && rec.Portal != "" {
			return rec.Portal
		}
	}
	return ""
}

var portalLinkRE = regexp.MustCompile(`https://secure\.example\.test/p/([A-Za-z0-9_-]{43})`)

// waitPortalMail waits for the portal's mail of kind (invite, reset) to
// rcpt in the outbox and returns the token of its link.
func waitPortalMail(t *testing.T, g *gw, rcpt, kind string) string {
	t.Helper()
	var token string
	waitUntil(t, 45*time.Second, func() bool {
		for _, f := range g.filesFor(rcpt) {
			if !bytes.Contains(f.Msg, []byte("X-Sealgate-Portal: "+kind)) {
				continue
			}
			if l := leaf(f.Msg, "text/plain"); l != nil {
				if m := portalLinkRE.FindSubmatch(l.Decoded); m != nil {
					token = string(m[1])
					return true
				}
			}
		}
		return false
	}, func() string { return "no portal " + kind + " mail for " + rcpt + ":\n" + tail(g.logText(), 30) })
	return token
}

// heading polls the page's h1 until it contains want (the page after a
// submit replaces the one before).
func heading(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	var h1 string
	waitUntil(t, 20*time.Second, func() bool {
		var err error
		h1, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("h1")))
		return err == nil && strings.Contains(h1, want)
	}, func() string { return "page heading " + h1 + ", want " + want })
}

func fill(t *testing.T, ctx context.Context, fields map[string]string, submit string) {
	t.Helper()
	var steps []chromedp.Action[chromedp.Void]
	for id, v := range fields {
		steps = append(steps, chromedp.SendKeys(chromedp.ID(id), v))
	}
	steps = append(steps, chromedp.Click(chromedp.CSS(submit)))
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("filling the form: %v", err)
	}
}

// A recipient without a password gets an invitation; in real Chromium the
// recipient chooses a password; the waiting message then leaves at once
// as PDF mail that opens with that password only; the used link is dead;
// a reset link works the same way. Screenshots of every page at 1280 and
// 390 px go to $SEALGATE_SCREENSHOT_DIR (or a temp dir).
func TestPortalInChromium(t *testing.T) {
	testpeer.Require(t, "qpdf")
	testpeer.Require(t, "pdftotext")
	g := portalGateway(t)
	g.start()
	paddr := portalAddr(g.logText())
	if paddr == "" {
		t.Fatalf("no portal address in the listening line:\n%s", tail(g.logText(), 10))
	}
	base := "https://" + paddr
	const rcpt = "bob@partner.example"
	msg := rfc5322(fields("alice@example.org", rcpt, "Quarterly figures"), "The figures are attached in spirit.\r\n")
	if r := submit(t, g.addr, submission{From: "alice@example.org", To: []string{rcpt}, Data: msg}); r.Code != 250 {
		t.Fatalf("submit: %v", r)
	}
	token := waitPortalMail(t, g, rcpt, "invite")
	// A second message waits too, without a second invitation.
	msg2 := rfc5322(fields("alice@example.org", rcpt, "Second thoughts"), "And a second message.\r\n")
	if r := submit(t, g.addr, submission{From: "alice@example.org", To: []string{rcpt}, Data: msg2}); r.Code != 250 {
		t.Fatalf("submit: %v", r)
	}
	waitUntil(t, 45*time.Second, func() bool {
		n := 0
		for _, e := range g.queueEntries(t) {
			if len(e.Recipients) == 1 && e.Recipients[0] == rcpt {
				if e.State == "held" {
					t.Fatalf("a message is held (%s), want deferred", e.HoldReason)
				}
				if e.State == "deferred" {
					n++
				}
			}
		}
		return n == 2
	}, func() string { return "the two messages are not both deferred:\n" + tail(g.logText(), 20) })
	invites := 0
	for _, f := range g.filesFor(rcpt) {
		if bytes.Contains(f.Msg, []byte("X-Sealgate-Portal: invite")) {
			invites++
		}
	}
	if invites != 1 {
		t.Fatalf("%d invitations for two waiting messages, want 1", invites)
	}
	for _, f := range g.filesFor(rcpt) {
		if leaf(f.Msg, "application/pdf") != nil {
			t.Fatal("a PDF left before the recipient chose a password")
		}
	}

	ctx := testpeer.Chromium(t, 3*time.Minute)
	shots := testpeer.ScreenshotDir(t)
	t.Logf("screenshots in %s", shots)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/p/"+token), chromedp.WaitVisible(chromedp.ID("password"))); err != nil {
		t.Fatalf("opening the invitation link: %v", err)
	}
	heading(t, ctx, "Choose your password")
	testpeer.Screenshots(t, ctx, shots, "1-choose")

	fill(t, ctx, map[string]string{"password": "Password123", "confirm": "Password123"}, "button[type=submit]")
	heading(t, ctx, "Choose your password")
	if txt, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".error"))); err != nil || !strings.Contains(txt, "too easy to guess") {
		t.Fatalf("common password: error %q, %v", txt, err)
	}
	testpeer.Screenshots(t, ctx, shots, "2-refused")

	const password = "violet tram humming 42"
	fill(t, ctx, map[string]string{"password": password, "confirm": password}, "button[type=submit]")
	heading(t, ctx, "Your password is saved")
	testpeer.Screenshots(t, ctx, shots, "3-saved")

	// Both released at once (the next retry would be 10 minutes away).
	var pdfMails [][]byte
	waitUntil(t, 30*time.Second, func() bool {
		pdfMails = nil
		for _, f := range g.filesFor(rcpt) {
			if leaf(f.Msg, "application/pdf") != nil {
				pdfMails = append(pdfMails, f.Msg)
			}
		}
		return len(pdfMails) == 2
	}, func() string { return "not both PDF mails after the password was chosen:\n" + tail(g.logText(), 30) })
	pdfMail := pdfMails[0]
	for _, m := range pdfMails {
		if bytes.Contains(m, []byte("Second thoughts")) {
			assertPDFCarrier(t, m, password, "And a second message.")
		} else {
			pdfMail = m
		}
	}
	assertPDFCarrier(t, pdfMail, password, "The figures are attached in spirit.")
	if l := leaf(pdfMail, "text/plain"); l == nil || !strings.Contains(string(l.Decoded), "the password you chose on") || !strings.Contains(string(l.Decoded), "https://secure.example.test/reset") {
		t.Errorf("the carrier does not say which password (chosen on the portal) nor link to the reset page")
	}

	// The link was used: the neutral page.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/p/"+token)); err != nil {
		t.Fatal(err)
	}
	heading(t, ctx, "This link cannot be used")
	testpeer.Screenshots(t, ctx, shots, "4-used-link")

	// Forgotten password: the reset page, the same answer, a new link.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/reset"), chromedp.WaitVisible(chromedp.ID("email"))); err != nil {
		t.Fatal(err)
	}
	testpeer.Screenshots(t, ctx, shots, "5-forgot")
	fill(t, ctx, map[string]string{"email": rcpt}, "button[type=submit]")
	heading(t, ctx, "Please check your mailbox")
	testpeer.Screenshots(t, ctx, shots, "6-link-sent")
	reset := waitPortalMail(t, g, rcpt, "reset")
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/p/"+reset), chromedp.WaitVisible(chromedp.ID("password"))); err != nil {
		t.Fatal(err)
	}
	heading(t, ctx, "Choose a new password")
	if txt, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".note"))); !strings.Contains(txt, "keep the password") {
		t.Errorf("the reset page does not say that old PDFs keep their password: %q", txt)
	}
	testpeer.Screenshots(t, ctx, shots, "7-reset")

	// The portal serves the recipient pages only, and refuses a
	// cross-origin post even with a form token.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, path := range []string{"/crl", "/healthz", "/metrics"} {
		resp, err := hc.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("portal %s: %d, want 404", path, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest("POST", base+"/p/"+reset, strings.NewReader(url.Values{"password": {password + "x"}, "confirm": {password + "x"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin POST: %d, want 403", resp.StatusCode)
	}
	if resp.Header.Get("Strict-Transport-Security") == "" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("headers on the real listener: %v", resp.Header)
	}
}
