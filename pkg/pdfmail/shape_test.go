package pdfmail

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
	"golang.org/x/text/unicode/norm"
)

// visual lays out one paragraph as one line and returns it in drawing
// order (left to right), as the text writer does.
func visual(s string) (string, uint8) {
	rs := []rune(s)
	levels, base := bidiLevels(rs)
	var b strings.Builder
	for _, i := range visualOrder(rs, levels) {
		r := rs[i]
		if levels[i]%2 == 1 {
			r = mirrored(r)
		}
		b.WriteRune(r)
	}
	return b.String(), base
}

// TestBidiVisualOrder: paragraphs in logical order and how they must be
// drawn left to right (UAX #9 examples and mail-like lines).
func TestBidiVisualOrder(t *testing.T) {
	tests := []struct {
		name, in, want string
		base           uint8
	}{
		{"latin", "Hello world", "Hello world", 0},
		{"hebrew", "שלום עולם", "םלוע םולש", 1},
		{"hebrew with number", "שלום 123", "123 םולש", 1},
		{"number first, hebrew decides", "123 שלום", "םולש 123", 1},
		{"english paragraph, hebrew words and number", "Hello שלום 123 עולם end", "Hello םלוע 123 םולש end", 0},
		{"hebrew paragraph, english words", "הפגישה עם John Smith היום", "םויה John Smith םע השיגפה", 1},
		{"brackets mirrored", "(חדר 4).", ".(4 רדח)", 1},
		{"decimal number stays whole", "מחיר: 1,234.50 ₪", "₪ 1,234.50 :ריחמ", 1},
		{"arabic number after arabic in english", "Total مبلغ 42.", "Total 42 غلبم.", 0},
		{"latin marks follow their letter", "Cafe\u0301", "Cafe\u0301", 0},
		{"hebrew marks reversed with their letters", "שָׁלוֹם", reverse("שָׁלוֹם"), 1},
		{"arabic marks reversed with their letters", "بِسْمِ", reverse("بِسْمِ"), 1},
		{"no strong character", "123 456", "123 456", 0},
		{"explicit RLM", "\u200F123 abc", "abc 123\u200F", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, base := visual(tc.in)
			if got != tc.want || base != tc.base {
				t.Errorf("visual(%q) = %q (base %d), want %q (base %d)", tc.in, got, base, tc.want, tc.base)
			}
		})
	}
}

// TestShapeArabic: letters take the form of their place in the word.
func TestShapeArabic(t *testing.T) {
	all := func(rune) bool { return true }
	tests := []struct {
		name, in, want string
	}{
		{"beh beh: initial, final", "بب", "\uFE91\uFE90"},
		{"three: initial, medial, final", "ببب", "\uFE91\uFE92\uFE90"},
		{"alone", "ب", "\uFE8F"},
		{"words apart", "ب ب", "\uFE8F \uFE8F"},
		{"reh joins only backwards", "بري", "\uFE91\uFEAE\uFEF1"},
		{"lam alef ligature", "لا", "\uFEFB"},
		{"lam alef after a letter", "ملا", "\uFEE3\uFEFC"},
		{"lam alef with hamza", "لأ", "\uFEF7"},
		{"marks are transparent", "بَب", "\uFE91\u064E\uFE90"},
		{"tatweel joins", "بـب", "\uFE91\u0640\uFE90"},
		{"hamza joins nothing", "بءب", "\uFE8F\uFE80\uFE8F"},
		{"zero width non-joiner", "ب\u200Cب", "\uFE8F\u200C\uFE8F"},
		{"farsi yeh from forms A", "یی", "\uFBFE\uFBFD"},
		{"latin untouched", "abc", "abc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(shapeArabic([]rune(tc.in), all)); got != tc.want {
				t.Errorf("shapeArabic(%q) = %U, want %U", tc.in, []rune(got), []rune(tc.want))
			}
		})
	}
	// A form no font has: the letter stays as it is.
	none := func(rune) bool { return false }
	if got := string(shapeArabic([]rune("بلا"), none)); got != "بلا" {
		t.Errorf("without drawable forms got %U", []rune(got))
	}
}

