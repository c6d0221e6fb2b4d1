// Package e2e runs the sealgate binary against real peers: swaks, openssl,
// qpdf, poppler, Postfix. It lives apart from cmd/sealgate so that it builds
// the command as a user would and keeps its process-level tests together.
package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// binaryBuild is one build of the command, made at most once per test run.
type binaryBuild struct {
	tags string // go build -tags
	once sync.Once
	path string
	err  error
}

var (
	releaseBuild = &binaryBuild{}
	// drillBuild has the crash drills' hooks (cmd/sealgate/drill_hooks.go).
	drillBuild = &binaryBuild{tags: "sealgate_drill"}
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, b := range []*binaryBuild{releaseBuild, drillBuild} {
		if b.path != "" {
			os.RemoveAll(filepath.Dir(b.path))
		}
	}
	os.Exit(code)
}

// sealgateBinary builds the command once per test run, for tests that need
// a real process (signals, kill -9).
func sealgateBinary(t *testing.T) string { return releaseBuild.get(t) }

func (b *binaryBuild) get(t *testing.T) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "sealgate-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "sealgate")
		out, err := exec.Command("go", "build", "-tags", b.tags, "-o", b.path, "github.com/sealgate/sealgate/cmd/sealgate").CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build -tags %q: %v\n%s", b.tags, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

type gw struct {
	t      *testing.T
	dir    string
	config string
	addr   string // SMTP
	http   string // [http] listen, as serve bound it
	cmd    *exec.Cmd
	log    *bytes.Buffer
	logMu  *sync.Mutex
	cwd    string // working directory of serve; "" = the test's
}

type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// defaultRules: a confidential label demands S/MIME, everything else goes
// S/MIME or PDF.
const defaultRules = `[[policy.rules]]
name = "confidential"
header = ["X-Classification: Confidential"]
sign = "always"
encrypt = "smime-required"
on_failure = "hold"

[[policy.rules]]
name = "default"
sign = "always"
encrypt = "smime-or-pdf"
on_failure = "hold"
`

// newGateway writes a config for a gateway in a temp dir; extra is
// appended (trust, key servers).
func newGateway(t *testing.T, extra string) *gw {
	return newGatewayRules(t, defaultRules, extra)
}

