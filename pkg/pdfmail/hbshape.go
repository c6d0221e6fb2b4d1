package pdfmail

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode/utf16"

	"github.com/go-text/typesetting/di"
	"github.com/go-text/typesetting/font"
	tslang "github.com/go-text/typesetting/language"
	"github.com/go-text/typesetting/shaping"
	"golang.org/x/image/math/fixed"
)

// Scripts whose letters change shape, reorder and stack (Devanagari
// conjuncts and reph, the vowel sign ि drawn before its consonant, Thai
// marks above and below) are shaped with the OpenType tables of the chain
// font that has them: github.com/go-text/typesetting's port of HarfBuzz
// gives glyph ids, advances and offsets (GPOS mark attachment).
//
// The PDF writer (fpdf) reaches glyphs only through a cmap. Each font that
// shapes text gets a derived copy (the astral.go idea) whose cmap maps the
// code hbCode(g) to glyph g for every glyph of the font; the glyphs are
// drawn by these codes, one by one at the positions the shaper gave. What a
// cluster copies as is given by a marked-content span with /ActualText
// (PDF 32000-1 §14.9.4) around its glyphs: the cluster's characters in
// logical order (a conjunct copies as its letters, ि after its consonant).
// Readers that ignore ActualText fall back to the font's ToUnicode map,
// which sends each glyph that is some character's glyph in the font's own
// cmap to that character and the others (half forms, ligatures) to
// nothing.

// shapedScripts are the scripts drawn through the shaper. Arabic and
// Hebrew keep their own path (shape.go, bidi.go).
var shapedScripts = map[tslang.Script]bool{
	tslang.Devanagari: true, tslang.Bengali: true, tslang.Gurmukhi: true,
	tslang.Gujarati: true, tslang.Oriya: true, tslang.Tamil: true,
	tslang.Telugu: true, tslang.Kannada: true, tslang.Malayalam: true,
	tslang.Sinhala: true, tslang.Thai: true, tslang.Lao: true,
	tslang.Tibetan: true, tslang.Khmer: true, tslang.Myanmar: true,
}

// needsShaping reports whether r is a character of a script that is drawn
// through the shaper.
func needsShaping(r rune) bool {
	if r < 0x0900 || r > 0x1CFF && r < 0xA830 || r > 0xABFF && r < 0x11000 {
		return false // fast path: none of the scripts has characters there
	}
	return shapedScripts[tslang.LookupScript(r)]
}

// needsComplexShaping reports whether text has a character drawn through
// the shaper.
func needsComplexShaping(rs []rune) bool {
	for _, r := range rs {
		if needsShaping(r) {
			return true
		}
	}
	return false
}

// isJoiner: zero width joiner and non-joiner steer Indic shaping (half
// forms, no conjunct) and are kept for the shaper.
func isJoiner(r rune) bool { return r == 0x200C || r == 0x200D }

// hbCodeBase is the first code of the derived cmap; hbMaxGlyphs glyphs fit
// below the mirror codes (mirror.go) of the Private Use Area.
const (
	hbCodeBase  = 0xE000
	hbMaxGlyphs = 0xF800 - hbCodeBase
)

// hbCode is the code that draws glyph g in the derived font.
func hbCode(g font.GID) (rune, bool) {
	if g == 0 || g >= hbMaxGlyphs {
		return 0, false
	}
	return hbCodeBase + rune(g), true
}

// hbFont is a chain font prepared for shaping: the parsed tables (safe for
// concurrent use) and the derived font drawn by glyph codes.
type hbFont struct {
	family string // the derived font's family in the PDF
	font   *font.Font
	upem   float64
	data   []byte
	cmap   []byte // its ToUnicode map, compressed
}

var hbFonts struct {
	mu     sync.Mutex
	byFont map[*chainFont]*hbFontOnce
	byName map[string]*hbFont // "utf8" + lower-case family → font
}

type hbFontOnce struct {
	once sync.Once
	f    *hbFont
	err  error
}

// shapedFamily starts the names of the derived fonts; fixToUnicode knows
// them by it.
const shapedFamily = "Shaped"

// hbFontFor prepares font f of the chain once per process.
func hbFontFor(f *chainFont) (*hbFont, error) {
	hbFonts.mu.Lock()
	if hbFonts.byFont == nil {
		hbFonts.byFont, hbFonts.byName = map[*chainFont]*hbFontOnce{}, map[string]*hbFont{}
	}
	o := hbFonts.byFont[f]
	if o == nil {
		o = &hbFontOnce{}
		hbFonts.byFont[f] = o
	}
	n := len(hbFonts.byFont)
	hbFonts.mu.Unlock()
	o.once.Do(func() {
		o.f, o.err = newHBFont(f, fmt.Sprintf("%s%d", shapedFamily, n))
		if o.err == nil {
			hbFonts.mu.Lock()
			hbFonts.byName["utf8"+strings.ToLower(o.f.family)] = o.f
			hbFonts.mu.Unlock()
		}
	})
	return o.f, o.err
}

