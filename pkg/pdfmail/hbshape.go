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
	"golang.org/x/text/unicode/norm"
)

// Scripts whose letters change shape, reorder and stack (Devanagari
// conjuncts and reph, the vowel sign ि drawn before its consonant, Thai
// marks above and below) are shaped with the OpenType tables of the chain
// font that has them: github.com/go-text/typesetting's port of HarfBuzz
// gives glyph ids, advances and offsets (GPOS mark attachment).
//
// The PDF writer (fpdf) reaches glyphs only through a cmap. Each font that
// shapes text gets a derived copy (the astral.go idea) whose cmap maps
// several codes to every glyph of the font (hbCode: glyph g, variant v);
// the glyphs are drawn by these codes, one by one at the positions the
// shaper gave. Text copies as the mail's characters in two ways:
//   - a marked-content span with /ActualText (PDF 32000-1 §14.9.4) around
//     each shaped word's glyphs gives its characters in logical order (a
//     conjunct copies as its letters, ि after its consonant): poppler;
//   - for readers that ignore ActualText (MuPDF), the document's own
//     ToUnicode map: the cluster's text is split over its glyphs in
//     drawing order (glyphText), and each (glyph, piece) gets a variant
//     code of its own in this document (hbDoc.code), so the pieces read in
//     drawing order are the text. The map holds this document's text
//     only: each document draws the font under a family name of its own
//     (newHBDoc), and fixToUnicode takes the map by that name.

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

// hbCode is the code that draws glyph g of a font of n glyphs as its
// variant v: every glyph has several codes (hbFont.variants), so that one
// glyph can copy as different text in one document (ि as the first glyph
// of हि and of कि). Codes run through the BMP, surrogates skipped.
func hbCode(g font.GID, v, n int) (rune, bool) {
	if g == 0 || int(g) >= n || v < 0 {
		return 0, false
	}
	c := rune(v*n + int(g))
	if c >= 0xD800 {
		c += 0x800
	}
	return c, c < 0xFFFE
}

// maxMappedText bounds the text a ToUnicode entry gives (a CMap's
// destination string holds at most 512 bytes); a longer cluster (hostile
// runs of marks) copies through its ActualText only.
const maxMappedText = 100

// maxVariants bounds the codes of a glyph.
const maxVariants = 32

// hbFont is a chain font prepared for shaping: the parsed tables (safe for
// concurrent use) and the derived font drawn by glyph codes.
type hbFont struct {
	seq      int // names the font in the PDF
	font     *font.Font
	upem     float64
	glyphs   int // in the font
	variants int // codes per glyph
	data     []byte
}

var hbFonts struct {
	mu     sync.Mutex
	byFont map[*chainFont]*hbFontOnce
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
		hbFonts.byFont = map[*chainFont]*hbFontOnce{}
	}
	o := hbFonts.byFont[f]
	if o == nil {
		o = &hbFontOnce{}
		hbFonts.byFont[f] = o
	}
	n := len(hbFonts.byFont)
	hbFonts.mu.Unlock()
	o.once.Do(func() { o.f, o.err = newHBFont(f, n) })
	return o.f, o.err
}

func newHBFont(f *chainFont, seq int) (*hbFont, error) {
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
	n := int(binary.BigEndian.Uint16(data[maxp+4:]))
	variants := min((0xFFFE-0x800)/max(n, 1)-1, maxVariants)
	if n < 2 || variants < 1 {
		return nil, fmt.Errorf("shaping font: %d glyphs", n)
	}
	codes := make(map[rune]uint16, n*variants)
	for v := range variants {
		for g := 1; g < n; g++ {
			if c, ok := hbCode(font.GID(g), v, n); ok {
				codes[c] = uint16(g)
			}
		}
	}
	derived, err := withCmap(data, codes)
	if err != nil {
		return nil, fmt.Errorf("shaping font: %w", err)
	}
	if err := probeFont(derived, "\u0001"); err != nil {
		return nil, err
	}
	return &hbFont{seq: seq, font: ld.Font, upem: float64(ld.Upem()), glyphs: n, variants: variants, data: derived}, nil
}

// hbDoc is what one document drew with one shaping font: the codes given
// to (glyph, text) pairs and the ToUnicode map they make.
type hbDoc struct {
	family string
	toUni  map[rune][]rune
	codes  map[hbKey]rune
	next   map[font.GID]int // the last variant given to a glyph
}

type hbKey struct {
	g    font.GID
	text string
}

// code is the code that draws glyph g copying as text (a variant of its
// own per text, or when the glyph has used up its variants, or for no
// text, variant 0, which copies as nothing).
func (d *hbDoc) code(hb *hbFont, g font.GID, text []rune) rune {
	none, _ := hbCode(g, 0, hb.glyphs)
	if _, ok := d.toUni[none]; !ok {
		d.toUni[none] = []rune{}
	}
	if len(text) == 0 || len(text) > maxMappedText {
		return none
	}
	k := hbKey{g, string(text)}
	if c, ok := d.codes[k]; ok {
		return c
	}
	v := d.next[g] + 1
	c, ok := hbCode(g, v, hb.glyphs)
	if v >= hb.variants || !ok {
		return none
	}
	d.next[g] = v
	d.codes[k] = c
	d.toUni[c] = text
	return c
}