// TestToUnicodeCMap reads the CMap back: every code of the BMP is mapped
// exactly once, presentation forms to the characters they stand for (their
// NFKC form, ligatures left to right), all else to itself, no range crosses a first-byte change.
func TestToUnicodeCMap(t *testing.T) {
	cmap := string(toUnicodeCMap(arabic().original))
	mapped := make([]int, 0x10000)
	to := map[int]string{}
	rangeRe := regexp.MustCompile(`(?m)^<([0-9A-F]{4})> <([0-9A-F]{4})> <([0-9A-F]{4})>$`)
	charRe := regexp.MustCompile(`(?m)^<([0-9A-F]{4})> <([0-9A-F]+)>$`)
	hex := func(s string) int { v, _ := strconv.ParseUint(s, 16, 32); return int(v) }
	for _, m := range rangeRe.FindAllStringSubmatch(cmap, -1) {
		lo, hi, dst := hex(m[1]), hex(m[2]), hex(m[3])
		if lo>>8 != hi>>8 || lo != dst {
			t.Fatalf("bad range %v", m[0])
		}
		for c := lo; c <= hi; c++ {
			mapped[c]++
		}
	}
	var chars strings.Builder
	for _, blk := range strings.Split(cmap, "beginbfchar")[1:] {
		chars.WriteString(strings.Split(blk, "endbfchar")[0])
	}
	for _, m := range charRe.FindAllStringSubmatch(chars.String(), -1) {
		c := hex(m[1])
		mapped[c]++
		var u []uint16
		for i := 0; i+4 <= len(m[2]); i += 4 {
			u = append(u, uint16(hex(m[2][i:i+4])))
		}
		to[c] = string(utf16Decode(u))
	}
	for c, n := range mapped {
		if n != 1 {
			t.Fatalf("U+%04X mapped %d times", c, n)
		}
	}
	for _, form := range []rune{0xFE91, 0xFEFB, 0xFEF7, 0xFBFE, 0xFE8B} {
		want := norm.NFKC.String(string(form))
		if form >= 0xFEF5 {
			// A ligature in a right-to-left run: its characters in the
			// order of the run's glyphs, alef (left) then lam.
			want = reverse(want)
		}
		if got := to[int(form)]; got != want {
			t.Errorf("U+%04X copies as %U, want %U", form, []rune(got), []rune(want))
		}
	}
	for _, blk := range strings.Split(cmap, "beginbf")[1:] {
		if n := strings.Count(blk, "\n<"); n > 100 {
			t.Errorf("a block holds %d entries", n)
		}
	}
}

func reverse(s string) string {
	rs := []rune(s)
	slices.Reverse(rs)
	return string(rs)
}

func utf16Decode(u []uint16) []rune {
	var out []rune
	for i := 0; i < len(u); i++ {
		if u[i] >= 0xD800 && u[i] < 0xDC00 && i+1 < len(u) {
			out = append(out, (rune(u[i])-0xD800)<<10+(rune(u[i+1])-0xDC00)+0x10000)
			i++
			continue
		}
		out = append(out, rune(u[i]))
	}
	return out
}

// TestWithCmapRoundTrip: the rewritten font maps exactly the given codes,
// read back by the same reader the chain uses.
func TestWithCmapRoundTrip(t *testing.T) {
	codes := map[rune]uint16{0xE000: 5, 0xE001: 6, 0xE002: 9, 0xE010: 7}
	data, err := withCmap(fontRegular, codes)
	if err != nil {
		t.Fatal(err)
	}
	cov, err := fontCoverage(data)
	if err != nil {
		t.Fatalf("rewritten font unreadable: %v", err)
	}
	var got []rune
	for r := rune(0); r < 0xFFFF; r++ {
		if cov.has(r) {
			got = append(got, r)
		}
	}
	want := []rune{0xE000, 0xE001, 0xE002, 0xE010}
	if !slices.Equal(got, want) {
		t.Errorf("codes %U, want %U", got, want)
	}
	if err := probeFont(data, "\uE001"); err != nil {
		t.Errorf("fpdf cannot draw with the rewritten font: %v", err)
	}
}

