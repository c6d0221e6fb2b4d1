package pdfmail

import (
	"encoding/binary"
	"errors"
	"slices"
	"sync"
)

// Characters outside the Basic Multilingual Plane (emoji such as U+1F44D,
// mathematical letters) are in the fonts' format-12 cmaps, which the PDF
// writer (fpdf) does not read. A font that has such characters gets a
// second entry in the chain: the same font with a new cmap (one format-4
// subtable) that maps codes of the Private Use Area (U+E000–U+F7FF) to
// their glyphs. The writer draws those codes, and the font's ToUnicode map
// sends each back to the character it stands for (fixToUnicode), so the
// text copies as the emoji of the mail.
//
// Which code stands for which character is fixed per process when chains
// are built, from the fonts alone (emoji first, then symbols and
// mathematical letters, then the rest, until the 6144 codes are taken):
// the mail cannot change it.

const (
	puaFirst = 0xE000
	puaLast  = 0xF7FF // U+F800–U+F8FF: mirrored glyphs (mirror.go)
)

// astralFamily starts the name of the fonts drawn through Private Use Area
// codes; fixToUnicode knows them by it ("utf8" + the family, lower case).
const astralFamily = "Astral"

var astralRegistry struct {
	mu     sync.Mutex
	toPUA  map[rune]rune
	fromPU map[rune][]rune
}

// registerAstral gives each of rs (in this order) a Private Use Area code
// unless it has one or they are all taken.
func registerAstral(rs []rune) {
	r := &astralRegistry
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.toPUA == nil {
		r.toPUA, r.fromPU = map[rune]rune{}, map[rune][]rune{}
	}
	for _, c := range rs {
		if _, ok := r.toPUA[c]; ok {
			continue
		}
		code := rune(puaFirst + len(r.toPUA))
		if code > puaLast {
			return
		}
		r.toPUA[c] = code
		r.fromPU[code] = []rune{c}
	}
}

// puaFor returns the code registered for the astral character c.
func puaFor(c rune) (rune, bool) {
	r := &astralRegistry
	r.mu.Lock()
	defer r.mu.Unlock()
	code, ok := r.toPUA[c]
	return code, ok
}

// astralOriginal is the character the code stands for (code itself if
// none).
func astralOriginal(code rune) rune {
	r := &astralRegistry
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.fromPU[code]; ok && len(c) == 1 {
		return c[0]
	}
	return code
}

// astralToUnicode is the ToUnicode overrides of the astral fonts.
func astralToUnicode() map[rune][]rune {
	r := &astralRegistry
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[rune][]rune, len(r.fromPU))
	for k, v := range r.fromPU {
		m[k] = v
	}
	return m
}

// astralTier orders the registration: emoji and pictographs first, then
// symbols, music and mathematical letters, then the rest (historic
// scripts, rare ideographs), so that the codes go to what mail uses.
func astralTier(c rune) int {
	switch {
	case c >= 0x1F000 && c <= 0x1FAFF:
		return 0
	case c >= 0x1D000 && c <= 0x1D7FF, c >= 0x1FB00 && c <= 0x1FBFF:
		return 1
	}
	return 2
}

// maxAstralGlyphs bounds what is read from one font's format-12 cmap.
const maxAstralGlyphs = 1 << 16

// astralGlyphs reads the characters outside the BMP a TrueType font maps
// to a glyph, from its (3,10) or (0,4) cmap subtable of format 12. The font
// is outside input: every offset is checked.
func astralGlyphs(data []byte) map[rune]uint16 {
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
		v := binary.BigEndian.Uint32(data[off:])
		if v > 1<<30 {
			return 0, false
		}
		return int(v), true
	}
	cmap, ok := tableOffset(data, "cmap")
	if !ok {
		return nil
	}
	n, ok := u16(cmap + 2)
	if !ok {
		return nil
	}
	for i := range n {
		platform, ok1 := u16(cmap + 4 + 8*i)
		encoding, ok2 := u16(cmap + 6 + 8*i)
		off, ok3 := u32(cmap + 8 + 8*i)
		if !ok1 || !ok2 || !ok3 || !(platform == 3 && encoding == 10 || platform == 0 && encoding == 4) {
			continue
		}
		sub := cmap + off
		if f, ok := u16(sub); !ok || f != 12 {
			continue
		}
		groups, ok := u32(sub + 12)
		if !ok || sub+16+12*groups > len(data) {
			return nil
		}
		out := map[rune]uint16{}
		for g := range groups {
			start, _ := u32(sub + 16 + 12*g)
			end, _ := u32(sub + 20 + 12*g)
			glyph, _ := u32(sub + 24 + 12*g)
			for c := max(start, 0x10000); c <= end && c <= unicodeMax; c++ {
				if gl := glyph + c - start; gl > 0 && gl < 0xFFFF {
					out[rune(c)] = uint16(gl)
				}
				if len(out) >= maxAstralGlyphs {
					return out
				}
			}
		}
		return out
	}
	return nil
}

const unicodeMax = 0x10FFFF

