package pdfmail

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// multilingual lines, each short enough not to be wrapped on the page.
var multilingual = []string{
	"Deutsch: Grüße aus Köln – Straße, Größe, Äpfel, Öl, Übermaß.",
	"Français : « Ça coûte 20 € » – où est l’hôtel ? Noël, cœur, été.",
	"Nederlands: „Één ĳsje” kost € 2,50 – coördinatie, reünie.",
	"Polski: Zażółć gęślą jaźń – Łódź, Świętokrzyskie, Gdańsk.",
	"Türkçe: Iğdır, İstanbul, şişe, çiçek, ağaç, ılık – “Günaydın”.",
	"Typografie: „deutsch“ ‚einfach‘ “English” ‘single’ …",
}

const testPassword = "Corr3ct-Horse"

func TestSealEncryptionIsAES256R6(t *testing.T) {
	testpeer.Require(t, "qpdf")
	msg := buildMessage("Vertrag", testPart{contentType: "text/plain; charset=utf-8", body: []byte("Hallo.\r\n")})
	_, pdf := seal(t, &Sealer{}, msg, testPassword)

	if code := testpeer.QPDFRequiresPassword(t, pdf); code != 0 {
		t.Fatalf("qpdf --requires-password exit %d, want 0 (password needed)", code)
	}
	enc := testpeer.QPDFShowEncryption(t, pdf, testPassword)
	for _, want := range []string{"R = 6", "stream encryption method: AESv3", "file encryption method: AESv3", "Supplied password is user password", "print high resolution: allowed", "extract for any purpose: allowed", "modify anything: not allowed"} {
		if !strings.Contains(enc, want) {
			t.Errorf("qpdf --show-encryption lacks %q:\n%s", want, enc)
		}
	}
	if res := testpeer.QPDFCheck(t, pdf, "wrong-password"); res.ExitCode == 0 || !strings.Contains(string(res.Stderr), "invalid password") {
		t.Errorf("qpdf opened the PDF with a wrong password: exit %d %s", res.ExitCode, res.Stderr)
	}
	if res := testpeer.QPDFCheck(t, pdf, testPassword); res.ExitCode != 0 {
		t.Errorf("qpdf --check: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	head, err := os.ReadFile(pdf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(head, []byte("%PDF-2.0")) {
		t.Errorf("PDF header %q, want %%PDF-2.0", head[:8])
	}
}

func TestSealBodyTextReadsBackInPoppler(t *testing.T) {
	testpeer.Require(t, "pdftotext")
	text := strings.Join(multilingual, "\r\n") + "\r\n"
	tests := []struct {
		name string
		lang string
		msg  []byte
	}{
		{"utf-8 plain, de", "de", buildMessage("Grüße – „Test“", testPart{contentType: "text/plain; charset=utf-8", body: []byte(text)})},
		{"utf-8 plain, en", "en", buildMessage("Grüße – „Test“", testPart{contentType: "text/plain; charset=utf-8", body: []byte(text)})},
		// The HTML is what the sender wrote and saw: laid out, the text
		// alternative not shown.
		{"alternative prefers HTML", "en", buildMessage("Grüße – „Test“",
			testPart{contentType: "text/plain; charset=utf-8", body: []byte("TEXT version\r\n")},
			testPart{contentType: "text/html; charset=utf-8", body: []byte("<p>" + strings.Join(escapeHTML(multilingual), "<br>\n") + "</p>")})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, pdf := seal(t, &Sealer{Language: tc.lang}, tc.msg, testPassword)
			got := testpeer.PDFText(t, pdf, testPassword, false)
			for _, line := range multilingual {
				if !strings.Contains(got, line) {
					t.Errorf("pdftotext lost %q\n--- text ---\n%s", line, got)
				}
			}
			for _, want := range []string{"Jürgen Groß <juergen@example.org>", "Zoë Œuvre <zoe@partner.example>", "Ilgın Şahin", "Grüße – „Test“"} {
				if !strings.Contains(got, want) {
					t.Errorf("header block lacks %q\n--- text ---\n%s", want, got)
				}
			}
			if strings.Contains(got, "TEXT version") {
				t.Error("text alternative rendered although text/html exists")
			}
		})
	}
}

