package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/pdfmail"
)

// TestSealPDFLogsReplacementMarks: the gateway's sealer sends the carrier
// of a message with an emoji (before: held, "character outside the
// supported range") and logs which characters became replacement marks
// (U+1F7FF: not assigned, no font has it; 👍 is drawn when a system font
// has it), without the password.
func TestSealPDFLogsReplacementMarks(t *testing.T) {
	pw, err := pdfmail.NewPasswords([]string{"subject"}, pdfmail.PasswordDeps{SubjectTag: "[pw:", MinLength: 8})
	if err != nil {
		t.Fatal(err)
	}
	s := &pdfmail.Sealer{CleanSubject: pw.CleanSubject}
	if err := s.SetFonts(config.PDF{}, nil); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	p := &pdfSealer{pw: pw, s: s, log: slog.New(slog.NewTextHandler(&logged, nil)),
		owner: func(context.Context, string) (string, bool, error) { return "", false, nil }}
	subject := "Danke \U0001F44D [pw:Geheim-Passwort-1]"
	msg := []byte("From: a@example.org\r\nTo: b@partner.example\r\nSubject: =?utf-8?q?Danke_=F0=9F=91=8D_[pw:Geheim-Passwort-1]?=\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSuper \xf0\x9f\x91\x8d \xf0\x9f\x9f\xbf\r\n")
	res, err := p.SealPDF(context.Background(), "a@example.org", "b@partner.example", subject, msg)
	if err != nil {
		t.Fatalf("SealPDF: %v", err)
	}
	if res.Pending || len(res.Carrier) == 0 {
		t.Fatalf("no carrier: %+v", res)
	}
	out := logged.String()
	if !strings.Contains(out, "replacement marks") || !strings.Contains(out, "U+1F7FF") {
		t.Errorf("log %q does not name U+1F7FF", out)
	}
	if strings.Contains(out, "Geheim-Passwort-1") {
		t.Error("password in the log")
	}
	// The warning travels to the delivered event (code points, no text).
	if w := strings.Join(res.Warnings, "; "); !strings.Contains(w, "U+1F7FF") || strings.Contains(w, "Danke") || strings.Contains(w, "Super") {
		t.Errorf("PDFResult.Warnings = %q", res.Warnings)
	}
	// The carrier names the password the sender gave (it came from the
	// subject: Resolution.Mode reaches the notice).
	if carrier := strings.ReplaceAll(string(res.Carrier), "=\r\n", ""); !strings.Contains(carrier, "Use the password the sender gave you.") {
		t.Error("carrier does not say the sender gave the password")
	}
	var _ gateway.PDFSealer = p
}