func newHBFont(f *chainFont, family string) (*hbFont, error) {
	data, err := f.bytes()
	if err != nil {
		return nil, err
	}
	ld, err := font.ParseTTF(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("shaping font: %w", err)
	}
	maxp, ok := tableOffset(data, "maxp")
	if !ok || maxp+6 > len(data) {
		return nil, fmt.Errorf("shaping font: %w", errFontTables)
	}
	n := min(int(binary.BigEndian.Uint16(data[maxp+4:])), hbMaxGlyphs)
	codes := make(map[rune]uint16, n)
	for g := 1; g < n; g++ {
		c, _ := hbCode(font.GID(g))
		codes[c] = uint16(g)
	}
	derived, err := withCmap(data, codes)
	if err != nil {
		return nil, fmt.Errorf("shaping font: %w", err)
	}
	if err := probeFont(derived, string(rune(hbCodeBase+1))); err != nil {
		return nil, err
	}
	// ToUnicode: each glyph to the character the font's cmap gives it
	// (the lowest, when several share one glyph).
	chars, err := format4Glyphs(data)
	if err != nil {
		return nil, fmt.Errorf("shaping font: %w", err)
	}
	toUni := map[rune][]rune{}
	for r, g := range chars {
		c, ok := hbCode(font.GID(g))
		if !ok {
			continue
		}
		if old, ok := toUni[c]; !ok || r < old[0] {
			toUni[c] = []rune{r}
		}
	}
	cm, err := deflate(cmapText(toUni, false))
	if err != nil {
		return nil, err
	}
	return &hbFont{family: family, font: ld.Font, upem: float64(ld.Upem()), data: derived, cmap: cm}, nil
}

// shapedCMap is the ToUnicode map of the derived font named name (a
// BaseFont), if it is one.
func shapedCMap(name string) ([]byte, bool) {
	hbFonts.mu.Lock()
	defer hbFonts.mu.Unlock()
	f, ok := hbFonts.byName[name]
	if !ok {
		return nil, false
	}
	return f.cmap, true
}

// shapedGlyph is one glyph of a cluster, its advance and offsets in em.
type shapedGlyph struct {
	code        rune
	adv, dx, dy float64
}

// shapedCluster is the glyphs that draw rs[start:end] of a paragraph.
type shapedCluster struct {
	font       int // index in the chain
	hb         *hbFont
	start, end int
	text       []rune // rs[start:end]
	glyphs     []shapedGlyph
	width      float64 // em
}

// shapedRef marks a character of a paragraph as part of a cluster; first
// is set on the cluster's first character, which carries its width.
type shapedRef struct {
	c     *shapedCluster
	first bool
}

// hbState is the per-document shaping state of a textWriter.
type hbState struct {
	shaper shaping.HarfbuzzShaper
	faces  map[*hbFont]*font.Face
	added  map[*hbFont]bool
}

// maxShapedRun bounds the characters given to the shaper at once; longer
// runs (no space in them) are cut there.
const maxShapedRun = 256

// shapeRuns shapes the runs of rs (a paragraph, logical order, fonts from
// the chain, changed where a run takes one font) that need it. It returns
// the cluster each character belongs to (nil when no run was shaped; a
// nil cluster for characters drawn as before). A run whose font cannot
// shape or whose glyphs cannot be drawn stays unshaped.
func (t *textWriter) shapeRuns(rs []rune, fonts []int, levels []uint8) []shapedRef {
	var refs []shapedRef
	n := len(rs)
	done := 0 // runs never overlap
	for i := 0; i < n; i++ {
		if !needsShaping(rs[i]) {
			continue
		}
		// The run: a word around i (up to a space, on i's level) of
		// characters of shaped scripts, their marks and joiners and
		// what the chain gave the same font (punctuation such as ।).
		in := func(j int) bool {
			r := rs[j]
			if r == ' ' || r == '\n' || levels[j] != levels[i] {
				return false
			}
			return needsShaping(r) || isMark(r) || isJoiner(r) || fonts[j] == fonts[i]
		}
		a := i
		for a > done && in(a-1) && i-a < maxShapedRun {
			a--
		}
		b := i + 1
		for b < n && in(b) && b-a < maxShapedRun {
			b++
		}
		done = b
		f := t.runFont(rs[a:b], fonts[a:b])
		if f <= 0 {
			i = b - 1
			continue
		}
		cs := t.shapeRun(rs, a, b, f, tslang.LookupScript(rs[i]))
		i = b - 1
		if cs == nil {
			continue
		}
		if refs == nil {
			refs = make([]shapedRef, n)
		}
		for _, c := range cs {
			for k := c.start; k < c.end; k++ {
				refs[k] = shapedRef{c: c, first: k == c.start}
				fonts[k] = f
			}
		}
	}
	return refs
}

