package pdfmail

import (
	"unicode"

	"golang.org/x/text/unicode/bidi"
)

// Right-to-left text (Hebrew, Arabic) and mixed lines are laid out with
// the Unicode bidirectional algorithm (UAX #9): a paragraph's base
// direction is that of its first strong character (rules P2, P3), the
// embedding level of each character is resolved over the whole
// paragraph, lines are broken in logical order, and each line is then
// reordered for drawing left to right (rule L2), marks kept after the
// letter they belong to and brackets mirrored in right-to-left runs (L4).
//
// golang.org/x/text/unicode/bidi resolves the levels (with bracket pairs
// and explicit embeddings) but reports only their direction; the levels
// are rebuilt from it: in a right-to-left paragraph left-to-right runs are
// level 2, in a left-to-right one right-to-left runs are level 1 and the
// numbers that follow right-to-left text level 2 (rules W2, I1). Text
// with explicit embeddings nested deeper than that is drawn as if they
// were one level deep.

// bidiClass is the Bidi_Class of r.
func bidiClass(r rune) bidi.Class {
	p, _ := bidi.LookupRune(r)
	return p.Class()
}

// needsBidi reports whether a paragraph has anything drawn right to left.
func needsBidi(rs []rune) bool {
	for _, r := range rs {
		if r < 0x0590 {
			continue
		}
		switch bidiClass(r) {
		case bidi.R, bidi.AL, bidi.AN, bidi.RLE, bidi.RLO, bidi.RLI, bidi.FSI:
			return true
		}
	}
	return false
}

// baseLevel is the paragraph's direction from its first strong character
// (characters inside isolates skipped): 1 for right to left, else 0.
func baseLevel(rs []rune) uint8 {
	depth := 0
	for _, r := range rs {
		switch bidiClass(r) {
		case bidi.LRI, bidi.RLI, bidi.FSI:
			depth++
		case bidi.PDI:
			if depth > 0 {
				depth--
			}
		case bidi.L:
			if depth == 0 {
				return 0
			}
		case bidi.R, bidi.AL:
			if depth == 0 {
				return 1
			}
		}
	}
	return 0
}

// bidiLevels returns the embedding level of each character of a
// paragraph (no line ends inside) and its base level. It never fails: if
// the algorithm cannot resolve the paragraph, all of it is at the base
// level (drawn in logical order).
func bidiLevels(rs []rune) (levels []uint8, base uint8) {
	base = baseLevel(rs)
	levels = make([]uint8, len(rs))
	for i := range levels {
		levels[i] = base
	}
	if !needsBidi(rs) {
		return levels, base
	}
	odd, ok := bidiOdd(rs, base)
	if !ok {
		return levels, base
	}
	lastStrong := bidi.L
	if base == 1 {
		lastStrong = bidi.R
	}
	for i, r := range rs {
		c := bidiClass(r)
		switch c {
		case bidi.L, bidi.R, bidi.AL:
			lastStrong = c
		}
		switch {
		case odd[i]:
			levels[i] = 1
		case base == 1:
			levels[i] = 2
		case c == bidi.AN, c == bidi.EN && lastStrong != bidi.L:
			levels[i] = 2
		default:
			levels[i] = 0
		}
	}
	if base == 0 {
		// Separators and terminators that joined a number (W4, W5) and
		// marks on it (W1) are at the number's level.
		for i, r := range rs {
			if levels[i] != 0 || odd[i] {
				continue
			}
			c := bidiClass(r)
			prev := i > 0 && levels[i-1] == 2
			next := i+1 < len(rs) && levels[i+1] == 2
			switch c {
			case bidi.CS, bidi.ES:
				if prev && next {
					levels[i] = 2
				}
			case bidi.ET, bidi.NSM, bidi.BN:
				if prev || (c == bidi.ET && next) {
					levels[i] = 2
				}
			}
		}
	}
	return levels, base
}