func TestSealLatin1Body(t *testing.T) {
	testpeer.Require(t, "pdftotext")
	latin1 := []byte("Gr\xfc\xdfe aus K\xf6ln, \xe0 bient\xf4t.\r\n")
	msg := buildMessage("Latin-1", testPart{contentType: "text/plain; charset=iso-8859-1", body: latin1})
	_, pdf := seal(t, &Sealer{}, msg, testPassword)
	if got := testpeer.PDFText(t, pdf, testPassword, false); !strings.Contains(got, "Grüße aus Köln, à bientôt.") {
		t.Errorf("ISO-8859-1 body not decoded:\n%s", got)
	}
}

func TestSealHTMLBodyKeepsLinks(t *testing.T) {
	testpeer.Require(t, "pdftotext")
	html := `<html><head><style>p{color:red}</style></head><body>
<h1>Rechnung März</h1>
<p>Bitte zahlen Sie <b>120 €</b> bis „Freitag“.</p>
<p>Details: <a href="https://portal.example.org/rechnung?id=42">Rechnung ansehen</a></p>
<ul><li>Punkt eins</li><li>Punkt zwei</li></ul>
<script>alert(1)</script>
</body></html>`
	msg := buildMessage("HTML", testPart{contentType: "text/html; charset=utf-8", body: []byte(html)})
	_, pdf := seal(t, &Sealer{}, msg, testPassword)
	got := testpeer.PDFText(t, pdf, testPassword, false)
	for _, want := range []string{"Rechnung März", "120 €", "„Freitag“", "Rechnung ansehen", "Punkt zwei"} {
		if !strings.Contains(got, want) {
			t.Errorf("HTML body as text lacks %q\n--- text ---\n%s", want, got)
		}
	}
	// The link is a link annotation (clickable), not printed.
	testpeer.Require(t, "qpdf")
	if links := testpeer.PDFFirstPageLinks(t, pdf, testPassword); !slices.Contains(links, "https://portal.example.org/rechnung?id=42") {
		t.Errorf("no link annotation for the invoice: %v", links)
	}
	for _, bad := range []string{"<p>", "color:red", "alert(1)"} {
		if strings.Contains(got, bad) {
			t.Errorf("HTML body as text shows markup %q", bad)
		}
	}
}

func TestSealAttachmentsByteIdentical(t *testing.T) {
	testpeer.Require(t, "pdfdetach")
	big := make([]byte, 25<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	csv := []byte("Name;Betrag\r\nMüller;12,50 €\r\n")
	pdfBytes := []byte("%PDF-1.4\n% not really a PDF, but typed as one\n")
	msg := buildMessage("Unterlagen",
		testPart{contentType: "text/plain; charset=utf-8", body: []byte("Anbei die Unterlagen.\r\n")},
		testPart{contentType: "application/octet-stream", filename: "Größenmaß_Übersicht.bin", body: big},
		testPart{contentType: "text/csv; charset=utf-8", filename: "Überweisung März.csv", body: csv},
		testPart{contentType: "application/pdf", filename: "Vertrag.pdf", body: pdfBytes},
		testPart{contentType: "application/pdf", filename: "Vertrag.pdf", body: []byte("second one")},
		testPart{contentType: "application/octet-stream", filename: "../../etc/passwd", body: []byte("path")},
	)
	_, pdf := seal(t, &Sealer{Language: "de"}, msg, testPassword)

	want := map[string][]byte{
		"Größenmaß_Übersicht.bin": big,
		"Überweisung März.csv":    csv,
		"Vertrag.pdf":             pdfBytes,
		"Vertrag (2).pdf":         []byte("second one"),
		"passwd":                  []byte("path"),
	}
	got := testpeer.PDFAttachments(t, pdf, testPassword)
	if len(got) != len(want) {
		t.Errorf("pdfdetach saved %d files, want %d: %v", len(got), len(want), keys(got))
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("pdfdetach did not save %q (saved %v)", name, keys(got))
			continue
		}
		if !bytes.Equal(g, w) {
			t.Errorf("%s: %d bytes back, want %d identical bytes", name, len(g), len(w))
		}
	}
	names := testpeer.PDFAttachmentNames(t, pdf, testPassword)
	if strings.Join(names, "|") != "Größenmaß_Übersicht.bin|Überweisung März.csv|Vertrag.pdf|Vertrag (2).pdf|passwd" &&
		len(names) != len(want) {
		t.Errorf("pdfdetach -list: %q", names)
	}
	// First page lists them, with type and size.
	text := testpeer.PDFText(t, pdf, testPassword, false)
	for _, w := range []string{"Anhänge:", "Größenmaß_Übersicht.bin (application/octet-stream, 26,2 MB)", "Überweisung März.csv (text/csv, 32 Bytes)", "Vertrag (2).pdf"} {
		if !strings.Contains(text, w) {
			t.Errorf("attachment list lacks %q\n%s", w, text)
		}
	}
	// MIME types are kept as the embedded files' /Subtype.
	qdf := filepath.Join(t.TempDir(), "q.pdf")
	testpeer.MustRun(t, nil, "qpdf", "--password="+testPassword, "--decrypt", "--qdf", "--object-streams=disable", pdf, qdf)
	raw, _ := os.ReadFile(qdf)
	for _, st := range []string{"/Subtype /text#2fcsv", "/Subtype /application#2fpdf", "/Subtype /application#2foctet-stream"} {
		if !bytes.Contains(raw, []byte(st)) {
			t.Errorf("decrypted PDF lacks embedded file %s", st)
		}
	}
}