// TestAstralFontsRefuseHostileTables plays a font file whose tables lie.
func TestAstralFontsRefuseHostileTables(t *testing.T) {
	// A format-12 cmap claiming a billion groups.
	lying := make([]byte, 12+16+12+16)
	copy(lying, "\x00\x01\x00\x00")
	binary.BigEndian.PutUint16(lying[4:], 1)
	copy(lying[12:], "cmap")
	binary.BigEndian.PutUint32(lying[20:], 28)
	cm := lying[28:]
	binary.BigEndian.PutUint16(cm[2:], 1)
	binary.BigEndian.PutUint16(cm[4:], 3)
	binary.BigEndian.PutUint16(cm[6:], 10)
	binary.BigEndian.PutUint32(cm[8:], 12)
	binary.BigEndian.PutUint16(cm[12:], 12)
	binary.BigEndian.PutUint32(cm[24:], 1<<30-1)
	if g := astralGlyphs(lying); len(g) != 0 {
		t.Errorf("lying group count read %d glyphs", len(g))
	}
	// A table directory pointing past the end of the file.
	past := make([]byte, 12+16)
	binary.BigEndian.PutUint16(past[4:], 1)
	copy(past[12:], "glyf")
	binary.BigEndian.PutUint32(past[20:], 1000)
	binary.BigEndian.PutUint32(past[24:], 1000)
	if _, err := withCmap(past, nil); err == nil {
		t.Error("withCmap accepted a table outside the file")
	}
	for _, data := range [][]byte{nil, []byte("OTTO"), make([]byte, 11)} {
		if g := astralGlyphs(data); g != nil {
			t.Errorf("astralGlyphs(%q) = %v", data, g)
		}
	}
}

// FuzzParagraphLayout: any paragraph is shaped and reordered into a
// permutation of itself, never a panic.
func FuzzParagraphLayout(f *testing.F) {
	for _, s := range []string{"שלום 123 (abc)", "بِسْمِ اللَّهِ", "a\u202Eb\u202Cc\u2067d\u2069", "لا ﻻ ـ", "\u0300\u05B0x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs := shapeArabic([]rune(s), func(rune) bool { return true })
		levels, _ := bidiLevels(rs)
		if len(levels) != len(rs) {
			t.Fatalf("%d levels for %d characters", len(levels), len(rs))
		}
		order := visualOrder(rs, levels)
		seen := make([]bool, len(rs))
		for _, i := range order {
			if i < 0 || i >= len(rs) || seen[i] {
				t.Fatalf("order %v is not a permutation of %d", order, len(rs))
			}
			seen[i] = true
		}
		if len(order) != len(rs) {
			t.Fatalf("order has %d of %d characters", len(order), len(rs))
		}
	})
}

// TestMailCannotTakePrivateUseCodes plays a sender who writes thousands of
// distinct characters outside the BMP, hoping to use up the Private Use
// Area codes the astral fonts are drawn with: the codes are given when the
// chain is built, from the fonts, so the mail changes nothing.
func TestMailCannotTakePrivateUseCodes(t *testing.T) {
	builtinChain()
	count := func() int {
		astralRegistry.mu.Lock()
		defer astralRegistry.mu.Unlock()
		return len(astralRegistry.toPUA)
	}
	before := count()
	var body strings.Builder
	for r := rune(0x12000); r < 0x12000+7000; r++ {
		body.WriteRune(r)
		if r%50 == 0 {
			body.WriteString("\r\n")
		}
	}
	msg := buildMessage("Keilschrift", testPart{contentType: "text/plain; charset=utf-8", body: []byte(body.String())})
	if _, err := (&Sealer{}).Seal(context.Background(), bytes.NewReader(msg), []byte(testPassword), io.Discard); err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if after := count(); after != before {
		t.Errorf("a mail changed the registered codes: %d before, %d after", before, after)
	}
}

