package pdfmail

import (
	"sync"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// Arabic letters change shape with their neighbours: a letter joined on
// both sides takes its medial form, at the start of a word its initial
// form, and so on; lam followed by alef becomes one ligature. The PDF
// writer (fpdf) maps characters to glyphs through the font's cmap only, so
// the joined shapes are drawn as the Arabic presentation forms (U+FB50–
// U+FDFF, U+FE70–U+FEFF), which DejaVu Sans and most Arabic fonts map to
// the contextual glyphs. So that the text copies as the characters of the
// mail and not as presentation forms, every embedded font's ToUnicode map
// sends each presentation form back to what it stands for (toUnicodeCMap).
//
// The tables come from the Unicode data in golang.org/x/text (the
// compatibility decomposition of each presentation form); the form a
// presentation character is (isolated, final, initial, medial) follows
// from its place in the block, where the forms of a letter are encoded in
// that order. A letter with initial and medial forms joins on both sides
// (joining type D), one with only a final form joins to the letter before
// it only (type R).

// joinForms are a letter's contextual forms, 0 where it has none.
type joinForms struct{ isol, fina, init, medi rune }

type arabicData struct {
	forms   map[rune]*joinForms
	lamAlef map[rune][2]rune // alef variant → isolated, final lam-alef ligature
	// original is what each presentation form stands for (one letter,
	// or alef and lam: see below).
	original map[rune][]rune
}

var (
	arabicOnce   sync.Once
	arabicTables *arabicData
)

func arabic() *arabicData {
	arabicOnce.Do(func() {
		d := &arabicData{forms: map[rune]*joinForms{}, lamAlef: map[rune][2]rune{}, original: map[rune][]rune{}}
		var group []rune // consecutive forms of one letter
		base := rune(-1)
		flush := func() {
			if len(group) == 0 {
				return
			}
			f := d.forms[base]
			if f == nil {
				f = &joinForms{}
				d.forms[base] = f
			}
			// U+FBE8, U+FBE9: initial and medial alef maksura, encoded
			// apart from its isolated and final forms (U+FEEF, U+FEF0).
			if group[0] == 0xFBE8 {
				f.init, f.medi = group[0], group[1]
			} else {
				slot := []*rune{&f.isol, &f.fina, &f.init, &f.medi}
				for i, r := range group {
					if i < len(slot) && *slot[i] == 0 {
						*slot[i] = r
					}
				}
			}
			group = group[:0]
		}
		for r := rune(0xFB50); r <= 0xFEFC; r++ {
			dec := []rune(norm.NFKC.String(string(r)))
			switch {
			case len(dec) == 1 && dec[0] >= 0x0620 && dec[0] <= 0x06FF:
				if dec[0] != base || len(group) == 0 || group[len(group)-1] != r-1 {
					flush()
					base = dec[0]
				}
				group = append(group, r)
				d.original[r] = dec
			case r >= 0xFEF5 && len(dec) == 2 && dec[0] == 0x0644:
				flush()
				lig := d.lamAlef[dec[1]]
				if lig[0] == 0 {
					lig[0] = r
				} else {
					lig[1] = r
				}
				d.lamAlef[dec[1]] = lig
				// The glyph shows alef left of lam: in a
				// right-to-left run each glyph's characters are
				// given in the order the glyphs are drawn (left to
				// right), and readers reverse the whole run.
				d.original[r] = []rune{dec[1], dec[0]}
			default:
				flush()
			}
		}
		flush()
		arabicTables = d
	})
	return arabicTables
}

// joining types (Unicode ArabicShaping.txt, as far as drawing needs them).
const (
	joinNone        = iota // U: joins nothing
	joinRight              // R: joins the letter before it
	joinDual               // D: joins both sides
	joinCausing            // C: tatweel, zero width joiner
	joinTransparent        // T: marks, skipped when looking for neighbours
)

func (d *arabicData) joiningType(r rune) int {
	switch {
	case r == 0x0640 || r == 0x200D:
		return joinCausing
	case r == 0x200C:
		return joinNone
	case unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf):
		return joinTransparent
	}
	f := d.forms[r]
	switch {
	case f == nil:
		return joinNone
	case f.init != 0 || f.medi != 0:
		return joinDual
	case f.fina != 0:
		return joinRight
	}
	return joinNone
}

func joinsForward(t int) bool  { return t == joinDual || t == joinCausing }
func joinsBackward(t int) bool { return t == joinDual || t == joinRight || t == joinCausing }

// hasArabic reports whether rs contains a letter shapeArabic changes.
func hasArabic(rs []rune) bool {
	for _, r := range rs {
		if r >= 0x0620 && r <= 0x06FF {
			return true
		}
	}
	return false
}

// shapeArabic returns rs (one paragraph, in logical order) with Arabic
// letters replaced by the presentation form for their position and
// lam + alef by their ligature. can reports whether a presentation form
// can be drawn (a font of the chain has it); a letter whose form cannot
// stays as it is (drawn unjoined, still readable and copyable).
func shapeArabic(rs []rune, can func(rune) bool) []rune {
	if !hasArabic(rs) {
		return rs
	}
	d := arabic()
	types := make([]int, len(rs))
	for i, r := range rs {
		types[i] = d.joiningType(r)
	}
	// neighbour finds the next letter from i in direction step, marks
	// skipped; -1 when there is none.
	neighbour := func(i, step int) int {
		for j := i + step; j >= 0 && j < len(rs); j += step {
			if types[j] != joinTransparent {
				return j
			}
		}
		return -1
	}
	out := make([]rune, 0, len(rs))
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		f := d.forms[r]
		if f == nil {
			out = append(out, r)
			continue
		}
		p, n := neighbour(i, -1), neighbour(i, 1)
		before := p >= 0 && joinsForward(types[p]) && joinsBackward(types[i])
		after := n >= 0 && joinsForward(types[i]) && joinsBackward(types[n])
		if r == 0x0644 && n >= 0 {
			if lig, ok := d.lamAlef[rs[n]]; ok {
				form := lig[0]
				if before {
					form = lig[1]
				}
				if form != 0 && can(form) {
					// The ligature, then the marks that were on the lam.
					out = append(out, form)
					out = append(out, rs[i+1:n]...)
					i = n
					continue
				}
			}
		}
		var form rune
		switch {
		case before && after:
			form = f.medi
		case before:
			form = f.fina
		case after:
			form = f.init
		default:
			form = f.isol
		}
		if form == 0 || !can(form) {
			form = r
		}
		out = append(out, form)
	}
	return out
}