func keys(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestSealAttachOriginal(t *testing.T) {
	testpeer.Require(t, "pdfdetach")
	msg := buildMessage("Original", testPart{contentType: "text/plain; charset=utf-8", body: []byte("Text.\r\n")},
		testPart{contentType: "application/octet-stream", filename: "original.eml", body: []byte("an attachment that happens to be called so")})
	_, pdf := seal(t, &Sealer{AttachOriginal: true}, msg, testPassword)
	got := testpeer.PDFAttachments(t, pdf, testPassword)
	if !bytes.Equal(got["original (2).eml"], msg) {
		t.Errorf("original (2).eml is not the original message (%d bytes, want %d); saved %v", len(got["original (2).eml"]), len(msg), keys(got))
	}
	if string(got["original.eml"]) != "an attachment that happens to be called so" {
		t.Errorf("the sender's own original.eml was replaced")
	}
}

func TestSealEdgeCases(t *testing.T) {
	testpeer.Require(t, "qpdf")
	testpeer.Require(t, "mutool")
	long := &strings.Builder{}
	for i := 1; i <= 2600; i++ {
		fmt.Fprintf(long, "Zeile %d: Die Würde des Menschen ist unantastbar – %s\r\n", i, strings.Repeat("ä", i%40))
	}
	long.WriteString(strings.Repeat("x", 3000) + "\r\n") // one unbreakable word
	tests := []struct {
		name     string
		msg      []byte
		wantText []string
		minPages int
		wantErr  bool
	}{
		{name: "no body", msg: []byte("From: a@example.org\r\nTo: b@example.net\r\nSubject: leer\r\n\r\n"), wantText: []string{"(This message has no text.)"}},
		{name: "no headers at all", msg: []byte("\r\njust text\r\n"), wantText: []string{"just text", "(no subject)"}},
		{name: "only attachments", msg: buildMessage("nur Anhang", testPart{contentType: "image/png", filename: "bild.png", body: []byte("\x89PNG fake")}),
			wantText: []string{"bild.png (image/png, 9 bytes)", "(This message has no text.)"}},
		{name: "50-page body", msg: buildMessage("lang", testPart{contentType: "text/plain; charset=utf-8", body: []byte(long.String())}),
			wantText: []string{"Zeile 1: Die Würde", "Zeile 2600: Die Würde", "Page 1 of "}, minPages: 50},
		{name: "broken base64 body", msg: []byte("Subject: x\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64***\r\n"), wantErr: true},
		{name: "unterminated multipart", msg: []byte("Subject: x\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nhello\r\n"), wantErr: true},
		{name: "multipart without boundary", msg: []byte("Subject: x\r\nContent-Type: multipart/mixed\r\n\r\n--zz\r\n\r\nhello\r\n"), wantErr: true},
		{name: "unknown charset", msg: []byte("Subject: x\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\nqapla\r\n"), wantText: []string{"qapla"}},
		{name: "forwarded message and related image", msg: []byte("Subject: Fwd\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n" +
			"--o\r\nContent-Type: multipart/related; boundary=r\r\n\r\n" +
			"--r\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Siehe <img src=\"cid:logo\"> unten</p>\r\n" +
			"--r\r\nContent-Type: image/png\r\nContent-ID: <logo>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0K\r\n--r--\r\n" +
			"--o\r\nContent-Type: message/rfc822\r\n\r\nSubject: innen\r\n\r\nweitergeleitet\r\n--o--\r\n"),
			wantText: []string{"Siehe", "logo.png (image/png, 6 bytes)", "part-3.eml (message/rfc822, 32 bytes)"}},
		{name: "multipart/signed keeps the signature as a file", msg: []byte("Subject: signed\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=s\r\n\r\n" +
			"--s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nunterschrieben\r\n" +
			"--s\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Disposition: attachment; filename=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n--s--\r\n"),
			wantText: []string{"unterschrieben", "smime.p7s (application/pkcs7-signature"}},
		{name: "binary garbage", msg: []byte("\x00\x01\x02\xff\xfe\r\n\r\n\x00\x00"), wantErr: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := (&Sealer{}).Seal(context.Background(), bytes.NewReader(tc.msg), []byte(testPassword), &out)
			if tc.wantErr {
				if err == nil {
					t.Fatal("Seal succeeded, want a clear error")
				}
				if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "malformed message") {
					t.Errorf("error %q does not say the message is malformed", err)
				}
				if strings.Contains(err.Error(), testPassword) {
					t.Error("error contains the password")
				}
				return
			}
			if err != nil {
				// Garbage may also be refused, but then as ErrMalformed.
				if tc.wantText == nil && errors.Is(err, ErrMalformed) {
					return
				}
				t.Fatalf("Seal: %v", err)
			}
			pdf := filepath.Join(t.TempDir(), "m.pdf")
			if err := os.WriteFile(pdf, extractPDF(t, out.Bytes(), DefaultAttachmentName), 0o600); err != nil {
				t.Fatal(err)
			}
			if res := testpeer.QPDFCheck(t, pdf, testPassword); res.ExitCode != 0 {
				t.Fatalf("qpdf --check: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
			}
			if len(tc.wantText) > 0 {
				text := testpeer.PDFText(t, pdf, testPassword, false)
				for _, w := range tc.wantText {
					if !strings.Contains(text, w) {
						t.Errorf("text lacks %q\n%s", w, text)
					}
				}
			}
			if tc.minPages > 0 {
				if n := testpeer.PDFPages(t, pdf, testPassword); n < tc.minPages {
					t.Errorf("%d pages, want at least %d", n, tc.minPages)
				}
				text := testpeer.PDFText(t, pdf, testPassword, false)
				n := testpeer.PDFPages(t, pdf, testPassword)
				if !strings.Contains(text, fmt.Sprintf("Page %d of %d", n, n)) {
					t.Errorf("last page has no footer \"Page %d of %d\"", n, n)
				}
				// MuPDF draws the last page too.
				png, warn := testpeer.MuPDFRenderPNG(t, pdf, testPassword, n, 50, t.TempDir())
				if st, err := os.Stat(png); warn != "" || err != nil || st.Size() == 0 {
					t.Errorf("mutool draw of page %d: %q, %v", n, warn, err)
				}
			}
		})
	}
}

