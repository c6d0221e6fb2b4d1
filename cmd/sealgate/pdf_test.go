package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"io"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

// pdfTestEnv is a config file with its data_dir in a temp dir.
func pdfTestEnv(t *testing.T) (dir, configPath string) {
	t.Helper()
	dir = t.TempDir()
	configPath = filepath.Join(dir, "sealgate.toml")
	conf := "data_dir = \"data\"\n\n[relay]\nsmarthost = \"127.0.0.1:2526\"\n\n[pdf]\nlanguage = \"de\"\nattachment_name = \"Nachricht.pdf\"\n"
	if err := os.WriteFile(configPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, configPath
}

func pdfRunCLI(stdin []byte, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, bytes.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func pdfWriteSecretFile(t *testing.T, dir, content string) string {
	t.Helper()
	p := filepath.Join(dir, "pw.txt")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPDFRender(t *testing.T) {
	testpeer.Require(t, "qpdf")
	dir, conf := pdfTestEnv(t)
	pwFile := pdfWriteSecretFile(t, dir, "Vorschau-Passwort\n")
	msg := []byte("From: a@example.org\r\nTo: b@partner.example\r\nSubject: Vorschau\r\n\r\nGrüße\r\n")

	code, stdout, stderr := pdfRunCLI(msg, "pdf", "render", "--config", conf, "--password-file", pwFile)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	mr, err := mail.CreateReader(strings.NewReader(stdout))
	if err != nil {
		t.Fatal(err)
	}
	var pdf []byte
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		if h, ok := p.Header.(*mail.AttachmentHeader); ok {
			if name, _ := h.Filename(); name == "Nachricht.pdf" {
				pdf, _ = io.ReadAll(p.Body)
			}
		}
	}
	if pdf == nil {
		t.Fatalf("no Nachricht.pdf in the carrier:\n%s", stdout)
	}
	if !strings.Contains(stdout, "verschl=C3=BCsselte Nachricht") {
		t.Error("notice is not the German one from pdf.language")
	}
	path := filepath.Join(dir, "out.pdf")
	if err := os.WriteFile(path, pdf, 0o600); err != nil {
		t.Fatal(err)
	}
	if enc := testpeer.QPDFShowEncryption(t, path, "Vorschau-Passwort"); !strings.Contains(enc, "R = 6") || !strings.Contains(enc, "AESv3") {
		t.Errorf("qpdf --show-encryption:\n%s", enc)
	}
}

func TestPDFRenderUsageErrors(t *testing.T) {
	dir, conf := pdfTestEnv(t)
	empty := pdfWriteSecretFile(t, dir, "\n")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no password file", []string{"pdf", "render", "--config", conf}, "--password-file is required"},
		{"empty password file", []string{"pdf", "render", "--config", conf, "--password-file", empty}, "first line is empty"},
		{"missing password file", []string{"pdf", "render", "--config", conf, "--password-file", filepath.Join(dir, "nope")}, "--password-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := pdfRunCLI([]byte("Subject: x\r\n\r\nx"), tc.args...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, tc.want)
			}
		})
	}
	// A broken message is a runtime failure (1) with a clear reason, and
	// nothing on stdout.
	pw := pdfWriteSecretFile(t, dir, "long-enough-pw")
	code, stdout, stderr := pdfRunCLI([]byte("Content-Type: multipart/mixed\r\n\r\nx"), "pdf", "render", "--config", conf, "--password-file", pw)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "malformed message") {
		t.Errorf("malformed: exit %d, stdout %d bytes, stderr %q", code, len(stdout), stderr)
	}
}