// newGatewayRules is newGateway with its own [[policy.rules]].
func newGatewayRules(t *testing.T, rules, extra string) *gw {
	dir := t.TempDir()
	g := &gw{t: t, dir: dir, log: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	// Port 0: serve binds a free port and logs it (start reads it), so no
	// other package's server can take the port between a pick and the bind.
	cfg := fmt.Sprintf(`data_dir = %q

[http]
listen = "127.0.0.1:0"

[smtp]
listen = "127.0.0.1:0"
hostname = "gw.example.org"
allowed_networks = ["127.0.0.0/8"]

[relay]
mode = "dir"
dir = %q

[pki]
issuer = "embedded"
key_type = "rsa2048"
sync_interval = "1h"

[users]
source = "static"
groups = ["smime-users"]

[[users.static]]
email = "alice@example.org"
name = "Alice Example"
groups = ["smime-users"]

[policy]
internal_domains = ["example.org"]

%s
[pdf]
password = ["subject", "preset"]
subject_tag = "[pw:"
%s`, filepath.Join(dir, "data"), filepath.Join(dir, "outbox"), rules, extra)
	g.config = filepath.Join(dir, "sealgate.toml")
	if err := os.WriteFile(g.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return g
}

// start runs serve and sets g.addr to the SMTP address it listens on
// (a new one at each start).
func (g *gw) start() {
	g.t.Helper()
	logFrom := len(g.logText())
	cmd := exec.Command(sealgateBinary(g.t), "serve", "--config", g.config)
	cmd.Dir = g.cwd
	cmd.Stdout = syncWriter{g.logMu, g.log}
	cmd.Stderr = syncWriter{g.logMu, g.log}
	if err := cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	g.cmd = cmd
	g.t.Cleanup(func() {
		if g.cmd != nil && g.cmd.ProcessState == nil {
			g.cmd.Process.Kill()
			g.cmd.Wait()
		}
	})
	g.addr, g.http = "", ""
	waitUntil(g.t, 60*time.Second, func() bool {
		g.addr, g.http = listeningAddrs(g.logText()[logFrom:])
		return g.addr != ""
	}, func() string { return "serve did not log its SMTP address:\n" + tail(g.logText()[logFrom:], 20) })
}

// listeningAddrs are the SMTP and HTTP addresses in serve's "listening"
// log line, or "".
func listeningAddrs(log string) (smtp, http string) {
	for _, line := range strings.Split(log, "\n") {
		var rec struct{ Msg, SMTP, HTTP string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" && rec.SMTP != "" {
			return rec.SMTP, rec.HTTP
		}
	}
	return "", ""
}

func (g *gw) logText() string {
	g.logMu.Lock()
	defer g.logMu.Unlock()
	return g.log.String()
}

func (g *gw) cli(args ...string) []byte {
	g.t.Helper()
	cmd := exec.Command(sealgateBinary(g.t), append(args, "--config", g.config)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		g.t.Fatalf("sealgate %v: %v\n%s", args, err, out)
	}
	return out
}

// outbox returns the delivered files by recipient.
func (g *gw) outbox() map[string][]byte {
	out := map[string][]byte{}
	files, _ := filepath.Glob(filepath.Join(g.dir, "outbox", "*.eml"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		m, err := mail.ReadMessage(bytes.NewReader(b))
		if err != nil {
			g.t.Fatalf("%s: %v", f, err)
		}
		for _, r := range strings.Split(m.Header.Get("X-Sealgate-Rcpt-To"), ", ") {
			out[r] = b
		}
	}
	return out
}

func (g *gw) waitOutbox(rcpts ...string) map[string][]byte {
	g.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		box := g.outbox()
		missing := 0
		for _, r := range rcpts {
			if box[r] == nil {
				missing++
			}
		}
		if missing == 0 {
			return box
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("outbox lacks %d of %v; log:\n%s", missing, rcpts, g.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func swaks(t *testing.T, addr, from, to string, headers []string, body string) {
	t.Helper()
	testpeer.Require(t, "swaks")
	args := []string{"--server", addr, "--tls", "--from", from, "--to", to, "--body", body, "--hide-all"}
	for _, h := range headers {
		args = append(args, "--header", h)
	}
	testpeer.MustRun(t, nil, "swaks", args...)
}

// stripEnvelopeFields removes the outbox's envelope lines so that peers
// see the message as the next hop would.
func stripEnvelopeFields(b []byte) []byte {
	for _, p := range []string{"Return-Path:", "X-Sealgate-Rcpt-To:"} {
		if bytes.HasPrefix(b, []byte(p)) {
			b = b[bytes.Index(b, []byte("\r\n"))+2:]
		}
	}
	return b
}

// findPart walks a MIME tree for the first part of the given type.
func findPart(t *testing.T, r io.Reader, header mail.Header, want string) []byte {
	mt, params, err := mime.ParseMediaType(header.Get("Content-Type"))
	if err != nil {
		mt = "text/plain"
	}
	if mt == want {
		b, _ := io.ReadAll(r)
		if strings.EqualFold(header.Get("Content-Transfer-Encoding"), "base64") {
			dec, err := io.ReadAll(base64Reader(b))
			if err != nil {
				t.Fatal(err)
			}
			return dec
		}
		return b
	}
	if !strings.HasPrefix(mt, "multipart/") {
		return nil
	}
	mr := multipart.NewReader(r, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err != nil {
			return nil
		}
		if got := findPart(t, p, mail.Header(p.Header), want); got != nil {
			return got
		}
	}
}

// bounceRule, before defaultRules: a secret label demands S/MIME and
// bounces what cannot have it.
const bounceRule = `[[policy.rules]]
name = "secret"
header = ["X-Classification: Secret"]
sign = "always"
encrypt = "smime-required"
on_failure = "bounce"

`

func TestServeEndToEnd(t *testing.T) {
	for _, p := range []string{"openssl", "qpdf", "pdftotext", "swaks", "python3"} {
		testpeer.Require(t, p)
	}
	partners := testpeer.NewPKI(t)
	carol := partners.Issue(t, "carol@partner.test", testpeer.IssueOptions{})
	heidi := partners.Issue(t, "heidi@partner.test", testpeer.IssueOptions{})
	g := newGatewayRules(t, bounceRule+defaultRules, fmt.Sprintf("\n[trust]\nca_files = [%q, %q]\nsystem_roots = false\n", partners.RootFile, partners.InterFile))
	g.cli("directory", "import", carol.CertFile)
	g.cli("directory", "import", heidi.CertFile)
	g.start()

	swaks(t, g.addr, "alice@example.org", "carol@partner.test", []string{"Subject: numbers"}, "the S/MIME body")
	swaks(t, g.addr, "alice@example.org", "dave@other.test", []string{"Subject: [pw:Corr3ct-Horse] report"}, "the PDF body")
	swaks(t, g.addr, "alice@example.org", "bob@example.org", []string{"Subject: lunch"}, "the internal body")
	swaks(t, g.addr, "alice@example.org", "erin@other.test", []string{"Subject: merger", "X-Classification: Confidential"}, "the confidential body")
	// One SMTP transaction to a certificate holder and a non-holder.
	swaks(t, g.addr, "alice@example.org", "heidi@partner.test,grace@other.test", []string{"Subject: [pw:Spl1t-Tr4nsaction] mixed"}, "the mixed body")
	swaks(t, g.addr, "alice@example.org", "ivan@other.test", []string{"Subject: launch codes", "X-Classification: Secret"}, "the secret body")
	box := g.waitOutbox("carol@partner.test", "dave@other.test", "bob@example.org", "heidi@partner.test", "grace@other.test", "alice@example.org")

	t.Run("S/MIME decrypts and verifies with openssl", func(t *testing.T) {
		enc := filepath.Join(t.TempDir(), "enc.eml")
		os.WriteFile(enc, stripEnvelopeFields(box["carol@partner.test"]), 0o600)
		dec := testpeer.MustRun(t, nil, "openssl", "cms", "-decrypt", "-in", enc, "-recip", carol.CertFile, "-inkey", carol.KeyFile)
		root := filepath.Join(g.dir, "data", "ca", "root.crt")
		res := testpeer.Run(t, dec, "openssl", "cms", "-verify", "-CAfile", root, "-purpose", "smimesign")
		if res.ExitCode != 0 || !bytes.Contains(res.Stdout, []byte("the S/MIME body")) {
			t.Fatalf("verify: exit %d\n%s\n%s", res.ExitCode, res.Stderr, res.Stdout)
		}
		if bytes.Contains(box["carol@partner.test"], []byte("the S/MIME body")) {
			t.Fatal("body readable in the encrypted mail")
		}
	})
	t.Run("one transaction splits into an S/MIME envelope and a PDF", func(t *testing.T) {
		// Each recipient gets exactly one copy, addressed to it alone, and
		// neither the body nor the password is readable in either.
		copies := map[string]outboxFile{}
		for _, r := range []string{"heidi@partner.test", "grace@other.test"} {
			files := g.filesFor(r)
			if len(files) != 1 || len(files[0].Rcpts) != 1 {
				t.Fatalf("%s: %d copies, want one addressed to it alone: %+v", r, len(files), files)
			}
			for _, secret := range []string{"the mixed body", "Spl1t-Tr4nsaction"} {
				if leaks(files[0].Msg, secret) {
					t.Fatalf("%q readable in the copy to %s:\n%s", secret, r, clip(files[0].Msg))
				}
			}
			copies[r] = files[0]
		}
		dec := cmsDecrypt(t, copies["heidi@partner.test"].Msg, heidi)
		if dec.ExitCode != 0 {
			t.Fatalf("openssl cms -decrypt as the holder: exit %d\n%s", dec.ExitCode, dec.Stderr)
		}
		content, _ := cmsVerify(t, dec.Stdout, filepath.Join(g.dir, "data", "ca", "root.crt"))
		if !bytes.Contains(content, []byte("the mixed body")) || bytes.Contains(content, []byte("Spl1t-Tr4nsaction")) || leaf(content, "application/pdf") != nil {
			t.Fatalf("the holder's envelope: want the body, no password and no PDF inside:\n%s", clip(content))
		}
		assertPDFCarrier(t, copies["grace@other.test"].Msg, "Spl1t-Tr4nsaction", "the mixed body")
	})
	t.Run("must-encrypt without certificate bounces with a DSN Python reads", func(t *testing.T) {
		if box["ivan@other.test"] != nil {
			t.Fatal("secret mail delivered")
		}
		dsns := g.filesFor("alice@example.org")
		if len(dsns) != 1 || leaks(dsns[0].Msg, "the secret body") {
			t.Fatalf("want one DSN to the sender, without the body: %+v", dsns)
		}
		rep := testpeer.ReadDSN(t, dsns[0].Msg)
		if len(rep.Recipients) != 1 {
			t.Fatalf("DSN recipients %+v, want ivan only", rep.Recipients)
		}
		got := rep.Recipients[0]
		if got.FinalRecipient != "ivan@other.test" || got.Action != "failed" || !strings.HasPrefix(got.Status, "5.") ||
			got.DiagnosticType != "smtp" || got.Diagnostic == "" {
			t.Fatalf("DSN recipient %+v", got)
		}
		if rep.ReportingMTA != "gw.example.org" || rep.To != "<alice@example.org>" || rep.OriginalHeaders["Subject"] != "launch codes" ||
			strings.TrimSpace(rep.OriginalBody) != "" {
			t.Fatalf("DSN: Reporting-MTA %q, To %q, returned header %v, body %q", rep.ReportingMTA, rep.To, rep.OriginalHeaders, rep.OriginalBody)
		}
	})
	t.Run("gpgsm decrypts and verifies (default profile)", func(t *testing.T) {
		gs := testpeer.NewGpgsm(t, partners, carol)
		gs.TrustRoot(t, filepath.Join(g.dir, "data", "ca", "root.crt"))
		if r := gs.Run(t, nil, "--batch", "--import", filepath.Join(g.dir, "data", "ca", "issuing.crt")); r.ExitCode != 0 {
			t.Fatalf("import issuing.crt: %s", r.Stderr)
		}

		raw := stripEnvelopeFields(box["carol@partner.test"])
		m, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		b64, _ := io.ReadAll(m.Body)
		der, err := io.ReadAll(base64Reader(b64))
		if err != nil {
			t.Fatal(err)
		}
		dec := gs.Decrypt(t, der, carol.P12Password)
		if dec.ExitCode != 0 {
			t.Fatalf("gpgsm --decrypt: %s", dec.Stderr)
		}
		inner, err := mail.ReadMessage(bytes.NewReader(dec.Stdout))
		if err != nil {
			t.Fatal(err)
		}
		_, params, _ := mime.ParseMediaType(inner.Header.Get("Content-Type"))
		body, _ := io.ReadAll(inner.Body)
		delim := []byte("--" + params["boundary"])
		parts := bytes.Split(body, delim)
		if len(parts) < 3 {
			t.Fatalf("not multipart/signed:\n%s", dec.Stdout)
		}
		signedPart := bytes.TrimSuffix(bytes.TrimPrefix(parts[1], []byte("\r\n")), []byte("\r\n"))
		sigMsg, err := mail.ReadMessage(bytes.NewReader(bytes.TrimPrefix(parts[2], []byte("\r\n"))))
		if err != nil {
			t.Fatal(err)
		}
		sigB64, _ := io.ReadAll(sigMsg.Body)
		sig, err := io.ReadAll(base64Reader(sigB64))
		if err != nil {
			t.Fatal(err)
		}
		if r := gs.VerifyDetached(t, sig, signedPart); r.ExitCode != 0 {
			t.Fatalf("gpgsm --verify: exit %d\n%s", r.ExitCode, r.Stderr)
		}
	})
	t.Run("PDF opens only with the password", func(t *testing.T) {
		raw := stripEnvelopeFields(box["dave@other.test"])
		m, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(m.Header.Get("Subject"), "Corr3ct") || bytes.Contains(raw, []byte("Corr3ct-Horse")) {
			t.Fatal("the password left the gateway")
		}
		pdf := findPart(t, m.Body, m.Header, "application/pdf")
		if pdf == nil {
			t.Fatalf("no PDF in the carrier:\n%s", raw)
		}
		f := filepath.Join(t.TempDir(), "m.pdf")
		os.WriteFile(f, pdf, 0o600)
		if r := testpeer.Run(t, nil, "qpdf", "--requires-password", f); r.ExitCode != 0 {
			t.Fatalf("qpdf --requires-password exit %d: the PDF opens without a password", r.ExitCode)
		}
		if r := testpeer.Run(t, nil, "qpdf", "--password=wrong", "--check", f); r.ExitCode == 0 {
			t.Fatal("the PDF opens with a wrong password")
		}
		txt := testpeer.MustRun(t, nil, "pdftotext", "-upw", "Corr3ct-Horse", f, "-")
		if !bytes.Contains(txt, []byte("the PDF body")) {
			t.Fatalf("PDF text: %s", txt)
		}
	})
	t.Run("internal mail untouched", func(t *testing.T) {
		b := box["bob@example.org"]
		if !bytes.Contains(b, []byte("the internal body")) || bytes.Contains(b, []byte("pkcs7")) {
			t.Fatalf("internal mail changed:\n%s", b)
		}
	})
	t.Run("confidential without certificate is held, with a reason", func(t *testing.T) {
		if box["erin@other.test"] != nil {
			t.Fatal("confidential mail delivered")
		}
		var entries []struct {
			ID         string   `json:"id"`
			State      string   `json:"state"`
			Recipients []string `json:"recipients"`
			HoldReason string   `json:"hold_reason"`
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(entries) == 0 && time.Now().Before(deadline) {
			json.Unmarshal(g.cli("queue", "list", "--state", "held", "-o", "json"), &entries)
			time.Sleep(100 * time.Millisecond)
		}
		if len(entries) != 1 || entries[0].Recipients[0] != "erin@other.test" || entries[0].HoldReason == "" {
			t.Fatalf("held entries: %+v", entries)
		}
		var held map[string]any
		for _, line := range strings.Split(g.logText(), "\n") {
			if strings.Contains(line, `"outcome":"held"`) {
				json.Unmarshal([]byte(line), &held)
			}
		}
		if held["recipient"] != "erin@other.test" || held["reason"] == "" {
			t.Fatalf("no held log line with a reason:\n%s", g.logText())
		}
		if strings.Contains(g.logText(), "confidential body") || strings.Contains(g.logText(), "Corr3ct-Horse") {
			t.Fatal("content or password in the log")
		}
		show := g.cli("queue", "show", entries[0].ID)
		if !bytes.Contains(show, []byte("held because:")) {
			t.Fatalf("queue show:\n%s", show)
		}
		g.cli("queue", "delete", entries[0].ID)
	})
	// Graceful stop: SIGTERM ends serve with exit 0.
	g.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- g.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve after SIGTERM: %v\n%s", err, g.logText())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
}

func base64Reader(b []byte) io.Reader {
	return base64.NewDecoder(base64.StdEncoding, bytes.NewReader(bytes.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == ' ' {
			return -1
		}
		return r
	}, b)))
}

// TestServeHoldsWhenDirectoryDown: the key server cannot be reached, so
// "no certificate" cannot be concluded; a must-encrypt message is held
// (not PDF'd, not sent plain) and the event says why.
func TestServeHoldsWhenDirectoryDown(t *testing.T) {
	testpeer.Require(t, "swaks")
	dead := testpeer.FreePort(t)
	g := newGateway(t, fmt.Sprintf("\n[[keyservers]]\nname = \"partners\"\nurl = \"ldap://127.0.0.1:%d\"\nbase_dn = \"dc=example,dc=test\"\ntimeout = \"1s\"\n", dead))
	g.start()
	swaks(t, g.addr, "alice@example.org", "frank@other.test", []string{"Subject: contract"}, "must not leak")
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(g.logText(), `"outcome":"held"`) {
		if time.Now().After(deadline) {
			t.Fatalf("not held:\n%s", g.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(g.outbox()) != 0 {
		t.Fatal("delivered although the directory was down")
	}
	if !strings.Contains(g.logText(), "certificate lookup failed") {
		t.Fatalf("held without the reason:\n%s", g.logText())
	}
}

// With an opportunistic rule (encrypt = "smime") and the key server down,
// the message waits (deferred, retried) instead of leaving signed-only:
// with the server up it might have been encrypted.
func TestServeOpportunisticWaitsWhenDirectoryDown(t *testing.T) {
	testpeer.Require(t, "swaks")
	dead := testpeer.FreePort(t)
	rules := "[[policy.rules]]\nname = \"opportunistic\"\nsign = \"always\"\nencrypt = \"smime\"\n"
	g := newGatewayRules(t, rules, fmt.Sprintf("\n[[keyservers]]\nname = \"partners\"\nurl = \"ldap://127.0.0.1:%d\"\nbase_dn = \"dc=example,dc=test\"\ntimeout = \"1s\"\n", dead))
	g.start()
	swaks(t, g.addr, "alice@example.org", "frank@other.test", []string{"Subject: contract"}, "must not leak")
	var entries []struct {
		State     string `json:"state"`
		LastError string `json:"last_error"`
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(entries) == 0 || entries[0].State != "deferred" {
		if time.Now().After(deadline) {
			t.Fatalf("not deferred: %+v\n%s", entries, g.logText())
		}
		time.Sleep(100 * time.Millisecond)
		json.Unmarshal(g.cli("queue", "list", "-o", "json"), &entries)
	}
	if !strings.Contains(entries[0].LastError, "certificate lookup failed") {
		t.Fatalf("deferred without the reason: %+v", entries[0])
	}
	if len(g.outbox()) != 0 {
		t.Fatal("delivered although whether it should be encrypted was unknown")
	}
}
