package pdfmail

import (
	"bytes"
	"context"
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
		{"en chosen", "en", CarrierNote{ChosenAt: chosen, PortalURL: "https://secure.example.org/"},
			[]string{"the password you chose on", "14 February 2026", "https://secure.example.org/reset"}, []string{"ask the sender"}},
		{"de chosen", "de", CarrierNote{ChosenAt: chosen, PortalURL: "https://secure.example.org"},
			[]string{"das Sie am", "14.02.2026", "https://secure.example.org/reset"}, []string{"fragen Sie den Absender"}},
		{"en preset", "en", CarrierNote{}, []string{"ask the sender"}, []string{"you chose", "/reset"}},
		{"no portal url", "en", CarrierNote{ChosenAt: chosen}, []string{"ask the sender"}, []string{"you chose"}},
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
