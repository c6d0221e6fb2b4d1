package pdfmail

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"unicode/utf16"

	"codeberg.org/go-pdf/fpdf"
	"github.com/go-text/typesetting/font"
	"golang.org/x/text/unicode/norm"
)

// newTestWriter is a textWriter on a fresh page with the built-in chain.
func newTestWriter(t testing.TB) *textWriter {
	t.Helper()
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.AddUTF8FontFromBytes(fontFamily, "", fontRegular)
	pdf.AddUTF8FontFromBytes(fontFamily, "B", fontBold)
	pdf.AddPage()
	pdf.SetFont(fontFamily, "", bodySize)
	return &textWriter{pdf: pdf, chain: builtinChain(), added: map[int]bool{}, bad: map[int]bool{}, miss: missingRunes{}, width: map[widthKey]float64{}}
}

// glyphNames describes shaped clusters: each glyph as the character
// whose glyph it is in the font's own cmap ("*" for a glyph no character
// has: conjuncts, half forms, reph), "+" after a glyph moved off the pen
// (mark attachment), clusters separated by "|".
func glyphNames(t testing.TB, tw *textWriter, text string) string {
	t.Helper()
	rs := []rune(text)
	fonts := tw.fontsFor(rs)
	refs := tw.shapeRuns(rs, fonts, make([]uint8, len(rs)))
	if refs == nil {
		return "unshaped"
	}
	out := ""
	for i, ref := range refs {
		if ref.c == nil {
			out += "|" + string(rs[i]) + "?"
			continue
		}
		if !ref.first {
			continue
		}
		data, err := tw.chain.fonts[ref.c.font].bytes()
		if err != nil {
			t.Fatal(err)
		}
		cmap, err := format4Glyphs(data)
		if err != nil {
			t.Fatal(err)
		}
		byGlyph := map[rune]rune{}
		for r, g := range cmap {
			if c, ok := byGlyph[rune(g)]; !ok || r < c {
				byGlyph[rune(g)] = r
			}
		}
		if out != "" {
			out += "|"
		}
		for _, g := range ref.c.glyphs {
			if r, ok := byGlyph[rune(g.gid)]; ok {
				out += string(r)
			} else {
				out += "*"
			}
			if g.dx != 0 || g.dy != 0 {
				out += "+"
			}
		}
	}
	return out
}

// TestShapingFormsClusters plays the mail that needs the fonts' OpenType
// tables: each case states a rule of its script (a pattern over
// glyphNames), which drawing the characters one by one through the cmap
// breaks: the vowel sign ि drawn before its consonant, a conjunct as one
// glyph, reph after the consonant it sits on, Thai tone marks moved onto
// the vowel below them, Tamil and Bengali two-part vowels around the
// consonant.
func TestShapingFormsClusters(t *testing.T) {
	tests := []struct {
		name, text string
		want       string // regexp over glyphNames
	}{
		{"i sign before its consonant", "हिन्दी", `^[*ि]ह\|`},
		{"conjunct k.ssa one glyph", "क्ष", `^\*$`},
		{"pra one glyph", "प्रति", `^\*\|`},
		{"reph after the consonant", "कर्म", `^क\|म\*\+?$`},
		{"ZWNJ keeps the virama", "क्\u200cष", `^क्\+?\|`},
		{"thai tone mark on sara ii", "ที่", `^ท[ี*]\+?[่*]\+$`},
		{"thai nikhahit and tone mark stacked", "น้ำ", `^น.*\+`},
		{"tamil two-part vowel", "கொ", `^ெகா$`},
		{"bengali two-part vowel", "কৌ", `^[*ে]ক`},
		{"letter and vowel sign from one font", "விற்பனை", `^[^◌?]*$`},
		{"lone marks get a dotted circle", "\u093f\u093f", `◌`},
		{"latin is not shaped", "abc", `^unshaped$`},
	}
	tw := newTestWriter(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			requireSystemFontFor(t, []rune(tc.text)...)
			got := glyphNames(t, tw, tc.text)
			if !regexp.MustCompile(tc.want).MatchString(got) {
				t.Errorf("%q shaped as %q, want %s", tc.text, got, tc.want)
			}
		})
	}
}

