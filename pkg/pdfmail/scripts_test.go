package pdfmail

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// scriptCorpus is mail in the scripts recipients write in. Each line must
// come back from poppler exactly (the fonts' ToUnicode maps) and the pages
// must be drawn by MuPDF.
var scriptCorpus = []struct {
	name, subject string
	lines         []string
	// needsSystemFonts: the built-in DejaVu Sans lacks the script, so it is
	// drawn from the system's fonts (fonts-droid-fallback, fonts-noto-core).
	needsSystemFonts bool
}{
	{"german", "Angebot für Größe „XL“", []string{"Sehr geehrte Frau Müller,", "anbei das Angebot über 1.234,56 € für Straßenbau."}, false},
	{"greek", "Προσφορά", []string{"Αγαπητέ κύριε Παπαδόπουλε,", "η συνάντηση είναι την Τρίτη."}, false},
	{"cyrillic", "Предложение", []string{"Уважаемый Иван Петрович,", "счёт приложен к письму."}, false},
	{"chinese", "会议通知", []string{"尊敬的王先生：", "会议定于星期三下午三点举行。"}, true},
	{"japanese", "会議のお知らせ", []string{"山田様", "いつもお世話になっております。カタカナもテスト。"}, true},
	{"korean", "회의 안내", []string{"김철수 님께,", "회의는 수요일 오후 세 시에 열립니다."}, true},
	// Zero-width marks: fpdf's Write took each as 65535 units wide and
	// broke the line after it.
	{"combining marks", "नमस्ते", []string{"नमस्ते दुनिया, नमस्कार", "Cafe\u0301 nai\u0308ve – one line"}, true},
	{"mixed", "Grüße 你好 Привет", []string{"Latin, Ελληνικά, Русский, 中文, 日本語, 한국어 on one line.", "✓ done ☺ – “quotes” ½"}, true},
}

func TestScriptCorpusReadsBackInEveryReader(t *testing.T) {
	testpeer.Require(t, "pdftotext")
	testpeer.Require(t, "qpdf")
	testpeer.Require(t, "mutool")
	out := os.Getenv("SEALGATE_PDF_PNG_DIR") // set to keep the PNGs for a look
	for _, tc := range scriptCorpus {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needsSystemFonts {
				requireSystemFontFor(t, []rune(strings.Join(tc.lines, ""))...)
			}
			body := strings.Join(tc.lines, "\r\n") + "\r\n"
			msg := buildMessage(tc.subject, testPart{contentType: "text/plain; charset=utf-8", body: []byte(body)})
			var carrier bytes.Buffer
			info, err := (&Sealer{}).Seal(context.Background(), bytes.NewReader(msg), []byte(testPassword), &carrier)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if len(info.Warnings) > 0 {
				t.Errorf("warnings for text every font chain should cover: %v", info.Warnings)
			}
			pdf := filepath.Join(t.TempDir(), tc.name+".pdf")
			if err := os.WriteFile(pdf, extractPDF(t, carrier.Bytes(), DefaultAttachmentName), 0o600); err != nil {
				t.Fatal(err)
			}
			got := testpeer.PDFText(t, pdf, testPassword, false)
			for _, want := range append([]string{tc.subject}, tc.lines...) {
				if !strings.Contains(got, want) {
					t.Errorf("pdftotext lost %q\n--- text ---\n%s", want, got)
				}
			}
			if r := testpeer.QPDFCheck(t, pdf, testPassword); r.ExitCode != 0 {
				t.Errorf("qpdf --check exited %d:\n%s%s", r.ExitCode, r.Stdout, r.Stderr)
			}
			dir := t.TempDir()
			if out != "" {
				dir = out
			}
			png, warn := testpeer.MuPDFRenderPNG(t, pdf, testPassword, 1, 100, dir)
			if warn != "" {
				t.Errorf("mutool draw complained: %s", warn)
			}
			if st, err := os.Stat(png); err != nil || st.Size() == 0 {
				t.Errorf("mutool drew no page: %v", err)
			}
		})
	}
}

// requireSystemFontFor skips (fails under CI=true) when no system font
// has the characters: scripts/install-peers.sh installs them.
func requireSystemFontFor(t *testing.T, rs ...rune) {
	t.Helper()
	c := builtinChain()
	for _, r := range rs {
		if r != ' ' && c.fontFor(r) < 0 {
			msg := "no system font has " + string(r) + " (scripts/install-peers.sh installs fonts-droid-fallback, fonts-noto-core, fonts-symbola)"
			if testpeer.InCI() {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

// TestCharacterNoFontHasNeverFailsThePDF plays a sender whose mail has
// characters no font of the chain draws (unassigned code points, in and
// outside the Basic Multilingual Plane, among them the emoji blocks): the
// PDF is made, the characters become U+FFFD, and the caller is told which
// ones. (Emoji a font has are drawn: TestShapedScriptsInEveryReader.)
func TestCharacterNoFontHasNeverFailsThePDF(t *testing.T) {
	testpeer.Require(t, "pdftotext")
	testpeer.Require(t, "qpdf")
	tests := []struct {
		name, subject, body string
		missing             []string
	}{
		{"unassigned emoji code point in body", "Thanks", "Great work \U0001F7FF see you\r\n", []string{"U+1F7FF"}},
		{"unassigned emoji code point in subject", "Party \U0001F7FE tonight", "Details inside.\r\n", []string{"U+1F7FE"}},
		{"unassigned code point", "Odd", "before \U000EFFFD after \u0378 end\r\n", []string{"U+0378", "U+EFFFD"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := buildMessage(tc.subject, testPart{contentType: "text/plain; charset=utf-8", body: []byte(tc.body)})
			var carrier bytes.Buffer
			info, err := (&Sealer{}).Seal(context.Background(), bytes.NewReader(msg), []byte(testPassword), &carrier)
			if err != nil {
				t.Fatalf("Seal failed instead of drawing a replacement: %v", err)
			}
			warn := strings.Join(info.Warnings, "\n")
			for _, m := range tc.missing {
				if !strings.Contains(warn, m) {
					t.Errorf("warnings %q do not name %s", info.Warnings, m)
				}
			}
			pdf := filepath.Join(t.TempDir(), "m.pdf")
			if err := os.WriteFile(pdf, extractPDF(t, carrier.Bytes(), DefaultAttachmentName), 0o600); err != nil {
				t.Fatal(err)
			}
			got := testpeer.PDFText(t, pdf, testPassword, false)
			if !strings.Contains(got, "\uFFFD") {
				t.Errorf("no replacement mark in the text:\n%s", got)
			}
			for _, w := range strings.Fields(tc.body) {
				if !strings.ContainsFunc(w, func(r rune) bool { return r > 0x2FFF }) && w != "\u0378" && !strings.Contains(got, w) {
					t.Errorf("pdftotext lost %q:\n%s", w, got)
				}
			}
			if r := testpeer.QPDFCheck(t, pdf, testPassword); r.ExitCode != 0 {
				t.Errorf("qpdf --check exited %d:\n%s%s", r.ExitCode, r.Stdout, r.Stderr)
			}
			if title := testpeer.PDFTitle(t, pdf, testPassword); title != tc.subject {
				t.Errorf("document title %q, want the subject %q", title, tc.subject)
			}
		})
	}
}
