package pdfmail

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// TestReadersComfort opens the PDF as qpdf sees it (decrypted, in QDF
// form) and as poppler lists it: the attachments panel opens when there
// are attachments, the title is the subject (also outside the BMP) shown
// in the title bar, and file names are PDF text strings: UTF-16BE with a
// byte order mark in the name tree and UF, printable ASCII in F.
func TestReadersComfort(t *testing.T) {
	testpeer.Require(t, "qpdf")
	testpeer.Require(t, "pdfdetach")
	tests := []struct {
		name, subject string
		files         []string
		wantPanel     bool
	}{
		{"no attachments", "Grüße 🎉", nil, false},
		{"unicode names", "Bericht", []string{"Bericht Ü 日本.txt", "plain.txt", "𝄞 music.txt"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parts := []testPart{{contentType: "text/plain; charset=utf-8", body: []byte("Hallo\r\n")}}
			for _, f := range tc.files {
				parts = append(parts, testPart{contentType: "text/plain", filename: f, body: []byte("content")})
			}
			_, pdf := seal(t, &Sealer{}, buildMessage(tc.subject, parts...), testPassword)
			if got := testpeer.PDFTitle(t, pdf, testPassword); got != tc.subject {
				t.Errorf("title %q, want %q", got, tc.subject)
			}
			qdf := filepath.Join(t.TempDir(), "qdf.pdf")
			testpeer.MustRun(t, nil, "qpdf", "--password="+testPassword, "--decrypt", "--qdf", "--object-streams=disable", pdf, qdf)
			raw, err := os.ReadFile(qdf)
			if err != nil {
				t.Fatal(err)
			}
			doc := string(raw)
			if got := strings.Contains(doc, "/PageMode /UseAttachments"); got != tc.wantPanel {
				t.Errorf("PageMode UseAttachments = %v, want %v", got, tc.wantPanel)
			}
			if !strings.Contains(doc, "/DisplayDocTitle true") {
				t.Error("DisplayDocTitle not set")
			}
			for _, f := range tc.files {
				utf16 := "<" + strings.ToLower(hexUTF16BE(f)) + ">"
				if n := strings.Count(doc, utf16); n < 2 { // name tree key and UF
					t.Errorf("%q as UTF-16BE text string found %d times, want name tree key and UF", f, n)
				}
				if strings.Contains(doc, f) && !isASCII(f) {
					t.Errorf("%q stored as raw UTF-8", f)
				}
				if !strings.Contains(doc, "/F ("+asciiFileName(f)+")") {
					t.Errorf("no ASCII /F for %q", f)
				}
			}
			names := testpeer.PDFAttachmentNames(t, pdf, testPassword)
			for _, f := range tc.files {
				if strings.ContainsFunc(f, func(r rune) bool { return r > 0xFFFF }) {
					// pdfdetach (poppler 22) writes each UTF-16 surrogate
					// as its own UTF-8 sequence; the bytes are checked above.
					continue
				}
				found := false
				for _, n := range names {
					found = found || n == f
				}
				if !found {
					t.Errorf("pdfdetach lists %q, lacks %q", names, f)
				}
			}
		})
	}
}

func hexUTF16BE(s string) string {
	var b strings.Builder
	for _, c := range []byte(pdfTextString(s)) {
		const digits = "0123456789abcdef"
		b.WriteByte(digits[c>>4])
		b.WriteByte(digits[c&15])
	}
	return b.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