// runFont is the font a run is shaped with: the font the chain gave all
// of it, else the first font of the chain that has every character of it
// (a letter and its vowel sign must come from one font: the chain can
// give a letter to a font that lacks the sign, as Noto Sans Grantha has
// some Tamil letters), or -1.
func (t *textWriter) runFont(rs []rune, fonts []int) int {
	drawable := func(f int) bool { return f > 0 && !t.chain.fonts[f].astral && t.usable(f) }
	if !slices.ContainsFunc(fonts, func(f int) bool { return f != fonts[0] }) && drawable(fonts[0]) {
		return fonts[0]
	}
	for f := 1; f < len(t.chain.fonts); f++ {
		cov := t.chain.fonts[f].cover
		if !slices.ContainsFunc(rs, func(r rune) bool { return !cov.has(r) }) && drawable(f) {
			return f
		}
	}
	return -1
}

// shapeRun shapes rs[a:b] with font f of the chain, or returns nil.
func (t *textWriter) shapeRun(rs []rune, a, b, f int, script tslang.Script) []*shapedCluster {
	hb, err := hbFontFor(t.chain.fonts[f])
	if err != nil {
		return nil
	}
	if t.hb == nil {
		t.hb = &hbState{faces: map[*hbFont]*font.Face{}, added: map[*hbFont]bool{}}
	}
	face := t.hb.faces[hb]
	if face == nil {
		face = font.NewFace(hb.font)
		t.hb.faces[hb] = face
	}
	out := t.hb.shaper.ShapeNoExtents(shaping.Input{
		Text: rs, RunStart: a, RunEnd: b,
		Direction: di.DirectionLTR,
		Face:      face,
		Size:      fixed.I(int(hb.upem)),
		Script:    script,
	})
	if len(out.Glyphs) == 0 {
		return nil
	}
	var cs []*shapedCluster
	for _, g := range out.Glyphs {
		code, ok := hbCode(g.GlyphID)
		if !ok {
			return nil // .notdef or a glyph beyond the codes: drawn unshaped
		}
		ci := g.ClusterIndex
		if ci < a || ci >= b {
			return nil
		}
		last := len(cs) - 1
		if last < 0 || ci != cs[last].start {
			if last >= 0 && ci < cs[last].start {
				return nil // not in logical order: drawn unshaped
			}
			cs = append(cs, &shapedCluster{font: f, hb: hb, start: ci})
			last++
		}
		c := cs[last]
		sg := shapedGlyph{code: code, adv: float64(g.Advance) / 64 / hb.upem,
			dx: float64(g.XOffset) / 64 / hb.upem, dy: float64(g.YOffset) / 64 / hb.upem}
		c.glyphs = append(c.glyphs, sg)
		c.width += sg.adv
	}
	if cs[0].start != a {
		return nil
	}
	for k := range cs {
		cs[k].end = b
		if k+1 < len(cs) {
			cs[k].end = cs[k+1].start
		}
		cs[k].text = slices.Clone(rs[cs[k].start:cs[k].end])
	}
	return cs
}

// drawShaped draws clusters (of one font, left to right) as one cell of
// width w (mm) and height h at the cursor, moving it right.
func (t *textWriter) drawShaped(cs []*shapedCluster, w, h, size float64) {
	hb := cs[0].hb
	k := t.pdf.GetConversionRatio()
	// The cell first: it breaks the page when the line does not fit.
	t.pdf.CellFormat(w, h, "", "", 0, "L", false, 0, "")
	// Text in a cell starts after the cell margin, as fpdf draws the
	// other runs of the line.
	x := t.pdf.GetX() - w + t.pdf.GetCellMargin()
	baseline := t.pdf.GetY() + .5*h + .3*size/k
	if !t.hb.added[hb] {
		t.pdf.AddUTF8FontFromBytes(hb.family, "", hb.data)
		t.hb.added[hb] = true
	}
	t.pdf.SetFont(hb.family, "", size)
	em := size / k
	var text strings.Builder
	for _, c := range cs {
		text.Reset()
		text.WriteString("/Span<</ActualText<FEFF")
		for _, u := range utf16.Encode(c.text) {
			fmt.Fprintf(&text, "%04X", u)
		}
		text.WriteString(">>>BDC")
		t.pdf.RawWriteStr(text.String())
		for _, g := range c.glyphs {
			t.pdf.Text(x+g.dx*em, baseline-g.dy*em, string(g.code))
			x += g.adv * em
		}
		t.pdf.RawWriteStr("EMC")
	}
}