func TestSealRefusesEmptyPassword(t *testing.T) {
	_, err := (&Sealer{}).Seal(context.Background(), strings.NewReader("Subject: x\r\n\r\nx"), nil, &bytes.Buffer{})
	if !errors.Is(err, ErrEmptyPassword) {
		t.Fatalf("err = %v, want ErrEmptyPassword", err)
	}
}

func TestSealStripsSubjectTag(t *testing.T) {
	testpeer.Require(t, "pdftotext")
	tag, err := NewSubjectTag("[pw:]")
	if err != nil {
		t.Fatal(err)
	}
	p := &Passwords{Tag: tag}
	msg := buildMessage("Vertrag [PW: Geheim-42 ] März", testPart{contentType: "text/plain; charset=utf-8", body: []byte("Text\r\n")})
	carrier, pdf := seal(t, &Sealer{CleanSubject: p.CleanSubject}, msg, "Geheim-42")
	if bytes.Contains(carrier, []byte("Geheim")) || bytes.Contains(carrier, []byte("PW:")) {
		t.Errorf("carrier still carries the password tag:\n%s", carrier[:min(len(carrier), 2000)])
	}
	if !bytes.Contains(carrier, []byte("Subject: =?utf-8?q?Vertrag_M=C3=A4rz?=")) {
		t.Errorf("carrier subject not the cleaned one")
	}
	text := testpeer.PDFText(t, pdf, "Geheim-42", false)
	if strings.Contains(text, "Geheim") || !strings.Contains(text, "Vertrag März") {
		t.Errorf("PDF subject not cleaned:\n%s", text)
	}
}

