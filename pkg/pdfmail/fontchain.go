package pdfmail

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"codeberg.org/go-pdf/fpdf"
)

// The pages are drawn with a chain of fonts: the built-in DejaVu Sans
// first, then the configured pdf.fonts, then the system's fonts. Each
// character is drawn with the first font that has a glyph for it; a
// character no font has becomes replacementRune and a warning.
//
// The PDF writer (fpdf) embeds TrueType outlines (glyf) only, reads the
// Unicode cmap of format 4 only and so draws characters of the Basic
// Multilingual Plane only: a font is admitted to the chain when it is such
// a font, and its coverage is read from that same cmap, so that the chain
// never picks a font the writer then cannot draw from. A font that also
// has characters outside the BMP (a format-12 cmap) gets a second entry
// that draws them through Private Use Area codes (astral.go).

// replacementRune stands in for a character no font of the chain has: a
// visible mark (DejaVu has it) that also copies as "unknown character".
const replacementRune = '\uFFFD'

// maxFontBytes bounds a font file read into memory (the largest Debian
// TrueType font, DroidSansFallbackFull, is about 4 MB).
const maxFontBytes = 64 << 20

// SystemFontDirs are searched, in this order, after the built-in font and
// pdf.fonts. Preferred files come first (see systemFontRank).
var SystemFontDirs = []string{"/usr/share/fonts/truetype", "/usr/local/share/fonts"}

// coverage is the set of BMP characters a font has a glyph for.
type coverage [65536 / 64]uint64

func (c *coverage) has(r rune) bool {
	return r >= 0 && r < 65536 && c[r/64]&(1<<(uint(r)%64)) != 0
}

func (c *coverage) set(r int) { c[r/64] |= 1 << (uint(r) % 64) }

// chainFont is one font of the chain. Its bytes are read when first used.
type chainFont struct {
	path  string // "" for the built-in font
	cover *coverage
	// astral fonts draw characters outside the BMP through Private Use
	// Area codes (astral.go): pua maps each such character to its code,
	// glyphs each code to the glyph of the font file at path.
	astral bool
	pua    map[rune]rune
	glyphs map[rune]uint16

	once sync.Once
	data []byte
	err  error
}

// family is the font's name in the PDF: its file name's letters and
// digits (readers show it in their font lists), made unique by the index.
func (f *chainFont) family(i int) string {
	if f.astral {
		return fmt.Sprintf("%s%d", astralFamily, i)
	}
	base := strings.TrimSuffix(filepath.Base(f.path), filepath.Ext(f.path))
	name := strings.Map(func(r rune) rune {
		if r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return r
		}
		return -1
	}, base)
	if f.path == "" || name == "" {
		name = "Fallback"
	}
	return fmt.Sprintf("%s%d", name, i)
}

// bytes returns the font file, read and tried out in a scratch document
// on first use: a font fpdf cannot embed is found here, not by failing the
// message's PDF.
func (f *chainFont) bytes() ([]byte, error) {
	f.once.Do(func() {
		// The built-in font (index 0) never comes here; bytes given
		// in memory (the deprecated Sealer.Font) are tried out too.
		data, err := f.data, error(nil)
		if data == nil {
			data, err = readFontFile(f.path)
		}
		sample := "a"
		if err == nil && f.astral {
			data, err = withCmap(data, f.glyphs)
			for c := range f.glyphs {
				sample = string(c)
				break
			}
		}
		if err == nil {
			err = probeFont(data, sample)
		}
		f.data, f.err = data, err
	})
	return f.data, f.err
}

// probeFont draws sample with data in a throw-away document.
func probeFont(data []byte, sample string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("font unusable: %v", p)
		}
	}()
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.AddUTF8FontFromBytes("probe", "", data)
	pdf.AddPage()
	pdf.SetFont("probe", "", 10)
	pdf.Cell(10, 5, sample)
	if err := pdf.Output(io.Discard); err != nil {
		return fmt.Errorf("font unusable: %w", err)
	}
	return nil
}

// fontChain is the ordered list of fonts; safe for concurrent use.
type fontChain struct {
	fonts []*chainFont
}

// fontFor returns the index of the first font that has r, or -1.
func (c *fontChain) fontFor(r rune) int {
	if r > 0xFFFF {
		for i, f := range c.fonts {
			if _, ok := f.pua[r]; ok {
				return i
			}
		}
		return -1
	}
	for i, f := range c.fonts {
		if f.cover.has(r) {
			return i
		}
	}
	return -1
}

func readFontFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > maxFontBytes {
		return nil, fmt.Errorf("%s: font file larger than %d MB", path, maxFontBytes>>20)
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, nil
}

// errNotTrueType is returned for fonts the PDF writer cannot embed.
var errNotTrueType = errors.New("not a TrueType (glyf) font with a Unicode cmap of format 4")

// fontCoverage reads which BMP characters a TrueType font maps to a glyph.
// The font is outside input (a configured file, a system file): every
// offset is checked against the data.
func fontCoverage(data []byte) (*coverage, error) {
	cov := new(coverage)
	err := readFormat4(data, func(c, _ int) { cov.set(c) })
	if err != nil {
		return nil, err
	}
	return cov, nil
}