// TestLinesBrokenInLogicalOrder: a right-to-left paragraph wider than a
// line is broken in logical order (its first words on the first line),
// then each line is reordered on its own.
func TestLinesBrokenInLogicalOrder(t *testing.T) {
	tests := []struct {
		name, in string
		avail    float64
		want     []string // each line as drawn, left to right
	}{
		{"hebrew", "אחת שתיים שלוש ארבע", 10, []string{"םייתש תחא", "עברא שולש"}},
		{"english", "one two three four", 10, []string{"one two", "three four"}},
		{"mixed, numbers keep their order", "מחיר 1234 שקל היום", 10, []string{"1234 ריחמ", "םויה לקש"}},
		{"long word broken between letters", "אבגדהוזחטיכלמנ", 5, []string{"הדגבא", "יטחזו", "נמלכ"}},
		{"mark stays with its letter", "ab\u0301cdef", 2, []string{"ab\u0301", "cd", "ef"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := []rune(tc.in)
			levels, _ := bidiLevels(rs)
			w := make([]float64, len(rs))
			for i, r := range rs {
				if !isMark(r) {
					w[i] = 1
				}
			}
			var got []string
			for _, l := range breakLines(rs, w, tc.avail, nil) {
				line, lv := rs[l[0]:l[1]], levels[l[0]:l[1]]
				for len(line) > 0 && line[len(line)-1] == ' ' {
					line, lv = line[:len(line)-1], lv[:len(lv)-1]
				}
				var b strings.Builder
				for _, i := range visualOrder(line, lv) {
					b.WriteRune(line[i])
				}
				got = append(got, b.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("lines %q, want %q", got, tc.want)
			}
		})
	}
}

// TestShapedSealsConcurrently: the chain's fonts, the astral codes and the
// ToUnicode maps are shared by concurrent seals (run with -race).
func TestShapedSealsConcurrently(t *testing.T) {
	msgs := [][]byte{
		buildMessage("שלום 👍", testPart{contentType: "text/plain; charset=utf-8", body: []byte("שלום לכולם, John 42.\r\n")}),
		buildMessage("مرحبا 🎉", testPart{contentType: "text/plain; charset=utf-8", body: []byte("السلام عليكم، لا\r\n")}),
		// Shaped through the HarfBuzz port: one parsed font, a face
		// and a ToUnicode map per document (hbshape.go).
		buildMessage("हिन्दी", testPart{contentType: "text/plain; charset=utf-8", body: []byte("क्षत्रिय प्रति ที่นี่ น้ำ\r\n")}),
	}
	errs := make(chan error, 9)
	for i := range 9 {
		go func() {
			_, err := (&Sealer{}).Seal(context.Background(), bytes.NewReader(msgs[i%3]), []byte(testPassword), io.Discard)
			errs <- err
		}()
	}
	for range 9 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestMirrorCodes: a bracket in right-to-left text is drawn with a code
// of its own whose glyph is its mirror image and which copies as the
// bracket of the mail.
func TestMirrorCodes(t *testing.T) {
	orig, err := format4Glyphs(fontRegular)
	if err != nil {
		t.Fatal(err)
	}
	derived, err := format4Glyphs(withMirrorGlyphs(fontRegular))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ r, looksLike rune }{{'(', ')'}, {')', '('}, {'[', ']'}, {'{', '}'}, {'<', '>'}, {'«', '»'}} {
		code, ok := mirrorCode(tc.r)
		if !ok {
			t.Errorf("%q has no mirror code", tc.r)
			continue
		}
		if derived[code] != orig[tc.looksLike] {
			t.Errorf("code U+%04X for %q draws glyph %d, want %d (the glyph of %q)", code, tc.r, derived[code], orig[tc.looksLike], tc.looksLike)
		}
		if got := mirrors().toUni[code]; len(got) != 1 || got[0] != tc.r {
			t.Errorf("code U+%04X copies as %q, want %q", code, string(got), tc.r)
		}
	}
	for r, g := range orig {
		if derived[r] != g {
			t.Fatalf("the derived font lost U+%04X", r)
		}
	}
	if _, ok := mirrorCode('a'); ok {
		t.Error("a letter got a mirror code")
	}
}

// TestDamagedAstralFontNamesTheEmoji plays a font whose format-12 cmap is
// sound but whose glyph tables are not: the emoji become replacement marks
// and the warning names the emoji (not the Private Use Area code).
func TestDamagedAstralFontNamesTheEmoji(t *testing.T) {
	const symbola = "/usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf"
	data, err := os.ReadFile(symbola)
	if err != nil {
		if testpeer.InCI() {
			t.Fatalf("fonts-symbola missing: %v", err)
		}
		t.Skip("fonts-symbola not installed")
	}
	n := int(binary.BigEndian.Uint16(data[4:]))
	for i := range n {
		if rec := 12 + 16*i; string(data[rec:rec+4]) == "loca" {
			binary.BigEndian.PutUint32(data[rec+8:], uint32(len(data)-10))
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "damaged.ttf"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	chain, err := buildChain(fontRegular, []string{dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if chain.fontFor(0x1F44D) < 0 {
		t.Fatal("the damaged font's format-12 cmap should pass")
	}
	msg := buildMessage("Danke", testPart{contentType: "text/plain; charset=utf-8", body: []byte("Super 👍\r\n")})
	info, err := (&Sealer{chain: chain}).Seal(context.Background(), bytes.NewReader(msg), []byte(testPassword), io.Discard)
	if err != nil {
		t.Fatalf("a damaged font failed the PDF: %v", err)
	}
	if w := strings.Join(info.Warnings, " "); !strings.Contains(w, "U+1F44D") {
		t.Errorf("warnings %q do not name U+1F44D", info.Warnings)
	}
}