// tableOffset finds a table of a TrueType font.
func tableOffset(data []byte, tag string) (int, bool) {
	if len(data) < 12 {
		return 0, false
	}
	n := int(binary.BigEndian.Uint16(data[4:]))
	for i := range n {
		rec := 12 + 16*i
		if rec+16 > len(data) {
			return 0, false
		}
		if string(data[rec:rec+4]) == tag {
			off := int(binary.BigEndian.Uint32(data[rec+8:]))
			return off, off < len(data)
		}
	}
	return 0, false
}

var errFontTables = errors.New("font table directory unusable")

// withCmap returns the font data with its cmap replaced by one format-4
// subtable (3,1) mapping codes (all in the BMP) to glyphs.
func withCmap(data []byte, codes map[rune]uint16) ([]byte, error) {
	if len(data) < 12 {
		return nil, errFontTables
	}
	n := int(binary.BigEndian.Uint16(data[4:]))
	if 12+16*n > len(data) {
		return nil, errFontTables
	}
	type table struct {
		tag  string
		body []byte
	}
	tables := make([]table, 0, n)
	for i := range n {
		rec := 12 + 16*i
		tag := string(data[rec : rec+4])
		off := int(binary.BigEndian.Uint32(data[rec+8:]))
		length := int(binary.BigEndian.Uint32(data[rec+12:]))
		if off < 0 || length < 0 || off > len(data) || length > len(data)-off {
			return nil, errFontTables
		}
		body := data[off : off+length]
		if tag == "cmap" {
			body = format4Cmap(codes)
		}
		tables = append(tables, table{tag, body})
	}
	slices.SortFunc(tables, func(a, b table) int {
		switch {
		case a.tag < b.tag:
			return -1
		case a.tag > b.tag:
			return 1
		}
		return 0
	})
	size := 12 + 16*len(tables)
	for _, t := range tables {
		size += (len(t.body) + 3) &^ 3
	}
	out := make([]byte, 12+16*len(tables), size)
	copy(out, data[:4])
	binary.BigEndian.PutUint16(out[4:], uint16(len(tables)))
	sr, es := 1, 0
	for sr*2 <= len(tables) {
		sr *= 2
		es++
	}
	binary.BigEndian.PutUint16(out[6:], uint16(16*sr))
	binary.BigEndian.PutUint16(out[8:], uint16(es))
	binary.BigEndian.PutUint16(out[10:], uint16(16*len(tables)-16*sr))
	for i, t := range tables {
		rec := out[12+16*i:]
		copy(rec, t.tag)
		binary.BigEndian.PutUint32(rec[4:], tableChecksum(t.body))
		binary.BigEndian.PutUint32(rec[8:], uint32(len(out)))
		binary.BigEndian.PutUint32(rec[12:], uint32(len(t.body)))
		out = append(out, t.body...)
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
	}
	return out, nil
}

func tableChecksum(b []byte) uint32 {
	var sum uint32
	for i := 0; i < len(b); i += 4 {
		var w [4]byte
		copy(w[:], b[i:])
		sum += binary.BigEndian.Uint32(w[:])
	}
	return sum
}

// format4Cmap builds a cmap table with one (3,1) format-4 subtable: one
// segment per run of consecutive codes with consecutive glyphs.
func format4Cmap(codes map[rune]uint16) []byte {
	keys := make([]rune, 0, len(codes))
	for c := range codes {
		if c >= 0 && c < 0xFFFF {
			keys = append(keys, c)
		}
	}
	slices.Sort(keys)
	type seg struct {
		start, end rune
		delta      uint16
	}
	var segs []seg
	for _, c := range keys {
		d := uint16(int(codes[c]) - int(c))
		if l := len(segs) - 1; l >= 0 && segs[l].end == c-1 && segs[l].delta == d {
			segs[l].end = c
			continue
		}
		segs = append(segs, seg{c, c, d})
	}
	segs = append(segs, seg{0xFFFF, 0xFFFF, 1})
	nseg := len(segs)
	sub := make([]byte, 16+8*nseg)
	be := binary.BigEndian
	be.PutUint16(sub[0:], 4)
	be.PutUint16(sub[2:], uint16(len(sub)))
	be.PutUint16(sub[6:], uint16(2*nseg))
	sr, es := 1, 0
	for sr*2 <= nseg {
		sr *= 2
		es++
	}
	be.PutUint16(sub[8:], uint16(2*sr))
	be.PutUint16(sub[10:], uint16(es))
	be.PutUint16(sub[12:], uint16(2*nseg-2*sr))
	ends, starts := 14, 16+2*nseg
	deltas, ranges := starts+2*nseg, starts+4*nseg
	for i, s := range segs {
		be.PutUint16(sub[ends+2*i:], uint16(s.end))
		be.PutUint16(sub[starts+2*i:], uint16(s.start))
		be.PutUint16(sub[deltas+2*i:], s.delta)
		be.PutUint16(sub[ranges+2*i:], 0)
	}
	head := make([]byte, 12)
	be.PutUint16(head[2:], 1)
	be.PutUint16(head[4:], 3)
	be.PutUint16(head[6:], 1)
	be.PutUint32(head[8:], 12)
	return append(head, sub...)
}
