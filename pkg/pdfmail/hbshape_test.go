package pdfmail

import (
	"regexp"
	"strings"
	"testing"

	"codeberg.org/go-pdf/fpdf"
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
			if r, ok := byGlyph[g.code-hbCodeBase]; ok {
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