// format4Glyphs reads the glyph of every BMP character of a TrueType
// font's format-4 cmap.
func format4Glyphs(data []byte) (map[rune]uint16, error) {
	m := map[rune]uint16{}
	err := readFormat4(data, func(c, glyph int) { m[rune(c)] = uint16(glyph) })
	return m, err
}

// readFormat4 calls fn for each character the format-4 cmap (the one
// fpdf reads) maps to a glyph.
func readFormat4(data []byte, fn func(c, glyph int)) error {
	u16 := func(off int) (int, bool) {
		if off < 0 || off+2 > len(data) {
			return 0, false
		}
		return int(binary.BigEndian.Uint16(data[off:])), true
	}
	u32 := func(off int) (int, bool) {
		if off < 0 || off+4 > len(data) {
			return 0, false
		}
		return int(binary.BigEndian.Uint32(data[off:])), true
	}
	if len(data) < 12 {
		return errNotTrueType
	}
	switch string(data[:4]) {
	case "\x00\x01\x00\x00", "true":
	default: // OTTO (CFF outlines), ttcf (collections), wOFF …
		return errNotTrueType
	}
	numTables, _ := u16(4)
	cmap, glyf := -1, false
	for i := range numTables {
		rec := 12 + 16*i
		if rec+16 > len(data) {
			return errNotTrueType
		}
		switch string(data[rec : rec+4]) {
		case "cmap":
			cmap, _ = u32(rec + 8)
		case "glyf":
			glyf = true
		}
	}
	if cmap < 0 || !glyf {
		return errNotTrueType
	}
	// The same subtable fpdf picks: the first (3,1) or (0,*) of format 4.
	n, ok := u16(cmap + 2)
	if !ok {
		return errNotTrueType
	}
	sub := -1
	for i := range n {
		platform, ok1 := u16(cmap + 4 + 8*i)
		encoding, ok2 := u16(cmap + 6 + 8*i)
		off, ok3 := u32(cmap + 8 + 8*i)
		if !ok1 || !ok2 || !ok3 {
			return errNotTrueType
		}
		if (platform == 3 && encoding == 1) || platform == 0 {
			if format, ok := u16(cmap + off); ok && format == 4 {
				sub = cmap + off
				break
			}
		}
	}
	if sub < 0 {
		return errNotTrueType
	}
	length, ok1 := u16(sub + 2)
	segX2, ok2 := u16(sub + 6)
	// The four segment arrays (and a reserved word) must lie inside the
	// subtable, and the subtable inside the file.
	if !ok1 || !ok2 || segX2%2 != 0 || 16+4*segX2 > length || sub+length > len(data) {
		return errNotTrueType
	}
	ends := sub + 14
	starts := ends + segX2 + 2
	deltas := starts + segX2
	ranges := deltas + segX2
	if ranges+segX2 > len(data) {
		return errNotTrueType
	}
	for s := 0; s < segX2/2; s++ {
		end, _ := u16(ends + 2*s)
		start, _ := u16(starts + 2*s)
		delta, _ := u16(deltas + 2*s)
		rangeOff, _ := u16(ranges + 2*s)
		for c := start; c <= end && c < 0xFFFF; c++ {
			var glyph int
			if rangeOff == 0 {
				glyph = (c + delta) & 0xFFFF
			} else {
				g, ok := u16(ranges + 2*s + rangeOff + 2*(c-start))
				if !ok || g == 0 {
					continue
				}
				glyph = (g + delta) & 0xFFFF
			}
			if glyph != 0 {
				fn(c, glyph)
			}
		}
	}
	return nil
}

// fontFiles expands a configured entry (a file or a directory, searched
// recursively) into font files, in a stable order.
func fontFiles(entry string) ([]string, error) {
	st, err := os.Stat(entry)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{entry}, nil
	}
	var files []string
	err = filepath.WalkDir(entry, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && isFontName(p) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(files, func(a, b string) int {
		if ra, rb := systemFontRank(a), systemFontRank(b); ra != rb {
			return ra - rb
		}
		return strings.Compare(a, b)
	})
	return files, nil
}

func isFontName(p string) bool {
	ext := strings.ToLower(filepath.Ext(p))
	return ext == ".ttf"
}

// systemFontRank orders the files of a directory: upright regular faces
// before bold, italic and other styles (a fallback glyph in a thin or
// italic face would stand out), the general Noto Sans and the CJK fallback
// before the rest.
func systemFontRank(p string) int {
	base := strings.ToLower(filepath.Base(p))
	rank := 0
	for _, style := range []string{"bold", "italic", "oblique", "light", "thin", "black", "medium", "semibold", "extrabold", "condensed", "mono", "serif", "display", "ui-", "ui."} {
		if strings.Contains(base, style) {
			rank += 10
		}
	}
	switch {
	case base == "notosans-regular.ttf":
		rank -= 3
	case strings.HasPrefix(base, "notosans"):
		rank -= 2
	case strings.HasPrefix(base, "droidsansfallback"):
		rank--
	}
	return rank
}

