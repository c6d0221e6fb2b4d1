package pdfmail

import (
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// fixedTime is the clock for reproducible output.
var fixedTime = time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)

// testPart is one MIME part of a test message.
type testPart struct {
	contentType string // with parameters
	filename    string // non-empty: attachment with this (UTF-8) name
	body        []byte
}

// buildMessage writes a multipart/mixed message (or a single part when
// there is exactly one part without file name) with CRLF line ends.
func buildMessage(subject string, parts ...testPart) []byte {
	var b bytes.Buffer
	b.WriteString("From: =?utf-8?q?J=C3=BCrgen_Gro=C3=9F?= <juergen@example.org>\r\n")
	b.WriteString("To: Zoë Œuvre <zoe@partner.example>, b@partner.example\r\n")
	b.WriteString("Cc: Ilgın Şahin <ilgin@partner.example>\r\n")
	b.WriteString("Date: Mon, 02 Mar 2026 10:15:00 +0100\r\n")
	b.WriteString("Message-ID: <test-1@example.org>\r\n")
	b.WriteString("Subject: " + mime.QEncoding.Encode("utf-8", subject) + "\r\n")
	b.WriteString("MIME-Version: 1.0\r\n")
	if len(parts) == 1 && parts[0].filename == "" {
		p := parts[0]
		b.WriteString("Content-Type: " + p.contentType + "\r\nContent-Transfer-Encoding: base64\r\n\r\n")
		writeBase64(&b, p.body)
		return b.Bytes()
	}
	b.WriteString("Content-Type: multipart/mixed; boundary=\"=_outer\"\r\n\r\n")
	for _, p := range parts {
		b.WriteString("--=_outer\r\nContent-Type: " + p.contentType + "\r\n")
		if p.filename != "" {
			b.WriteString(fmt.Sprintf("Content-Disposition: attachment; filename*=utf-8''%s\r\n", pathEscape(p.filename)))
		}
		b.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
		writeBase64(&b, p.body)
	}
	b.WriteString("--=_outer--\r\n")
	return b.Bytes()
}

func pathEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func writeBase64(b *bytes.Buffer, data []byte) {
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
}

// seal runs Seal and returns the carrier and the path of the PDF taken out
// of it (written into a temp dir for the peers).
func seal(t testing.TB, s *Sealer, msg []byte, password string) (carrier []byte, pdfPath string) {
	t.Helper()
	var out bytes.Buffer
	if _, err := s.Seal(context.Background(), bytes.NewReader(msg), []byte(password), &out); err != nil {
		t.Fatalf("Seal: %v", err)
	}
	pdf := extractPDF(t, out.Bytes(), s.attachmentName())
	pdfPath = filepath.Join(t.TempDir(), "message.pdf")
	if err := os.WriteFile(pdfPath, pdf, 0o600); err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), pdfPath
}

// extractPDF finds the PDF attachment in a carrier mail.
func extractPDF(t testing.TB, carrier []byte, name string) []byte {
	t.Helper()
	mr, err := mail.CreateReader(bytes.NewReader(carrier))
	if err != nil {
		t.Fatalf("carrier does not parse: %v", err)
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("carrier part: %v", err)
		}
		if h, ok := p.Header.(*mail.AttachmentHeader); ok {
			fn, _ := h.Filename()
			ct, _, _ := h.ContentType()
			if fn == name && ct == "application/pdf" {
				b, err := io.ReadAll(p.Body)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
		}
	}
	t.Fatalf("carrier has no %s attachment", name)
	return nil
}

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file %s: %v (run go test -update)", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden file (go test -run %s -update to accept):\n--- got ---\n%s", path, t.Name(), got)
	}
}
