package pdfmail

import (
	"sync"
)

// In right-to-left text, brackets and the other mirrored signs face the
// other way (UAX #9 rule L4): "(" at the start of a Hebrew aside is drawn
// as the glyph of ")". Drawing the code point ")" would make the text copy
// as ")" where the mail has "(". The built-in font is therefore embedded
// with extra codes U+F800–U+F8FF, each mapping to the glyph of a mirror
// image, and its ToUnicode map sends each back to the character of the
// mail. The chain's coverage is read from the original font: a mail's own
// U+F800… never reaches these glyphs.

const mirrorFirst = 0xF800

type mirrorData struct {
	code  map[rune]rune   // character → code drawing its mirror image
	toUni map[rune][]rune // code → character
	fonts map[*byte][]byte
	mu    sync.Mutex
}

var (
	mirrorOnce   sync.Once
	mirrorTables *mirrorData
)

// mirrors lists the characters with a mirror image the built-in font has.
func mirrors() *mirrorData {
	mirrorOnce.Do(func() {
		d := &mirrorData{code: map[rune]rune{}, toUni: map[rune][]rune{}, fonts: map[*byte][]byte{}}
		cov, err := fontCoverage(fontRegular)
		if err == nil {
			next := rune(mirrorFirst)
			for r := rune(0x20); r < 0x3000 && next <= 0xF8FF; r++ {
				m := mirrored(r)
				if m == r || !cov.has(r) || !cov.has(m) {
					continue
				}
				d.code[r] = next
				d.toUni[next] = []rune{r}
				next++
			}
		}
		mirrorTables = d
	})
	return mirrorTables
}

// withMirrorGlyphs returns the built-in font data (fontRegular or
// fontBold) with the mirror codes added to its cmap, made once per
// process; any other data is returned as it is.
func withMirrorGlyphs(data []byte) []byte {
	if len(data) == 0 || (&data[0] != &fontRegular[0] && &data[0] != &fontBold[0]) {
		return data
	}
	d := mirrors()
	d.mu.Lock()
	defer d.mu.Unlock()
	if out, ok := d.fonts[&data[0]]; ok {
		return out
	}
	out := data
	if glyphs, err := format4Glyphs(data); err == nil {
		for r, code := range d.code {
			if g, ok := glyphs[mirrored(r)]; ok {
				glyphs[code] = g
			}
		}
		if b, err := withCmap(data, glyphs); err == nil {
			out = b
		}
	}
	d.fonts[&data[0]] = out
	return out
}

// mirrorCode is the code that draws r's mirror image in the built-in
// font (withMirrorGlyphs), if it has one.
func mirrorCode(r rune) (rune, bool) {
	c, ok := mirrors().code[r]
	return c, ok
}
