package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sealgate/sealgate/internal/testpeer"
)

var replyLinkRE = regexp.MustCompile(`https://secure\.example\.test/r/[A-Za-z0-9_-]{43}`)

// The secure reply in real Chromium: the PDF (read by qpdf) and its
// carrier carry the reply link; the page refuses a wrong password and
// keeps the text; with the right one the reply and an uploaded file
// arrive for the original sender, threaded under the original message,
// the file byte for byte; an upload over smtp.max_message_bytes gets 413
// and queues nothing; a cross-origin post is refused. Screenshots of the
// reply pages at 1280 and 390 px go to $SEALGATE_SCREENSHOT_DIR.
func TestPortalReplyInChromium(t *testing.T) {
	testpeer.Require(t, "qpdf")
	testpeer.Require(t, "pdftotext")
	g := portalGateway(t)
	g.editConfig(`allowed_networks = ["127.0.0.0/8"]`, "allowed_networks = [\"127.0.0.0/8\"]\nmax_message_bytes = 2000000")
	const (
		rcpt     = "bob@partner.example"
		sender   = "alice@example.org"
		password = "violet tram humming 42"
	)
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(password), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sealgateBinary(t), "pdf", "password", "set", rcpt, "--password-file", pwFile, "--config", g.config).CombinedOutput(); err != nil {
		t.Fatalf("pdf password set: %v\n%s", err, out)
	}
	g.start()
	paddr := portalAddr(g.logText())
	if paddr == "" {
		t.Fatalf("no portal address in the listening line:\n%s", tail(g.logText(), 10))
	}
	base := "https://" + paddr

	msg := rfc5322(fields(sender, rcpt, "Quarterly <figures> & plans"), "Please send the signed contract back.\r\n")
	orig, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	origID := orig.Header.Get("Message-ID")
	if r := submit(t, g.addr, submission{From: sender, To: []string{rcpt}, Data: msg}); r.Code != 250 {
		t.Fatalf("submit: %v", r)
	}
	carrier := g.waitFile(t, "the PDF mail", func(f outboxFile) bool {
		return len(f.Rcpts) == 1 && f.Rcpts[0] == rcpt && leaf(f.Msg, "application/pdf") != nil
	}).Msg
	text := leaf(carrier, "text/plain")
	if text == nil {
		t.Fatal("the carrier has no text part")
	}
	link := replyLinkRE.FindString(string(text.Decoded))
	if link == "" {
		t.Fatalf("no reply link in the carrier:\n%s", text.Decoded)
	}
	pdf := filepath.Join(t.TempDir(), "message.pdf")
	if err := os.WriteFile(pdf, leaf(carrier, "application/pdf").Decoded, 0o600); err != nil {
		t.Fatal(err)
	}
	if links := testpeer.PDFFirstPageLinks(t, pdf, password); len(links) != 1 || links[0] != link {
		t.Fatalf("links on the PDF's first page %v, want the carrier's %s", links, link)
	}
	page := base + strings.TrimPrefix(link, "https://secure.example.test")

	upload := make([]byte, 300<<10)
	_, _ = rand.Read(upload)
	file := filepath.Join(t.TempDir(), "figures.bin")
	if err := os.WriteFile(file, upload, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx := testpeer.Chromium(t, 3*time.Minute)
	shots := testpeer.ScreenshotDir(t)
	t.Logf("screenshots in %s", shots)
	if err := chromedp.Do(ctx, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.ID("password"))); err != nil {
		t.Fatalf("opening the reply link: %v", err)
	}
	heading(t, ctx, "Reply securely")
	if s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".subject strong"))); err != nil || s != "Quarterly <figures> & plans" {
		t.Errorf("subject shown as %q (%v)", s, err)
	}
	testpeer.Screenshots(t, ctx, shots, "reply-1-form")

	// A wrong password: refused, the text kept.
	const reply = "Signed contract attached.\nRegards, Bob"
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("password"), "not my password"), chromedp.SendKeys(chromedp.ID("text"), reply),
		chromedp.SetUploadFiles(chromedp.ID("files"), []string{file}), chromedp.Click(chromedp.CSS("button[type=submit]"))); err != nil {
		t.Fatalf("filling the form: %v", err)
	}
	waitUntil(t, 20*time.Second, func() bool {
		txt, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".error")))
		return err == nil && strings.Contains(txt, "not the password")
	}, func() string { return "no wrong-password error" })
	if v, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("text"))); err != nil || strings.TrimSpace(strings.ReplaceAll(v, "\r", "")) != reply {
		t.Errorf("the text after a wrong password: %q, %v", v, err)
	}
	testpeer.Screenshots(t, ctx, shots, "reply-2-wrong-password")

	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("password"), password), chromedp.SetUploadFiles(chromedp.ID("files"), []string{file}),
		chromedp.Click(chromedp.CSS("button[type=submit]"))); err != nil {
		t.Fatalf("submitting: %v", err)
	}
	heading(t, ctx, "Your reply is on its way")
	testpeer.Screenshots(t, ctx, shots, "reply-3-sent")

	got := g.waitFile(t, "the reply", func(f outboxFile) bool {
		return len(f.Rcpts) == 1 && f.Rcpts[0] == sender && bytes.Contains(f.Msg, []byte("X-Sealgate-Portal: reply"))
	}).Msg
	rm, err := mail.ReadMessage(bytes.NewReader(got))
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := new(mime.WordDecoder).DecodeHeader(rm.Header.Get("Subject"))
	for k, want := range map[string]string{"From": rcpt, "To": sender, "In-Reply-To": origID, "References": origID} {
		if v := rm.Header.Get(k); v != want {
			t.Errorf("reply %s: %q, want %q", k, v, want)
		}
	}
	if subject != "Re: Quarterly <figures> & plans" {
		t.Errorf("reply subject %q", subject)
	}
	if id := rm.Header.Get("Message-ID"); id == "" || id == origID {
		t.Errorf("reply Message-ID %q", id)
	}
	var att *mimeLeaf
	for _, l := range leavesOf(got) {
		if _, params, err := mime.ParseMediaType(l.Header.Get("Content-Disposition")); err == nil && params["filename"] == "figures.bin" {
			att = &l
		}
	}
	if att == nil || !bytes.Equal(att.Decoded, upload) {
		t.Fatalf("the uploaded file did not arrive byte for byte")
	}
	if l := leaf(got, "text/plain"); l == nil || !strings.Contains(string(l.Decoded), "Signed contract attached.\r\nRegards, Bob") {
		t.Errorf("reply text missing")
	}

	// Over smtp.max_message_bytes in the browser: the page says so.
	bigFile := filepath.Join(t.TempDir(), "big.bin")
	if err := os.WriteFile(bigFile, bytes.Repeat([]byte("y"), 3_000_000), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.SendKeys(chromedp.ID("password"), password), chromedp.SetUploadFiles(chromedp.ID("files"), []string{bigFile}),
		chromedp.Click(chromedp.CSS("button[type=submit]"))); err != nil {
		t.Fatalf("submitting a large file: %v", err)
	}
	heading(t, ctx, "too large")
	testpeer.Screenshots(t, ctx, shots, "reply-4-too-large")

	// The same without a browser, and a cross-origin post: 413 with a
	// page that says so and 403, nothing queued.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	var big bytes.Buffer
	mw := multipart.NewWriter(&big)
	_ = mw.WriteField("password", password)
	fw, _ := mw.CreateFormFile("files", "big.bin")
	_, _ = fw.Write(bytes.Repeat([]byte("x"), 3_000_000))
	_ = mw.Close()
	before := len(g.filesFor(sender))
	for _, tc := range []struct {
		name   string
		origin string
		want   int
	}{{"oversized", "", http.StatusRequestEntityTooLarge}, {"cross-origin", "https://evil.example", http.StatusForbidden}} {
		req, _ := http.NewRequest("POST", page, bytes.NewReader(big.Bytes()))
		req.Header.Set("Content-Type", mw.FormDataContentType())
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body := new(bytes.Buffer)
		_, _ = body.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
		if tc.want == http.StatusRequestEntityTooLarge && !strings.Contains(body.String(), "too large") {
			t.Errorf("413 page: %s", body)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // give a wrongly queued reply the time to show
	if n := len(g.filesFor(sender)); n != before {
		t.Errorf("%d more mails for the sender after refused posts", n-before)
	}
	for _, e := range g.queueEntries(t) {
		t.Errorf("left in the queue: %+v", e)
	}
}

// ifKeyRules sign what our users send and let mail from elsewhere pass
// unsigned: the reply of a PDF recipient is theirs, not our user's.
const ifKeyRules = `[[policy.rules]]
name = "default"
sign = "if-key"
encrypt = "smime-or-pdf"
on_failure = "hold"
`

// A PDF whose original sender is outside the organisation: the reply
// takes the outbound way, so it leaves encrypted to the sender's own
// certificate (openssl decrypts it with the sender's key) and unsigned
// (the gateway signs only as its users), threaded and with the file.
func TestPortalReplyToOutsideSender(t *testing.T) {
	testpeer.Require(t, "openssl")
	partners := testpeer.NewPKI(t)
	carol := partners.Issue(t, "carol@partner.test", testpeer.IssueOptions{})
	g := portalize(t, newGatewayRules(t, ifKeyRules, fmt.Sprintf("\n[trust]\nca_files = [%q, %q]\nsystem_roots = false\n", partners.RootFile, partners.InterFile)))
	const (
		rcpt     = "bob@partner.example"
		password = "violet tram humming 42"
	)
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(password), 0o600); err != nil {
		t.Fatal(err)
	}
	g.cli("pdf", "password", "set", rcpt, "--password-file", pwFile)
	g.cli("directory", "import", carol.CertFile)
	g.start()
	base := "https://" + portalAddr(g.logText())

	msg := rfc5322(fields(carol.Email, rcpt, "Offer from outside"), "Our offer.\r\n")
	orig, _ := mail.ReadMessage(bytes.NewReader(msg))
	if r := submit(t, g.addr, submission{From: carol.Email, To: []string{rcpt}, Data: msg}); r.Code != 250 {
		t.Fatalf("submit: %v", r)
	}
	carrier := g.waitFile(t, "the PDF mail", func(f outboxFile) bool {
		return len(f.Rcpts) == 1 && f.Rcpts[0] == rcpt && leaf(f.Msg, "application/pdf") != nil
	}).Msg
	link := replyLinkRE.FindString(string(leaf(carrier, "text/plain").Decoded))
	if link == "" {
		t.Fatal("no reply link in the carrier")
	}
	page := base + strings.TrimPrefix(link, "https://secure.example.test")

	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Get(page)
	if err != nil {
		t.Fatal(err)
	}
	form, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(form)
	if m == nil {
		t.Fatalf("no form:\n%s", form)
	}
	file := make([]byte, 50<<10)
	_, _ = rand.Read(file)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("csrf", string(m[1]))
	_ = mw.WriteField("password", password)
	_ = mw.WriteField("text", "We accept.")
	fw, _ := mw.CreateFormFile("files", "acceptance.bin")
	_, _ = fw.Write(file)
	_ = mw.Close()
	resp, err = hc.Post(page, mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reply POST: %d", resp.StatusCode)
	}
	got := g.waitFile(t, "the reply", func(f outboxFile) bool {
		return len(f.Rcpts) == 1 && f.Rcpts[0] == carol.Email
	}).Msg
	if leaks(got, "We accept.") || bytes.Contains(got, []byte("X-Sealgate-Portal: reply")) && leaf(got, "application/pkcs7-mime") == nil {
		t.Fatalf("the reply to an outside sender left readable:\n%s", clip(got))
	}
	res := cmsDecrypt(t, got, carol)
	if res.ExitCode != 0 {
		t.Fatalf("openssl cms -decrypt with the sender's key: %s", res.Stderr)
	}
	inner := res.Stdout
	if bytes.Contains(inner, []byte("multipart/signed")) || leaf(inner, "application/pkcs7-signature") != nil {
		t.Error("the reply was signed (as whom?)")
	}
	var att []byte
	for _, l := range leavesOf(inner) {
		if _, p, err := mime.ParseMediaType(l.Header.Get("Content-Disposition")); err == nil && p["filename"] == "acceptance.bin" {
			att = l.Decoded
		}
	}
	if !bytes.Equal(att, file) || !bytes.Contains(inner, []byte("We accept.")) {
		t.Fatal("the decrypted reply lacks the text or the file")
	}
	rh, err := mail.ReadMessage(bytes.NewReader(got))
	if err != nil {
		t.Fatal(err)
	}
	if rh.Header.Get("From") != rcpt || rh.Header.Get("In-Reply-To") != orig.Header.Get("Message-ID") {
		t.Errorf("reply header From %q In-Reply-To %q", rh.Header.Get("From"), rh.Header.Get("In-Reply-To"))
	}
}