// TestShapedRunsAreBounded: a hostile mail of one consonant and 10,000
// marks (and floods of joiners) is cut into runs of at most maxShapedRun
// characters, every character in exactly one cluster, clusters in order.
func TestShapedRunsAreBounded(t *testing.T) {
	tests := []struct{ name, text string }{
		{"10k marks", "क" + strings.Repeat("\u093f", 10000)},
		{"10k virama", "क" + strings.Repeat("\u094d", 10000)},
		{"ZWJ flood", strings.Repeat("क\u094d\u200d", 3000)},
		{"ZWNJ flood", "ก" + strings.Repeat("\u200c", 5000) + "ข"},
		{"thai marks", "ก" + strings.Repeat("\u0e49", 5000)},
	}
	tw := newTestWriter(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			requireSystemFontFor(t, []rune(tc.text)[0])
			rs := []rune(tc.text)
			fonts := tw.fontsFor(rs)
			refs := tw.shapeRuns(rs, fonts, make([]uint8, len(rs)))
			if refs == nil {
				t.Fatal("nothing shaped")
			}
			end := 0
			for i, ref := range refs {
				if ref.c == nil {
					continue
				}
				if ref.first {
					if ref.c.start != i || ref.c.start < end || ref.c.end <= ref.c.start {
						t.Fatalf("cluster %d–%d out of order at %d (previous end %d)", ref.c.start, ref.c.end, i, end)
					}
					if ref.c.end-ref.c.start > maxShapedRun {
						t.Fatalf("cluster of %d characters, more than one run", ref.c.end-ref.c.start)
					}
					end = ref.c.end
				} else if i < ref.c.start || i >= ref.c.end {
					t.Fatalf("character %d in cluster %d–%d", i, ref.c.start, ref.c.end)
				}
			}
		})
	}
}

// TestGlyphTextReadsAsTheCluster: the pieces a cluster's text is split
// into, read in drawing order, are its text (or its canonical
// decomposition when there are more glyphs than characters).
func TestGlyphTextReadsAsTheCluster(t *testing.T) {
	tests := []struct {
		text   string
		glyphs int
		want   string
	}{
		{"क्ष", 1, "क्ष"},
		{"हि", 2, "हि"},
		{"र्म", 2, "र्म"},
		{"कौ", 3, norm.NFD.String("कौ")},
		{"কৌ", 3, "ক\u09c7\u09d7"},
		{"ำ", 2, "ำ"}, // no canonical decomposition: the second glyph copies as nothing
		{"", 2, ""},
	}
	for _, tc := range tests {
		got := ""
		for _, p := range glyphPieces([]rune(tc.text), tc.glyphs) {
			got += string(p)
		}
		if got != tc.want {
			t.Errorf("%q over %d glyphs reads %q, want %q", tc.text, tc.glyphs, got, tc.want)
		}
	}
}

// TestShapedToUnicodeIsPerDocument plays two mails drawn at the same time:
// a glyph copies as different text in one document (variants), and a
// document's ToUnicode map holds its own text only, never another
// recipient's.
func TestShapedToUnicodeIsPerDocument(t *testing.T) {
	requireSystemFontFor(t, 'क')
	f := builtinChain().fontFor('क')
	hb, err := hbFontFor(builtinChain().fonts[f])
	if err != nil {
		t.Fatal(err)
	}
	a, b := newHBDoc(hb), newHBDoc(hb)
	if a.family == b.family {
		t.Fatalf("two documents share the font name %s", a.family)
	}
	g := font.GID(5)
	c1 := a.code(hb, g, []rune("कि"))
	c2 := a.code(hb, g, []rune("हि"))
	if c1 == c2 || a.code(hb, g, []rune("कि")) != c1 {
		t.Fatalf("codes %U %U: one glyph, two texts need two codes, the same text the same code", c1, c2)
	}
	b.code(hb, g, []rune("गुप्त"))
	for i := 0; i < hb.variants+10; i++ {
		a.code(hb, g, []rune(fmt.Sprint(i)))
	}
	none, _ := hbCode(g, 0, hb.glyphs)
	if got := a.code(hb, g, []rune("one too many")); got != none {
		t.Errorf("variants used up: got %U, want the code that copies as nothing %U", got, none)
	}
	read := func(d *hbDoc) string {
		data, ok, err := shapedCMap("utf8" + strings.ToLower(d.family))
		if !ok || err != nil {
			t.Fatalf("no map for %s: %v", d.family, err)
		}
		r, err := zlib.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		cm, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return string(cm)
	}
	hex := func(s string) string {
		out := ""
		for _, u := range utf16.Encode([]rune(s)) {
			out += fmt.Sprintf("%04X", u)
		}
		return out
	}
	ma, mb := read(a), read(b)
	for _, want := range []string{"कि", "हि"} {
		if !strings.Contains(ma, "<"+hex(want)+">") {
			t.Errorf("document A's map lacks %q:\n%s", want, ma)
		}
	}
	if strings.Contains(ma, hex("गुप्त")) || strings.Contains(mb, hex("कि")) {
		t.Error("a document's ToUnicode map holds another document's text")
	}
	if strings.Contains(ma, "beginbfrange") {
		t.Error("the map sends codes to themselves (glyph codes are no characters)")
	}
	if _, ok, _ := shapedCMap("utf8" + strings.ToLower(a.family)); !ok {
		t.Error("a shaping font's name is not recognised after its map was taken")
	}
}
