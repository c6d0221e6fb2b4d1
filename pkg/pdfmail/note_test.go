package pdfmail

import (
	"bytes"
	"context"
	"encoding/base64"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// A password chosen on the portal: the carrier says when and links to the
// portal's reset page (in text and HTML); without a note it keeps asking
// the recipient to call the sender.
func TestCarrierNoteForPortalPassword(t *testing.T) {
	msg := buildMessage("Offer", testPart{contentType: "text/plain; charset=utf-8", body: []byte("Hello")})
	chosen := time.Date(2026, 2, 14, 23, 30, 0, 0, time.UTC)
	tests := []struct {
		name string
		lang string
		note CarrierNote
		want []string
		not  []string
	}{
		{"en chosen", "en", CarrierNote{PasswordMode: ModePortal, ChosenAt: chosen, PortalURL: "https://secure.example.org/"},
			[]string{"the password you chose on the sender's secure portal on", "14 February 2026", "https://secure.example.org/reset"}, []string{"ask the sender"}},
		{"de chosen", "de", CarrierNote{PasswordMode: ModePortal, ChosenAt: chosen, PortalURL: "https://secure.example.org"},
			[]string{"das Sie am", "14.02.2026", "https://secure.example.org/reset"}, []string{"fragen Sie den Absender"}},
		{"en unknown source", "en", CarrierNote{}, []string{"ask the sender"}, []string{"you chose", "/reset"}},
		{"chosen, no portal url: no reset link", "en", CarrierNote{ChosenAt: chosen}, []string{"you chose", "14 February 2026"}, []string{"ask the sender", "/reset"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &Sealer{Language: tc.lang, Now: func() time.Time { return fixedTime }}
			var out bytes.Buffer
			if _, err := s.SealWithNote(context.Background(), bytes.NewReader(msg), []byte("a long password"), tc.note, &out); err != nil {
				t.Fatal(err)
			}
			// Quoted-printable soft breaks removed, so phrases match.
			carrier := strings.ReplaceAll(out.String(), "=\r\n", "")
			for _, w := range tc.want {
				if strings.Count(carrier, w) < 2 {
					t.Errorf("carrier lacks %q in text and HTML", w)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(carrier, w) {
					t.Errorf("carrier has %q", w)
				}
			}
		})
	}
}

// A reply link: in the carrier (text and HTML) and on the PDF's first
// page as a link annotation over the printed address, read by qpdf and
// poppler; without one, neither.
func TestReplyLinkInPDFAndCarrier(t *testing.T) {
	testpeer.Require(t, "qpdf")
	testpeer.Require(t, "pdftotext")
	const link = "https://secure.example.org/r/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	msg := buildMessage("Offer", testPart{contentType: "text/plain; charset=utf-8", body: []byte("Hello")})
	for _, tc := range []struct {
		name, lang, url string
	}{{"en", "en", link}, {"de", "de", link}, {"none", "en", ""}} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Sealer{Language: tc.lang, Now: func() time.Time { return fixedTime }}
			var out bytes.Buffer
			if _, err := s.SealWithNote(context.Background(), bytes.NewReader(msg), []byte(testPassword), CarrierNote{ReplyURL: tc.url}, &out); err != nil {
				t.Fatal(err)
			}
			carrier := strings.ReplaceAll(out.String(), "=\r\n", "")
			pdf := filepath.Join(t.TempDir(), "m.pdf")
			if err := os.WriteFile(pdf, extractPDF(t, out.Bytes(), DefaultAttachmentName), 0o600); err != nil {
				t.Fatal(err)
			}
			links := testpeer.PDFFirstPageLinks(t, pdf, testPassword)
			text := testpeer.PDFText(t, pdf, testPassword, false)
			if tc.url == "" {
				// (Not just "/r/": base64 of the PDF may hold that.)
				if len(links) != 0 || strings.Contains(carrier, "example.org/r/") || strings.Contains(text, "example.org/r/") {
					t.Fatalf("a reply link without one: %v", links)
				}
				return
			}
			if strings.Count(carrier, tc.url) < 2 {
				t.Error("the carrier lacks the reply link in text and HTML")
			}
			if len(links) != 1 || links[0] != tc.url {
				t.Errorf("page 1 links %v, want %s", links, tc.url)
			}
			if !strings.Contains(strings.ReplaceAll(text, "\n", ""), tc.url) {
				t.Errorf("the link is not printed on the page:\n%s", text)
			}
		})
	}
}

// pdf.hide_subject: the carrier's Subject is neutral and the original is
// nowhere in the carrier outside the encrypted PDF (header, text and HTML
// notice), nor in the sender's password notice; the PDF still shows it to
// whoever opens it (pdftotext with the password).
func TestHideSubject(t *testing.T) {
	testpeer.Require(t, "pdftotext")
	const subject = "Takeover of Contoso"
	msg := buildMessage(subject, testPart{contentType: "text/plain; charset=utf-8", body: []byte("Hello")})
	for _, tc := range []struct{ lang, neutral string }{{"en", "Encrypted message"}, {"de", "Verschlüsselte Nachricht"}} {
		t.Run(tc.lang, func(t *testing.T) {
			s := &Sealer{Language: tc.lang, HideSubject: true, Now: func() time.Time { return fixedTime }}
			var out bytes.Buffer
			info, err := s.SealWithNote(context.Background(), bytes.NewReader(msg), []byte(testPassword), CarrierNote{}, &out)
			if err != nil {
				t.Fatal(err)
			}
			pdf := extractPDF(t, out.Bytes(), DefaultAttachmentName)
			// Everything but the PDF part, decoded.
			rest := strings.Replace(out.String(), base64Of(pdf), "", 1)
			decoded := strings.ReplaceAll(rest, "=\r\n", "")
			if strings.Contains(decoded, "Contoso") || strings.Contains(info.Subject, "Contoso") {
				t.Fatalf("the subject is in the carrier:\n%s", decoded)
			}
			m, err := mail.ReadMessage(bytes.NewReader(out.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject")); got != tc.neutral {
				t.Errorf("carrier subject %q, want %q", got, tc.neutral)
			}
			f := filepath.Join(t.TempDir(), "m.pdf")
			if err := os.WriteFile(f, pdf, 0o600); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(testpeer.PDFText(t, f, testPassword, false), subject) {
				t.Error("the PDF lost the subject")
			}
		})
	}
	n := &Notifier{HideSubject: true}
	notice, err := n.Build(Query{Sender: "alice@example.org", Recipient: "bob@partner.example", Subject: subject, CleanSubject: subject}, []byte("pw-1234567890"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(bytes.ReplaceAll(notice, []byte("=\r\n"), nil), []byte("Contoso")) {
		t.Errorf("the password notice names the subject:\n%s", notice)
	}
}

// base64Of is b as the carrier writes it (76-character CRLF lines).
func base64Of(b []byte) string {
	enc := base64.StdEncoding.EncodeToString(b)
	var sb strings.Builder
	for len(enc) > 76 {
		sb.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	sb.WriteString(enc)
	return sb.String()
}