// pdf.hide_subject through serve: the carrier's subject is neutral, the
// original is nowhere outside the encrypted PDF (which pdftotext opens
// with the password and shows it), and the reply page does not show it.
func TestHideSubjectServe(t *testing.T) {
	testpeer.Require(t, "pdftotext")
	g := portalGateway(t)
	g.editConfig(`password = ["portal"]`, "password = [\"portal\"]\nhide_subject = true")
	const (
		rcpt     = "bob@partner.example"
		password = "violet tram humming 42"
	)
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(password), 0o600); err != nil {
		t.Fatal(err)
	}
	g.cli("pdf", "password", "set", rcpt, "--password-file", pwFile)
	g.start()
	base := "https://" + portalAddr(g.logText())
	if r := submit(t, g.addr, submission{From: "alice@example.org", To: []string{rcpt}, Data: rfc5322(fields("alice@example.org", rcpt, "Takeover of Contoso"), "Confidential.\r\n")}); r.Code != 250 {
		t.Fatalf("submit: %v", r)
	}
	carrier := g.waitFile(t, "the PDF mail", func(f outboxFile) bool {
		return len(f.Rcpts) == 1 && f.Rcpts[0] == rcpt && leaf(f.Msg, "application/pdf") != nil
	}).Msg
	m, err := mail.ReadMessage(bytes.NewReader(carrier))
	if err != nil {
		t.Fatal(err)
	}
	if s := m.Header.Get("Subject"); s != "Encrypted message" {
		t.Errorf("carrier subject %q", s)
	}
	for _, l := range leavesOf(carrier) {
		if l.Type != "application/pdf" && bytes.Contains(l.Decoded, []byte("Contoso")) {
			t.Errorf("the subject is in the carrier's %s part", l.Type)
		}
	}
	pdf := filepath.Join(t.TempDir(), "m.pdf")
	if err := os.WriteFile(pdf, leaf(carrier, "application/pdf").Decoded, 0o600); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(testpeer.PDFText(t, pdf, password, false), "Takeover of Contoso") {
		t.Error("the PDF lost the subject")
	}
	link := replyLinkRE.FindString(string(leaf(carrier, "text/plain").Decoded))
	if link == "" {
		t.Fatal("no reply link")
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Get(base + strings.TrimPrefix(link, "https://secure.example.test"))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || bytes.Contains(page, []byte("Contoso")) {
		t.Errorf("reply page %d shows the subject: %v", resp.StatusCode, bytes.Contains(page, []byte("Contoso")))
	}
}