// TestCarrierGolden pins the carrier's structure (headers, notice parts,
// PDF part headers); the PDF itself is random (IVs, keys) and replaced.
func TestCarrierGolden(t *testing.T) {
	pdfBody := regexp.MustCompile(`(?s)(Content-Type: application/pdf; name=message\.pdf\r\n\r\n)[A-Za-z0-9+/=\r\n]+(\r\n--)`)
	for _, lang := range []string{"de", "en"} {
		t.Run(lang, func(t *testing.T) {
			msg := buildMessage("Angebot „Sommer“ [pw:abc]",
				testPart{contentType: "text/plain; charset=utf-8", body: []byte("Hallo\r\n")},
				testPart{contentType: "application/pdf", filename: "Angebot.pdf", body: []byte("%PDF-1.7 x")})
			msg = append([]byte("Received: from x by y; Mon, 02 Mar 2026 10:15:00 +0100\r\nIn-Reply-To: <a@b>\r\nReferences: <a@b>\r\n    <c@d>\r\n"), msg...)
			tag, _ := NewSubjectTag("")
			s := &Sealer{Language: lang, Now: func() time.Time { return fixedTime }, Boundary: "sealgate-test", CleanSubject: (&Passwords{Tag: tag}).CleanSubject}
			var out bytes.Buffer
			// The password came from the subject: the notice says the
			// sender gave it.
			info, err := s.SealWithNote(context.Background(), bytes.NewReader(msg), []byte("abc"), CarrierNote{PasswordMode: ModeSubject}, &out)
			if err != nil {
				t.Fatal(err)
			}
			if info.Attachments != 1 || info.PDFBytes < 1000 || info.Subject != "Angebot „Sommer“" {
				t.Errorf("SealInfo = %+v", info)
			}
			got := pdfBody.ReplaceAll(out.Bytes(), []byte("${1}[PDF]${2}"))
			if bytes.Equal(got, out.Bytes()) {
				t.Fatal("PDF part not found in carrier")
			}
			golden(t, "carrier."+lang+".eml", got)
		})
	}
}

func TestTemplateOverrides(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notice.en.txt"), []byte("Custom notice for {{.Subject}} ({{.AttachmentName}})\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpl, err := LoadTemplates(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	s := &Sealer{Templates: tmpl, AttachmentName: "Nachricht.pdf"}
	if _, err := s.Seal(context.Background(), strings.NewReader("Subject: Hi\r\n\r\nbody"), []byte("pw12345678"), &out); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"Custom notice for Hi (Nachricht.pdf)", "<strong>Nachricht.pdf</strong>", "filename=Nachricht.pdf"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("carrier lacks %q", w)
		}
	}

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "notice.de.html"), []byte("{{.Subject"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTemplates(bad); err == nil || !strings.Contains(err.Error(), "notice.de.html") {
		t.Errorf("broken template: err = %v, want one naming notice.de.html", err)
	}
	if _, err := LoadTemplates(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "pdf.template_dir") {
		t.Errorf("missing dir: err = %v", err)
	}
	if _, err := (&Sealer{Language: "fr"}).Seal(context.Background(), strings.NewReader("x"), []byte("pw"), &out); err == nil || !strings.Contains(err.Error(), "use de or en") {
		t.Errorf("unknown language: err = %v", err)
	}
}

// TestSealNonASCIIPassword: German users type umlauts; R6 passwords are
// UTF-8 (SASLprep), and both readers must accept them.
func TestSealNonASCIIPassword(t *testing.T) {
	testpeer.Require(t, "qpdf")
	const pw = "Grüße-Straße-€5"
	_, pdf := seal(t, &Sealer{}, buildMessage("x", testPart{contentType: "text/plain", body: []byte("geheim\r\n")}), pw)
	if enc := testpeer.QPDFShowEncryption(t, pdf, pw); !strings.Contains(enc, "R = 6") {
		t.Errorf("qpdf with the UTF-8 password:\n%s", enc)
	}
	if got := testpeer.PDFText(t, pdf, pw, false); !strings.Contains(got, "geheim") {
		t.Errorf("pdftotext with the UTF-8 password: %q", got)
	}
	if res := testpeer.QPDFCheck(t, pdf, "Grusse-Strasse-€5"); res.ExitCode == 0 {
		t.Error("a different password opened the PDF")
	}
}

// escapeHTML escapes each line for an HTML body.
func escapeHTML(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = html.EscapeString(l)
	}
	return out
}
