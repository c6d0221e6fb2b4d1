package pdfmail

import (
	"bytes"
	"context"
	"html"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/sealgate/sealgate/internal/testpeer"
	"golang.org/x/text/unicode/norm"
)

// shapeCorpus is mail in right-to-left scripts, with marks and with emoji.
// exact are strings poppler must give back as they are, in logical order;
// words are strings it must give back somewhere; every character of the
// mail must come back.
//
// poppler (22.12, reorderText) reorders right-to-left text by the page's
// main direction, which it counts from the characters: on a page that is
// mostly right to left (a Hebrew or Arabic letter of some lines: its body
// outweighs the Latin header block), right-to-left lines come back
// exactly; on a mostly left-to-right page it takes punctuation for
// left-to-right text and moves it out of right-to-left runs, whatever the
// PDF: there only the words are checked. In both, a run of punctuation
// and space inside right-to-left text (", " between two words) comes back
// in the order it is drawn (" ,"): strings are compared without spaces.
var shapeCorpus = []struct {
	name, subject string
	body          []string
	exact, words  []string
	// astral: drawn from a system font with characters outside the BMP
	// (fonts-symbola).
	astral []rune
	// spaced: lines come back with their spaces as they are (no space
	// inside a word where a mark below ends a shaped word before its end).
	spaced bool
}{
	{
		name:    "arabic",
		subject: "مرحبا بالعالم",
		body: []string{
			"السلام عليكم ورحمة الله وبركاته.",
			"هذه رسالة تجريبية لاختبار الحروف العربية المتصلة، مثل لا وللا والله وإلى وأنا.",
			"الفقرة الثانية: كتب الطالب الدرس في المكتبة، ثم ذهب إلى البيت مع أصدقائه.",
			"نرجو منكم مراجعة العرض المرفق وإرسال ملاحظاتكم قبل نهاية الأسبوع القادم.",
			"هذه فقرة طويلة تتجاوز عرض السطر الواحد، لذلك يقسمها النظام إلى أسطر حسب ترتيب القراءة، ثم يرتب كل سطر من اليمين إلى اليسار، فتبقى الكلمات الأولى في السطر الأول وعلى الجانب الأيمن من الصفحة.",
			"مع أطيب التحيات، فريق المبيعات",
		},
	},
	{
		name:    "hebrew",
		subject: "שלום עולם",
		body: []string{
			"שלום לכולם, זוהי הודעת בדיקה בעברית.",
			"הפגישה תתקיים ביום שלישי בבוקר (בשעה 9) במשרד הראשי של החברה.",
			"אנא הביאו איתכם את המסמכים החתומים ואת הצעת המחיר המעודכנת.",
			"נשמח לראותכם, ובמקרה של שאלות אפשר לפנות אלינו בכל עת.",
			// Wider than a line: broken in logical order, each line right-aligned.
			"פסקה ארוכה שעוברת את רוחב השורה: המערכת שוברת אותה לשורות לפי סדר הקריאה, ורק אחר כך מסדרת כל שורה מימין לשמאל, כך שהמילים הראשונות נמצאות בשורה הראשונה ובצד ימין של הדף.",
			"בברכה, צוות המכירות",
		},
		// poppler takes a number and the neutral characters next to it
		// for a left-to-right run: "(בשעה 9)" comes back as "(בשעה )9".
		// The brackets copy as written (not as the mirrored glyphs).
		exact: []string{
			"שלום עולם",
			"שלום לכולם, זוהי הודעת בדיקה בעברית.",
			"אנא הביאו איתכם את המסמכים החתומים ואת הצעת המחיר המעודכנת.",
			"נשמח לראותכם, ובמקרה של שאלות אפשר לפנות אלינו בכל עת.",
			"פסקה ארוכה שעוברת את רוחב השורה: המערכת שוברת אותה לשורות לפי סדר הקריאה, ורק אחר כך מסדרת כל שורה מימין לשמאל, כך שהמילים הראשונות נמצאות בשורה הראשונה ובצד ימין של הדף.",
			"בברכה, צוות המכירות",
		},
		words: []string{"הפגישה תתקיים ביום שלישי בבוקר (בשעה", "במשרד הראשי של החברה."},
	},
	{
		name:    "mixed",
		subject: "Re: פגישה",
		body: []string{
			"הפגישה עם John Smith תתקיים ב-15 במרץ בשעה 10:30 (חדר 4).",
			"The word שלום means peace, and مرحبا means hello: 3 words.",
			"מחיר: 1,234.50 ₪ כולל מע\"מ",
		},
		exact: []string{"Re: פגישה"},
		words: []string{"הפגישה עם", "John Smith", "תתקיים", "במרץ בשעה", "10:30", "חדר", "The word", "שלום", "means peace, and", "مرحبا", "means hello: 3 words.", "1,234.50", "כולל מע\"מ"},
	},
	{
		name:    "diacritics",
		subject: "قُرْآن",
		body:    []string{"بِسْمِ اللَّهِ الرَّحْمَٰنِ الرَّحِيمِ", "الْحَمْدُ لِلَّهِ رَبِّ الْعَالَمِينَ", "שָׁלוֹם עֲלֵיכֶם", "Cafe\u0301 nai\u0308ve"},
		exact:   []string{"قُرْآن", "Café naïve"},
		// poppler puts the mark at the left end of a line before the line.
		words: []string{"بِسْمِ اللَّهِ الرَّحْمَٰنِ الرَّحِيم", "الْحَمْدُ لِلَّهِ رَبِّ الْعَالَمِين", "שָׁלוֹם עֲלֵיכֶם"},
	},
	// Complex scripts shaped with the fonts' OpenType tables (hbshape.go):
	// conjuncts (क्ष, त्र, স্ক), reph (र्), vowel signs drawn before their
	// consonant (ि, ে, ொ split around it), Thai marks stacked (ที่, น้ำ).
	{
		name:    "hindi",
		spaced:  true,
		subject: "हिन्दी पत्र",
		body: []string{
			"नमस्ते, यह हिन्दी में एक परीक्षण संदेश है।",
			"क्षत्रिय, प्रति, श्री, कर्म, द्वार, हृदय, पत्नी।",
			"कृपया संलग्न प्रस्ताव देखें और सप्ताह के अंत तक अपनी टिप्पणियाँ भेजें।",
			"धन्यवाद, बिक्री टीम",
		},
	},
	{
		name:    "bengali",
		spaced:  true,
		subject: "বাংলা চিঠি",
		body: []string{
			"নমস্কার, এটি একটি পরীক্ষামূলক বার্তা।",
			"ক্ষমা, শ্রী, প্রতি, কার্যালয়, কৌশল।",
			"ধন্যবাদ, বিক্রয় দল",
		},
	},
	{
		name:    "tamil",
		spaced:  true,
		subject: "தமிழ் கடிதம்",
		body: []string{
			"வணக்கம், இது ஒரு சோதனை செய்தி.",
			"கொடு, கோடு, கௌரவம், ஸ்ரீ, க்ஷேத்திரம்.",
			"நன்றி, விற்பனை குழு",
		},
	},
	{
		name:    "thai",
		spaced:  true,
		subject: "จดหมายภาษาไทย",
		body: []string{
			"สวัสดีครับ ที่นี่ น้ำ",
			"นี่คือข้อความทดสอบภาษาไทย ผู้ใหญ่ กี่ปี ปู่ ฎีกา",
			"ขอบคุณครับ",
		},
	},
	{
		name:    "hindi-mixed",
		spaced:  true,
		subject: "Re: बैठक",
		body: []string{
			"The meeting (बैठक) is on Monday at 10:30 in कक्ष 4.",
			"Price: 1,234.50 € – कृपया पुष्टि करें।",
		},
	},
	{
		name:    "emoji",
		subject: "Party 🎉 tonight 👍",
		body:    []string{"Great work 👍 see you ☺ ✓", "Zahlen: 𝟙𝟚𝟛 and a flag 🏁"},
		astral:  []rune{0x1F389, 0x1F44D, 0x1D7D9, 0x1F3C1},
	},
}