func TestPDFPasswordSet(t *testing.T) {
	dir, conf := pdfTestEnv(t)
	pwFile := pdfWriteSecretFile(t, dir, "Partner-Passwort-2026\r\nignored second line\n")
	code, stdout, stderr := pdfRunCLI(nil, "pdf", "password", "set", "Partner@Example.net", "--password-file", pwFile, "--config", conf, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res map[string]string
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || res["email"] != "partner@example.net" || res["source"] != "preset" {
		t.Errorf("JSON %q (%v)", stdout, err)
	}
	if strings.Contains(stdout+stderr, "Partner-Passwort") {
		t.Error("the password was printed")
	}

	ctx := context.Background()
	kr, err := secret.LoadOrCreateKeyring(filepath.Join(dir, "data", "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, store.Options{Driver: "sqlite", Path: filepath.Join(dir, "data", "sealgate.db"), Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pw, source, err := st.PDFPassword(ctx, "partner@example.net")
	if err != nil || string(pw) != "Partner-Passwort-2026" || source != "preset" {
		t.Errorf("stored %q from %q, %v", pw, source, err)
	}
	events, err := st.AuditEvents(ctx, time.Time{})
	if err != nil || len(events) == 0 || events[len(events)-1].Action != "pdf.password.set" {
		t.Errorf("audit events %v, %v", events, err)
	}

	// Shorter than pdf.min_password_length (default 10, here 9 characters,
	// which the old fixed minimum of 8 let through): exit 2 with the rule,
	// never the password, and nothing stored.
	short := pdfWriteSecretFile(t, dir, "Kurz#9pw!\n")
	code, stdout, stderr = pdfRunCLI(nil, "pdf", "password", "set", "short@example.net", "--password-file", short, "--config", conf)
	if code != 2 || !strings.Contains(stderr, "pdf.min_password_length") || !strings.Contains(stderr, "at least 10") || strings.Contains(stdout+stderr, "Kurz#9pw!") {
		t.Errorf("short password: exit %d, stdout %q, stderr %q; want 2 and the rule without the password", code, stdout, stderr)
	}
	if _, _, err := st.PDFPassword(ctx, "short@example.net"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("short password stored: %v", err)
	}
	for _, args := range [][]string{
		{"pdf", "password", "set", "not-an-address", "--password-file", pwFile, "--config", conf},
		{"pdf", "password", "set", "Name <a@b.example>", "--password-file", pwFile, "--config", conf},
		{"pdf", "password", "set", "a@b.example", "--password-file", short, "--config", conf},
		{"pdf", "password", "set", "a@b.example", "--config", conf},
		{"pdf", "password", "set", "--password-file", pwFile, "--config", conf},
	} {
		if code, _, stderr := pdfRunCLI(nil, args...); code != 2 {
			t.Errorf("%v: exit %d (%s), want 2", args, code, stderr)
		}
	}
}

// TestPDFRenderEmoji: the report: one emoji made `pdf render` exit
// 1. Now the carrier is written; an emoji a system font has is drawn
// (fonts-symbola), and stderr names a character no font has (U+1F7FF, not
// assigned).
func TestPDFRenderEmoji(t *testing.T) {
	dir, conf := pdfTestEnv(t)
	pwFile := pdfWriteSecretFile(t, dir, "Vorschau-Passwort\n")
	msg := []byte("From: a@example.org\r\nTo: b@partner.example\r\nSubject: =?utf-8?q?Danke_=F0=9F=91=8D?=\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSuper \xf0\x9f\x91\x8d \xf0\x9f\x9f\xbf\r\n")
	code, stdout, stderr := pdfRunCLI(msg, "pdf", "render", "--config", conf, "--password-file", pwFile)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "Content-Type: application/pdf") {
		t.Error("no PDF in the carrier")
	}
	if !strings.Contains(stderr, "warning") || !strings.Contains(stderr, "U+1F7FF") {
		t.Errorf("stderr %q does not warn about U+1F7FF", stderr)
	}
	if strings.Contains(stderr, "Vorschau-Passwort") {
		t.Error("password on stderr")
	}
}

// pdf render's notice names the password as the gateway's would, given
// where it comes from (--password-mode); an unknown mode is a usage error.
func TestPDFRenderPasswordMode(t *testing.T) {
	dir, conf := pdfTestEnv(t)
	pwFile := pdfWriteSecretFile(t, dir, "Vorschau-Passwort\n")
	msg := []byte("From: a@example.org\r\nTo: b@partner.example\r\nSubject: Vorschau\r\n\r\nGrüße\r\n")
	notice := func(stdout string) string {
		mr, err := mail.CreateReader(strings.NewReader(stdout))
		if err != nil {
			t.Fatal(err)
		}
		for {
			p, err := mr.NextPart()
			if err != nil {
				t.Fatalf("no text part in the carrier:\n%s", stdout)
			}
			if h, ok := p.Header.(*mail.InlineHeader); ok {
				if ct, _, _ := h.ContentType(); ct == "text/plain" {
					b, _ := io.ReadAll(p.Body)
					return string(b)
				}
			}
		}
	}
	for _, tc := range []struct{ mode, want string }{
		{"", "Sie haben kein Passwort? Bitte fragen Sie den Absender"},
		{"preset", "das Ihnen der Absender gegeben hat"},
		{"subject", "das Ihnen der Absender gegeben hat"},
		{"generated-to-sender", "Das Passwort wurde für Sie erzeugt"},
	} {
		t.Run("mode "+tc.mode, func(t *testing.T) {
			args := []string{"pdf", "render", "--config", conf, "--password-file", pwFile}
			if tc.mode != "" {
				args = append(args, "--password-mode", tc.mode)
			}
			code, stdout, stderr := pdfRunCLI(msg, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if n := notice(stdout); !strings.Contains(n, tc.want) {
				t.Fatalf("the notice does not say %q:\n%s", tc.want, n)
			}
		})
	}
	code, _, stderr := pdfRunCLI(msg, "pdf", "render", "--config", conf, "--password-file", pwFile, "--password-mode", "guess")
	if code != 2 || !strings.Contains(stderr, `--password-mode "guess"`) {
		t.Fatalf("unknown mode: exit %d, %s", code, stderr)
	}
}