// glyphPieces splits a cluster's text (logical order) over its m glyphs
// (drawing order) so that the pieces, read in drawing order, are the text:
// one character for each glyph after the first, the rest for the first;
// with more glyphs than characters, the canonical decomposition (a
// two-part vowel such as ৌ or ொ is drawn as its two parts around the
// consonant) is split, and the last glyphs get nothing when that is still
// short (ำ drawn as two, dotted circles).
func glyphPieces(text []rune, m int) [][]rune {
	if m > len(text) {
		text = []rune(norm.NFD.String(string(text)))
	}
	t := len(text)
	out := make([][]rune, m)
	for i := range m {
		switch {
		case m <= t && i == 0:
			out[i] = text[:t-m+1]
		case m <= t:
			out[i] = text[t-m+i : t-m+i+1]
		case i < t:
			out[i] = text[i : i+1]
		}
	}
	return out
}

// The ToUnicode maps of the documents being made, by BaseFont name
// ("utf8" + lower-case family), from drawing until fixToUnicode takes
// them. A document that is never assembled leaves its map behind; the
// oldest are dropped beyond maxHBDocs.
var hbDocs struct {
	mu    sync.Mutex
	maps  map[string]map[rune][]rune
	order []string
	seq   uint64
}

const maxHBDocs = 1024

// newHBDoc starts a document's use of a shaping font under a family name
// of its own.
func newHBDoc(hb *hbFont) *hbDoc {
	hbDocs.mu.Lock()
	defer hbDocs.mu.Unlock()
	if hbDocs.maps == nil {
		hbDocs.maps = map[string]map[rune][]rune{}
	}
	hbDocs.seq++
	d := &hbDoc{family: fmt.Sprintf("%s%dd%d", shapedFamily, hb.seq, hbDocs.seq),
		toUni: map[rune][]rune{}, codes: map[hbKey]rune{}, next: map[font.GID]int{}}
	name := "utf8" + strings.ToLower(d.family)
	hbDocs.maps[name] = d.toUni
	hbDocs.order = append(hbDocs.order, name)
	for len(hbDocs.order) > maxHBDocs {
		delete(hbDocs.maps, hbDocs.order[0])
		hbDocs.order = hbDocs.order[1:]
	}
	return d
}

// shapedCMap is the ToUnicode map (compressed) of the font named name (a
// BaseFont) if it is a shaping font: its document's codes to their text,
// nothing for the others. The document's map is forgotten.
func shapedCMap(name string) ([]byte, bool, error) {
	if !strings.HasPrefix(name, "utf8"+strings.ToLower(shapedFamily)) {
		return nil, false, nil
	}
	hbDocs.mu.Lock()
	m := hbDocs.maps[name]
	delete(hbDocs.maps, name)
	if i := slices.Index(hbDocs.order, name); i >= 0 {
		hbDocs.order = slices.Delete(hbDocs.order, i, i+1)
	}
	hbDocs.mu.Unlock()
	data, err := deflate(cmapText(m, false))
	return data, true, err
}

// shapedGlyph is one glyph of a cluster, its advance and offsets in em.
type shapedGlyph struct {
	gid         font.GID
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
	docs   map[*hbFont]*hbDoc
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

// shapeRun shapes rs[a:b] with font f of the chain, or returns nil (also
// when the shaper panics, on a font or text it was not made for: the run
// is drawn unshaped, the PDF still made).
func (t *textWriter) shapeRun(rs []rune, a, b, f int, script tslang.Script) (cs []*shapedCluster) {
	defer func() {
		if recover() != nil {
			cs = nil
		}
	}()
	hb, err := hbFontFor(t.chain.fonts[f])
	if err != nil {
		return nil
	}
	if t.hb == nil {
		t.hb = &hbState{faces: map[*hbFont]*font.Face{}, docs: map[*hbFont]*hbDoc{}}
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
	for _, g := range out.Glyphs {
		if _, ok := hbCode(g.GlyphID, 0, hb.glyphs); !ok {
			return nil // .notdef or a glyph beyond the font: drawn unshaped
		}
		ci := g.TextIndex()
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
		sg := shapedGlyph{gid: g.GlyphID, adv: float64(g.Advance) / 64 / hb.upem,
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
	doc := t.hb.docs[hb]
	if doc == nil {
		doc = newHBDoc(hb)
		t.pdf.AddUTF8FontFromBytes(doc.family, "", hb.data)
		t.hb.docs[hb] = doc
	}
	t.pdf.SetFont(doc.family, "", size)
	em := size / k
	// One span for the run (a word: runs end at spaces): poppler puts its
	// text between the start of the first glyph drawn and the end (origin
	// plus advance) of the last one, so the run's last cluster is drawn
	// with the glyph that ends furthest right last (a mark below, as in
	// कृ, would end inside the cluster and leave a gap read as a space).
	var text strings.Builder
	text.WriteString("/Span<</ActualText<FEFF")
	for _, c := range cs {
		for _, u := range utf16.Encode(c.text) {
			fmt.Fprintf(&text, "%04X", u)
		}
	}
	text.WriteString(">>>BDC")
	t.pdf.RawWriteStr(text.String())
	for ci, c := range cs {
		order := make([]int, len(c.glyphs))
		pos := make([]float64, len(c.glyphs)) // pen before each glyph, em
		last, end, pen := 0, 0.0, 0.0
		for i, g := range c.glyphs {
			order[i], pos[i] = i, pen
			if e := pen + g.dx + g.adv; ci == len(cs)-1 && e >= end {
				last, end = i, e
			}
			pen += g.adv
		}
		if ci == len(cs)-1 {
			order = append(slices.Delete(order, last, last+1), last)
		}
		// What each glyph copies as (readers that ignore the span).
		pieces := glyphPieces(c.text, len(c.glyphs))
		for n, i := range order {
			g := c.glyphs[i]
			code := doc.code(hb, g.gid, pieces[n])
			t.pdf.Text(x+(pos[i]+g.dx)*em, baseline-g.dy*em, string(code))
		}
		x += c.width * em
	}
	t.pdf.RawWriteStr("EMC")
}