// popplerClean removes the embedding marks poppler wraps right-to-left
// text in (U+202A–U+202E) and normalises to NFC.
func popplerClean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r >= 0x202A && r <= 0x202E {
			return -1
		}
		return r
	}, s)
	return norm.NFC.String(s)
}

// TestShapedScriptsInEveryReader seals the corpus and opens each PDF with
// poppler (text, in logical order, as the mail's characters: no
// presentation forms, no Private Use Area codes), qpdf --check and MuPDF
// (page drawn, compared with a golden image that was looked at).
func TestShapedScriptsInEveryReader(t *testing.T) {
	testpeer.Require(t, "pdftotext")
	testpeer.Require(t, "qpdf")
	testpeer.Require(t, "mutool")
	out := os.Getenv("SEALGATE_PDF_PNG_DIR")
	for _, tc := range shapeCorpus {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.astral) > 0 {
				requireAstralFontFor(t, tc.astral...)
			}
			body := strings.Join(tc.body, "\r\n") + "\r\n"
			msg := buildMessage(tc.subject, testPart{contentType: "text/plain; charset=utf-8", body: []byte(body)})
			var carrier bytes.Buffer
			info, err := (&Sealer{}).Seal(context.Background(), bytes.NewReader(msg), []byte(testPassword), &carrier)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if len(info.Warnings) > 0 {
				t.Errorf("warnings: %v", info.Warnings)
			}
			pdfDir := t.TempDir()
			if out != "" {
				pdfDir = out
			}
			pdf := filepath.Join(pdfDir, tc.name+".pdf")
			if err := os.WriteFile(pdf, extractPDF(t, carrier.Bytes(), DefaultAttachmentName), 0o600); err != nil {
				t.Fatal(err)
			}
			raw := testpeer.PDFText(t, pdf, testPassword, false)
			got := popplerClean(raw)
			noSpace := func(s string) string { return strings.Join(strings.Fields(s), "") }
			exact := tc.exact
			if exact == nil {
				exact = append([]string{tc.subject}, tc.body...)
			}
			for _, want := range append(exact, tc.words...) {
				if !strings.Contains(noSpace(got), noSpace(norm.NFC.String(want))) {
					t.Errorf("pdftotext lost %q\n--- text ---\n%s", want, got)
				}
			}
			if tc.spaced {
				for _, want := range append([]string{tc.subject}, tc.body...) {
					if !strings.Contains(got, norm.NFC.String(want)) {
						t.Errorf("pdftotext changed the spaces of %q\n--- text ---\n%s", want, got)
					}
				}
			}
			have := map[rune]int{}
			for _, r := range got {
				have[r]++
				if r >= 0xFB50 && r <= 0xFDFF || r >= 0xFE70 && r <= 0xFEFF || r >= 0xE000 && r <= 0xF8FF {
					t.Errorf("text copies as U+%04X, not as the mail's character", r)
				}
			}
			for _, r := range norm.NFC.String(tc.subject + strings.Join(tc.body, "")) {
				if unicode.IsSpace(r) {
					continue
				}
				if have[r] == 0 {
					t.Errorf("pdftotext lost %q (U+%04X)", r, r)
				}
				have[r]--
			}
			if r := testpeer.QPDFCheck(t, pdf, testPassword); r.ExitCode != 0 {
				t.Errorf("qpdf --check exited %d:\n%s%s", r.ExitCode, r.Stdout, r.Stderr)
			}
			dir := t.TempDir()
			if out != "" {
				dir = out
			}
			pngPath, warn := testpeer.MuPDFRenderPNG(t, pdf, testPassword, 1, 50, dir)
			if warn != "" {
				t.Errorf("mutool draw complained: %s", warn)
			}
			goldenImage(t, filepath.Join("shape", tc.name+".png"), pngPath)
		})
	}
}