// bidiOdd runs the algorithm and reports which characters are right to
// left. ok is false when it failed (or panicked, on input it was not
// made for): every byte of a mail is outside input.
func bidiOdd(rs []rune, base uint8) (odd []bool, ok bool) {
	defer func() {
		if recover() != nil {
			odd, ok = nil, false
		}
	}()
	var p bidi.Paragraph
	var opts []bidi.Option
	if base == 1 {
		opts = append(opts, bidi.DefaultDirection(bidi.RightToLeft))
	}
	if _, err := p.SetString(string(rs), opts...); err != nil {
		return nil, false
	}
	o, err := p.Order()
	if err != nil {
		return nil, false
	}
	odd = make([]bool, len(rs))
	seen := 0
	for i := range o.NumRuns() {
		run := o.Run(i)
		start, end := run.Pos()
		if start < 0 || end >= len(rs) || end < start-1 {
			return nil, false
		}
		for j := start; j <= end; j++ {
			odd[j] = run.Direction() == bidi.RightToLeft
		}
		seen += end - start + 1
	}
	return odd, seen == len(rs)
}

// notDrawn reports whether r only steers layout and has no glyph of its
// own: explicit direction marks and embeddings, joiners (used by shaping),
// variation selectors (emoji or text presentation).
func notDrawn(r rune) bool {
	switch {
	case r == 0x200E, r == 0x200F, r == 0x061C, r == 0x200C, r == 0x200D, r >= 0xFE00 && r <= 0xFE0F:
		return true
	}
	switch bidiClass(r) {
	case bidi.LRE, bidi.RLE, bidi.LRO, bidi.RLO, bidi.PDF, bidi.LRI, bidi.RLI, bidi.FSI, bidi.PDI:
		return true
	}
	return false
}

// isMark reports whether r belongs to the character before it when a
// line is reordered (combining marks, variation selectors, joiners).
func isMark(r rune) bool {
	return r == 0x200D || unicode.In(r, unicode.Mn, unicode.Me)
}

// mirrored is r as drawn in right-to-left text: brackets and the other
// paired signs face the other way (rule L4).
func mirrored(r rune) rune {
	switch r {
	case '<':
		return '>'
	case '>':
		return '<'
	case '«':
		return '»'
	case '»':
		return '«'
	case '‹':
		return '›'
	case '›':
		return '‹'
	case '≤':
		return '≥'
	case '≥':
		return '≤'
	}
	if p, _ := bidi.LookupRune(r); p.IsBracket() {
		if m := []rune(bidi.ReverseString(string(r))); len(m) == 1 {
			return m[0]
		}
	}
	return r
}

// visualOrder returns the indices of rs (one line of a paragraph, with its
// levels) in drawing order, left to right (rule L2).
func visualOrder(rs []rune, levels []uint8) []int {
	// Clusters: a letter and the marks after it move together in
	// left-to-right text. In right-to-left text the marks are reversed
	// with the letters, so each is drawn just before (left of) its letter:
	// the fonts (DejaVu Sans) place right-to-left marks over the glyph
	// that follows them, and text extractors that undo the reversal
	// (poppler) then give each mark after its letter.
	type cluster struct {
		start, end int
		level      uint8
	}
	cs := make([]cluster, 0, len(rs))
	var high uint8
	lowOdd := uint8(255)
	for i, r := range rs {
		if i > 0 && isMark(r) && levels[i]%2 == 0 && len(cs) > 0 {
			cs[len(cs)-1].end = i + 1
			continue
		}
		lv := levels[i]
		cs = append(cs, cluster{i, i + 1, lv})
		high = max(high, lv)
		if lv%2 == 1 {
			lowOdd = min(lowOdd, lv)
		}
	}
	for lv := high; lv >= lowOdd && lv > 0; lv-- {
		for i := 0; i < len(cs); {
			if cs[i].level < lv {
				i++
				continue
			}
			j := i
			for j < len(cs) && cs[j].level >= lv {
				j++
			}
			for a, b := i, j-1; a < b; a, b = a+1, b-1 {
				cs[a], cs[b] = cs[b], cs[a]
			}
			i = j
		}
	}
	order := make([]int, 0, len(rs))
	for _, c := range cs {
		for k := c.start; k < c.end; k++ {
			order = append(order, k)
		}
	}
	return order
}
