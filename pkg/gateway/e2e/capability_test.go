package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// servePage serves docs/capability-client.html at / from its own loopback
// origin, as an add-in host would, and returns that origin.
func servePage(t *testing.T) string {
	t.Helper()
	page, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "capability-client.html"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// browser starts headless Chromium for the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	exe := testpeer.Require(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Headless, chromedp.DisableGPU, chromedp.WindowSize(1100, 700))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel3)
	return ctx
}

// capabilityRules: casual.test gets opportunistic S/MIME (a signed copy
// without a certificate), everything else S/MIME or PDF.
const capabilityRules = `[[policy.rules]]
name = "casual"
recipient_domain = ["casual.test"]
sign = "always"
encrypt = "smime"
on_failure = "hold"

` + defaultRules

// TestCapabilityClientInChromium drives docs/capability-client.html in
// headless Chromium against a running serve: the page, served from its
// own origin listed in http.cors_origins, asks POST /api/v1/capability
// with a token made by `sealgate api token create` and shows one colour
// per recipient: green S/MIME (certificate imported), yellow PDF (preset
// password), grey signed (opportunistic rule, no certificate), red hold
// (no certificate, no password). The same page from an origin that is not
// listed gets nothing: Chromium's preflight is refused.
func TestCapabilityClientInChromium(t *testing.T) {
	testpeer.Require(t, "openssl")
	testpeer.Require(t, "chromium")
	partners := testpeer.NewPKI(t)
	carol := partners.Issue(t, "carol@partner.test", testpeer.IssueOptions{})
	origin := servePage(t)
	g := newGatewayRules(t, capabilityRules, fmt.Sprintf("\n[trust]\nca_files = [%q, %q]\nsystem_roots = false\n", partners.RootFile, partners.InterFile))
	g.editConfig("[http]\nlisten = \"127.0.0.1:0\"\n", fmt.Sprintf("[http]\nlisten = \"127.0.0.1:0\"\ncors_origins = [%q]\n", origin))
	g.cli("directory", "import", carol.CertFile)
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("Preset-PDF-Password-7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g.cli("pdf", "password", "set", "pat@partner.test", "--password-file", pwFile)
	var tok struct{ Token string }
	if err := json.Unmarshal(g.cli("api", "token", "create", "addin", "--scope", "capability:read", "--output", "json"), &tok); err != nil || tok.Token == "" {
		t.Fatalf("api token create: %v", err)
	}
	g.start()

	ctx := browser(t)
	type row struct{ Recipient, Method, Colour string }
	err := chromedp.Do(ctx,
		chromedp.Navigate(origin+"/"),
		chromedp.SetValue("#base", "http://"+g.http),
		chromedp.SetValue("#token", tok.Token),
		chromedp.SetValue("#sender", "alice@example.org"),
		chromedp.SetValue("#recipients", "carol@partner.test\npat@partner.test\nsam@casual.test\nnobody@other.test"),
		chromedp.Click("#check"),
		chromedp.WaitVisible("#results li:nth-child(4)"),
	)
	if err != nil {
		t.Fatalf("chromium: %v\nserve log:\n%s", err, tail(g.logText(), 20))
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]row](`Array.from(document.querySelectorAll("#results li")).map(li => ({
		Recipient: li.dataset.recipient, Method: li.dataset.method,
		Colour: getComputedStyle(li.querySelector(".dot")).backgroundColor}))`))
	if err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.TempDir(), "capability-client.png")
	if dir := os.Getenv("SEALGATE_SCREENSHOT_DIR"); dir != "" {
		shot = filepath.Join(dir, "capability-client.png")
	}
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
	want := []row{
		{"carol@partner.test", "smime", "rgb(46, 158, 68)"},
		{"pat@partner.test", "pdf", "rgb(240, 196, 25)"},
		{"sam@casual.test", "signed", "rgb(154, 154, 154)"},
		{"nobody@other.test", "hold", "rgb(208, 49, 45)"},
	}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Fatalf("the page shows %+v, want %+v", rows, want)
	}

	t.Run("an origin not in http.cors_origins gets nothing", func(t *testing.T) {
		other := servePage(t) // another port: another origin
		ctx := browser(t)
		err := chromedp.Do(ctx,
			chromedp.Navigate(other+"/"),
			chromedp.SetValue("#base", "http://"+g.http),
			chromedp.SetValue("#token", tok.Token),
			chromedp.SetValue("#sender", "alice@example.org"),
			chromedp.SetValue("#recipients", "carol@partner.test"),
			chromedp.Click("#check"),
		)
		if err != nil {
			t.Fatalf("chromium: %v", err)
		}
		// The page says what happened once fetch settles; poll its status.
		var status string
		waitUntil(t, 30*time.Second, func() bool {
			st, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("status").className + "|" + document.getElementById("status").textContent`))
			status = st
			return err == nil && strings.HasPrefix(st, "error|")
		}, func() string { return "the page's status stayed " + status })
		if !strings.Contains(status, "could not be reached") {
			t.Fatalf("status %q: the browser got an answer for an origin that is not allowed", status)
		}
		if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#results li").length`)); err != nil || n != 0 {
			t.Fatalf("%d results shown (%v)", n, err)
		}
	})
}