// requireAstralFontFor skips (fails under CI=true) when no system font
// has the characters outside the BMP (scripts/install-peers.sh installs
// fonts-symbola).
func requireAstralFontFor(t *testing.T, rs ...rune) {
	t.Helper()
	for _, r := range rs {
		if builtinChain().fontFor(r) < 0 {
			msg := "no system font has " + string(r) + " (scripts/install-peers.sh installs fonts-symbola)"
			if testpeer.InCI() {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

// Golden page images are compared with a tolerance: rasterizer versions
// differ in anti-aliasing, not in where the letters are.
const (
	pixelThreshold = 64    // a pixel differs when its grey level is this far off
	maxDiffShare   = 0.004 // share of differing pixels allowed
)

// goldenImage compares the PNG at path with testdata/name (rewritten under
// -update; look at it before committing).
func goldenImage(t *testing.T, name, path string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(want), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(want, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantPNG, err := os.ReadFile(want)
	if err != nil {
		t.Fatalf("golden image %s: %v (run go test -update, then look at it)", want, err)
	}
	a, err := png.Decode(bytes.NewReader(got))
	if err != nil {
		t.Fatalf("page image: %v", err)
	}
	b, err := png.Decode(bytes.NewReader(wantPNG))
	if err != nil {
		t.Fatalf("golden image %s: %v", want, err)
	}
	diff, total := pixelDiff(a, b)
	if float64(diff) > maxDiffShare*float64(total) {
		t.Errorf("page differs from %s in %d of %d pixels (page kept at %s)", want, diff, total, path)
	}
}

// pixelDiff counts the pixels whose grey level differs by more than
// pixelThreshold; images of different sizes differ everywhere.
func pixelDiff(a, b image.Image) (diff, total int) {
	ra, rb := a.Bounds(), b.Bounds()
	total = max(ra.Dx()*ra.Dy(), rb.Dx()*rb.Dy())
	if ra.Size() != rb.Size() {
		return total, total
	}
	for y := 0; y < ra.Dy(); y++ {
		for x := 0; x < ra.Dx(); x++ {
			ga := color.GrayModel.Convert(a.At(ra.Min.X+x, ra.Min.Y+y)).(color.Gray).Y
			gb := color.GrayModel.Convert(b.At(rb.Min.X+x, rb.Min.Y+y)).(color.Gray).Y
			if d := int(ga) - int(gb); d > pixelThreshold || d < -pixelThreshold {
				diff++
			}
		}
	}
	return diff, total
}

// TestPixelDiff: the comparison sees a moved word and ignores anti-aliasing.
func TestPixelDiff(t *testing.T) {
	page := func(dx int, grey uint8) image.Image {
		m := image.NewGray(image.Rect(0, 0, 100, 50))
		for i := range m.Pix {
			m.Pix[i] = 255
		}
		for y := 20; y < 30; y++ {
			for x := 10 + dx; x < 40+dx; x++ {
				m.SetGray(x, y, color.Gray{Y: grey})
			}
		}
		return m
	}
	tests := []struct {
		name string
		a, b image.Image
		want int
	}{
		{"same", page(0, 0), page(0, 0), 0},
		{"lighter ink", page(0, 0), page(0, 40), 0},
		{"word moved", page(0, 0), page(20, 0), 2 * 20 * 10},
		{"other size", page(0, 0), image.NewGray(image.Rect(0, 0, 10, 10)), 5000},
	}
	for _, tc := range tests {
		if got, _ := pixelDiff(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: %d pixels differ, want %d", tc.name, got, tc.want)
		}
	}
}

// TestRightToLeftHTMLLaidOutAsText: HTML mail with Arabic or Hebrew, or
// with Hindi or Thai (no text alternative, as Outlook can send it), is
// laid out by the text layout, which orders, joins and shapes: poppler
// gets every word back and no presentation form, and MuPDF draws the page
// as it draws the same lines sent as text/plain (the golden of that case,
// same tolerance).
func TestRightToLeftHTMLLaidOutAsText(t *testing.T) {
	testpeer.Require(t, "pdftotext")
	testpeer.Require(t, "mutool")
	for _, tc := range shapeCorpus {
		if !slices.Contains([]string{"arabic", "hebrew", "hindi", "thai"}, tc.name) {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			requireSystemFontFor(t, []rune(strings.Join(tc.body, ""))...)
			var h strings.Builder
			h.WriteString("<html><head><style>p{color:red}</style></head><body><div>")
			for i, l := range tc.body {
				if i > 0 {
					h.WriteString("<br>")
				}
				h.WriteString(html.EscapeString(l))
			}
			h.WriteString("</div></body></html>")
			msg := buildMessage(tc.subject, testPart{contentType: "text/html; charset=utf-8", body: []byte(h.String())})
			var carrier bytes.Buffer
			if _, err := (&Sealer{}).Seal(context.Background(), bytes.NewReader(msg), []byte(testPassword), &carrier); err != nil {
				t.Fatalf("Seal: %v", err)
			}
			pdf := filepath.Join(t.TempDir(), tc.name+".pdf")
			if err := os.WriteFile(pdf, extractPDF(t, carrier.Bytes(), DefaultAttachmentName), 0o600); err != nil {
				t.Fatal(err)
			}
			got := popplerClean(testpeer.PDFText(t, pdf, testPassword, false))
			noSpace := func(s string) string { return strings.Join(strings.Fields(s), "") }
			for _, want := range tc.body {
				for _, w := range strings.Fields(norm.NFC.String(want)) {
					if !strings.Contains(noSpace(got), noSpace(strings.Trim(w, ".,:()،।"))) {
						t.Errorf("pdftotext lost %q\n--- text ---\n%s", w, got)
					}
				}
			}
			for _, r := range got {
				if r >= 0xFB50 && r <= 0xFDFF || r >= 0xFE70 && r <= 0xFEFF {
					t.Errorf("text copies as U+%04X, not as the mail's character", r)
				}
			}
			if strings.Contains(got, "color:red") {
				t.Error("the style sheet became text")
			}
			pngPath, _ := testpeer.MuPDFRenderPNG(t, pdf, testPassword, 1, 50, t.TempDir())
			goldenImage(t, filepath.Join("shape", tc.name+".png"), pngPath)
		})
	}
}