// buildChain makes the chain: the built-in font, then each entry (a file
// or a directory), then the system directories. A named file that is not
// a usable font, or a missing entry, is an error (a mistake in the config
// should show at startup); unusable files inside a directory are skipped.
func buildChain(builtin []byte, entries []string, systemDirs []string) (*fontChain, error) {
	cov, err := fontCoverage(builtin)
	if err != nil {
		return nil, fmt.Errorf("built-in font: %w", err)
	}
	chain := &fontChain{fonts: []*chainFont{{cover: cov, data: builtin}}}
	seen := map[string]bool{}
	astral := map[*chainFont]map[rune]uint16{} // character → glyph
	add := func(p string) error {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		if seen[p] {
			return nil
		}
		seen[p] = true
		data, err := readFontFile(p)
		if err != nil {
			return err
		}
		c, err := fontCoverage(data)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		// The bytes are read again when first drawn with: a system
		// directory can hold hundreds of fonts.
		chain.fonts = append(chain.fonts, &chainFont{path: p, cover: c})
		if g := astralGlyphs(data); len(g) > 0 {
			af := &chainFont{path: p, cover: new(coverage), astral: true}
			chain.fonts = append(chain.fonts, af)
			astral[af] = g
		}
		return nil
	}
	for _, e := range entries {
		st, err := os.Stat(e)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			if err := add(e); err != nil {
				return nil, err
			}
			continue
		}
		files, err := fontFiles(e)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			_ = add(f) // not every .ttf is one the writer can embed
		}
	}
	for _, d := range systemDirs {
		files, err := fontFiles(d)
		if err != nil {
			continue // a system without that directory
		}
		for _, f := range files {
			_ = add(f)
		}
	}
	chain.registerAstral(astral)
	return chain, nil
}

// registerAstral gives the astral characters of the chain's fonts their
// Private Use Area codes, by tier (astralTier) and in chain order, and fills in each
// astral font's maps.
func (c *fontChain) registerAstral(astral map[*chainFont]map[rune]uint16) {
	for tier := range 3 {
		for _, f := range c.fonts {
			g := astral[f]
			rs := make([]rune, 0, len(g))
			for r := range g {
				if astralTier(r) == tier {
					rs = append(rs, r)
				}
			}
			slices.Sort(rs)
			registerAstral(rs)
		}
	}
	for _, f := range c.fonts {
		g := astral[f]
		if g == nil {
			continue
		}
		f.pua, f.glyphs = map[rune]rune{}, map[rune]uint16{}
		for r, glyph := range g {
			if code, ok := puaFor(r); ok {
				f.pua[r] = code
				f.glyphs[code] = glyph
			}
		}
	}
}

// withSecond returns a copy of c with data (TrueType bytes) right after
// the built-in font: the deprecated Sealer.Font.
func (c *fontChain) withSecond(data []byte) (*fontChain, error) {
	cov, err := fontCoverage(data)
	if err != nil {
		return nil, err
	}
	fonts := make([]*chainFont, 0, len(c.fonts)+1)
	fonts = append(fonts, c.fonts[0], &chainFont{cover: cov, data: data})
	fonts = append(fonts, c.fonts[1:]...)
	return &fontChain{fonts: fonts}, nil
}

var (
	defaultChainOnce sync.Once
	defaultChain     *fontChain
)

// builtinChain is the chain of a Sealer without pdf.fonts: the built-in
// font and the system's fonts, scanned once per process.
func builtinChain() *fontChain {
	defaultChainOnce.Do(func() {
		c, err := buildChain(fontRegular, nil, SystemFontDirs)
		if err != nil {
			// The built-in font is ours and parses (TestBuiltinFontCovers).
			panic(err)
		}
		defaultChain = c
	})
	return defaultChain
}

// missingRunes collects the characters no font had, for the warning.
type missingRunes map[rune]int

// assign picks the font of each character of rs (the first font that
// has it, or for a character the built-in font lacks, the fallback font
// of the run it is in when that has it; a mark stays in the font of its
// letter when that has it). Characters no font has become replacementRune
// in rs (drawn with the built-in font) and are counted in miss.
func (c *fontChain) assign(rs []rune, miss missingRunes) []int {
	fonts := make([]int, len(rs))
	cur := -1
	for k, r := range rs {
		i := 0
		switch {
		case r == '\n' || r == ' ':
			// Whitespace joins the run it is in; astral fonts have
			// Private Use Area codes only.
			if cur > 0 && !c.fonts[cur].astral {
				i = cur
			}
		case cur > 0 && c.fonts[cur].cover.has(r) && (!c.fonts[0].cover.has(r) || isMark(r)):
			// A character the built-in font lacks stays in the fallback
			// font of its neighbours when that has it: 。 after Japanese
			// from the Japanese font, not from the first Noto font that
			// happens to have it (Mongolian).
			i = cur
		default:
			if i = c.fontFor(r); i < 0 {
				miss[r]++
				rs[k], i = replacementRune, 0
			} else if r > 0xFFFF {
				rs[k] = c.fonts[i].pua[r]
			}
		}
		fonts[k] = i
		cur = i
	}
	return fonts
}
