package pdfmail

import (
	"bytes"
	_ "embed"
	"fmt"
	"slices"
	"strings"
	"time"

	"codeberg.org/go-pdf/fpdf"
)

// DejaVu Sans covers Latin Extended-A/B (German, French, Dutch, Polish,
// Turkish), €, typographic quotes, Greek and Cyrillic; fpdf embeds only the
// glyphs used (subset), so a letter costs tens of KB, not 700.
var (
	//go:embed fonts/DejaVuSans.ttf
	fontRegular []byte
	//go:embed fonts/DejaVuSans-Bold.ttf
	fontBold []byte
)

const (
	fontFamily = "DejaVu"
	pageMargin = 20.0 // mm
	bodySize   = 10.0 // pt
	lineHeight = 5.0  // mm for 10 pt
)

// renderPages draws the letter: header block, attachment list, body,
// "page x of y" footers. It returns an unencrypted PDF of the pages only;
// attachments and encryption are added by assemble.
func renderPages(pm *parsedMessage, lang language, created time.Time, fonts fontSet) (out []byte, warnings []string, err error) {
	defer func() {
		// fpdf panics on some inputs (seen: invalid UTF-8 in the title);
		// a hostile message must produce an error, not kill the gateway.
		if p := recover(); p != nil {
			out, warnings, err = nil, nil, fmt.Errorf("render pages: %v", p)
		}
	}()
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.SetCompression(true)
	pdf.SetCreationDate(created)
	pdf.SetModificationDate(created)
	pdf.SetProducer("sealgate", true)
	pdf.SetCreator("sealgate", true)
	// The title (the subject) is set by assemble: fpdf mangles characters
	// outside the BMP.
	pdf.SetLang(lang.code)
	// The built-in font with the glyphs of mirrored brackets under codes
	// of their own (mirror.go).
	regular, bold := withMirrorGlyphs(fonts.regular), withMirrorGlyphs(fonts.bold)
	pdf.AddUTF8FontFromBytes(fontFamily, "", regular)
	pdf.AddUTF8FontFromBytes(fontFamily, "B", bold)
	tw := &textWriter{pdf: pdf, chain: fonts.chain, added: map[int]bool{}, bad: map[int]bool{}, miss: missingRunes{}, width: map[widthKey]float64{},
		mirrorCodes: len(regular) > 0 && len(bold) > 0 && &regular[0] != &fonts.regular[0] && &bold[0] != &fonts.bold[0]}
	pdf.SetMargins(pageMargin, pageMargin, pageMargin)
	pdf.SetAutoPageBreak(true, pageMargin)
	pdf.AliasNbPages("{nb}")
	pdf.SetFooterFunc(func() {
		pdf.SetY(-pageMargin + 5)
		pdf.SetFont(fontFamily, "", 8)
		pdf.SetTextColor(110, 110, 110)
		pdf.CellFormat(0, 4, fmt.Sprintf(lang.page, pdf.PageNo(), "{nb}"), "", 0, "C", false, 0, "")
	})
	pdf.AddPage()

	pageW, _ := pdf.GetPageSize()
	textW := pageW - 2*pageMargin
	labelW := 28.0

	// Header block: labels in bold, values wrapped in the remaining width.
	field := func(label, value string) {
		if value == "" {
			return
		}
		y := pdf.GetY()
		pdf.SetFont(fontFamily, "B", bodySize)
		pdf.SetTextColor(60, 60, 60)
		pdf.CellFormat(labelW, lineHeight, label, "", 0, "L", false, 0, "")
		pdf.SetTextColor(0, 0, 0)
		pdf.SetXY(pageMargin+labelW, y)
		tw.block(pageMargin+labelW, "", bodySize, lineHeight, printable(value))
	}
	field(lang.from, pm.From)
	field(lang.to, pm.To)
	field(lang.cc, pm.Cc)
	if pm.HasDate {
		field(lang.date, lang.formatDate(pm.Date))
	}
	pdf.SetFont(fontFamily, "B", bodySize)
	subject := pm.Subject
	if subject == "" {
		subject = lang.noSubject
	}
	y := pdf.GetY()
	pdf.SetTextColor(60, 60, 60)
	pdf.CellFormat(labelW, lineHeight, lang.subject, "", 0, "L", false, 0, "")
	pdf.SetTextColor(0, 0, 0)
	pdf.SetXY(pageMargin+labelW, y)
	tw.block(pageMargin+labelW, "B", bodySize, lineHeight, printable(subject))

	if len(pm.Attachments) > 0 {
		pdf.Ln(1)
		y := pdf.GetY()
		pdf.SetFont(fontFamily, "B", bodySize)
		pdf.SetTextColor(60, 60, 60)
		pdf.CellFormat(labelW, lineHeight, lang.attachments, "", 0, "L", false, 0, "")
		pdf.SetTextColor(0, 0, 0)
		pdf.SetFont(fontFamily, "", bodySize)
		pdf.SetXY(pageMargin+labelW, y)
		var list strings.Builder
		for i, a := range pm.Attachments {
			if i > 0 {
				list.WriteByte('\n')
			}
			fmt.Fprintf(&list, "%s (%s, %s)", printable(a.Name), a.ContentType, lang.formatSize(a.Size))
		}
		tw.block(pageMargin+labelW, "", bodySize, lineHeight, list.String())
		pdf.SetFont(fontFamily, "", 8)
		pdf.SetTextColor(110, 110, 110)
		pdf.SetX(pageMargin + labelW)
		pdf.MultiCell(textW-labelW, 4, lang.attachmentHint, "", "L", false)
		pdf.SetTextColor(0, 0, 0)
	}

	if pm.ReplyURL != "" {
		// The secure reply: a link annotation over the printed address,
		// so it works in readers that follow links and can be typed
		// from paper in the others.
		pdf.Ln(1)
		y := pdf.GetY()
		pdf.SetFont(fontFamily, "B", bodySize)
		pdf.SetTextColor(60, 60, 60)
		pdf.CellFormat(labelW, lineHeight, lang.reply, "", 0, "L", false, 0, "")
		pdf.SetXY(pageMargin+labelW, y)
		pdf.SetFont(fontFamily, "", 9)
		pdf.SetTextColor(11, 92, 173)
		pdf.MultiCell(textW-labelW, lineHeight, pm.ReplyURL, "", "L", false)
		pdf.LinkString(pageMargin, y, textW, pdf.GetY()-y, pm.ReplyURL)
		pdf.SetFont(fontFamily, "", 8)
		pdf.SetTextColor(110, 110, 110)
		pdf.SetX(pageMargin + labelW)
		pdf.MultiCell(textW-labelW, 4, lang.replyHint, "", "L", false)
		pdf.SetTextColor(0, 0, 0)
	}

	// Rule between header block and body.
	pdf.Ln(2)
	pdf.SetDrawColor(150, 150, 150)
	pdf.SetLineWidth(0.3)
	pdf.Line(pageMargin, pdf.GetY(), pageW-pageMargin, pdf.GetY())
	pdf.Ln(4)

	pdf.SetFont(fontFamily, "", bodySize)
	pdf.SetTextColor(0, 0, 0)
	body := printable(pm.Text)
	if strings.TrimSpace(body) == "" {
		pdf.SetTextColor(110, 110, 110)
		body = lang.noBody
	}
	if pm.body != nil && len(pm.body.blocks) > 0 {
		// HTML mail laid out as HTML (html.go, htmllayout.go).
		drawHTML(pdf, tw, pm.body)
	} else {
		tw.block(pageMargin, "", bodySize, lineHeight, body)
	}

	if err := pdf.Error(); err != nil {
		return nil, nil, fmt.Errorf("render pages: %w", err)
	}
	var buf bytes.Buffer
	if err := pdf.Output(&buf); err != nil {
		return nil, nil, fmt.Errorf("render pages: %w", err)
	}
	return buf.Bytes(), tw.warnings(), nil
}

// textWriter draws text through the font chain: each run with its font,
// fonts registered with the document (and so embedded, as subsets) only
// when a run needs them. It lays out each paragraph with the
// bidirectional algorithm (bidi.go) and Arabic joining (shape.go): lines
// are broken in logical order, then each line is drawn in visual order,
// right-aligned when the paragraph is right to left.
type textWriter struct {
	pdf   *fpdf.Fpdf
	maxX  float64 // the right end of the lines of the current block
	chain *fontChain
	added map[int]bool
	bad   map[int]bool // fonts of the chain that cannot be drawn with
	miss  missingRunes
	width map[widthKey]float64
	// mirrorCodes: the built-in font has the mirror codes of mirror.go.
	mirrorCodes bool
	// hb shapes complex scripts (hbshape.go); made when first needed.
	hb *hbState
}

// widthKey names a character's advance in a font and style, per point of
// font size.
type widthKey struct {
	font int
	bold bool
	r    rune
}

// block draws s as paragraphs whose lines start at x, wrapped at the
// right margin, and leaves the cursor at x on the line below.
func (t *textWriter) block(x float64, style string, size, h float64, s string) {
	left, top, right, _ := t.pdf.GetMargins()
	t.pdf.SetMargins(x, top, right)
	t.pdf.SetX(x)
	pageW, _ := t.pdf.GetPageSize()
	t.maxX = pageW - right
	for para := range strings.SplitSeq(s, "\n") {
		t.paragraph(x, style, size, h, []rune(para))
	}
	t.pdf.SetMargins(left, top, right)
	t.pdf.SetX(left)
}

// paragraph draws one paragraph (no line end inside) and moves below it.
// The line filling is ours, not fpdf's Write: Write converts its whole
// text to runes once per line (quadratic), counts zero-width marks as
// 65535 units wide and knows no right to left.
func (t *textWriter) paragraph(x float64, style string, size, h float64, rs []rune) {
	rs = shapeArabic(rs, func(r rune) bool { return t.chain.fontFor(r) >= 0 })
	levels, base := bidiLevels(rs)
	// Direction marks, embeddings and joiners have done their work;
	// joiners after a letter of a shaped script steer the shaper
	// (hbshape.go).
	k := 0
	for i, r := range rs {
		if notDrawn(r) && !(isJoiner(r) && k > 0 && (needsShaping(rs[k-1]) || isJoiner(rs[k-1]))) {
			continue
		}
		rs[k], levels[k] = r, levels[i]
		k++
	}
	rs, levels = rs[:k], levels[:k]
	fonts := t.fontsFor(rs)
	shaped := t.shapeRuns(rs, fonts, levels)
	w := make([]float64, len(rs))
	var cont []bool
	if shaped != nil {
		cont = make([]bool, len(rs))
	}
	for i, r := range rs {
		switch {
		case shaped != nil && shaped[i].c != nil:
			cont[i] = !shaped[i].first
			if shaped[i].first {
				w[i] = shaped[i].c.width * size / t.pdf.GetConversionRatio()
			}
		default:
			w[i] = t.advance(fonts[i], style, size, r)
		}
	}

	for _, l := range breakLines(rs, w, t.maxX-x, cont) {
		a, b := l[0], l[1]
		var sh []shapedRef
		if shaped != nil {
			sh = shaped[a:b]
		}
		t.line(x, style, size, h, rs[a:b], levels[a:b], fonts[a:b], w[a:b], sh, base)
	}
}

// breakLines fills lines of width avail with the paragraph rs (logical
// order, w the width of each character) and returns each line's range.
// A piece wider than a whole line is broken between characters (not
// before a mark, nor inside a shaped cluster: cont, if not nil, marks the
// characters that continue one). There is always at least one line.
func breakLines(rs []rune, w []float64, avail float64, cont []bool) [][2]int {
	inside := func(i int) bool { return cont != nil && i < len(cont) && cont[i] }
	var lines [][2]int
	lineStart, lineW := 0, 0.0
	flush := func(end int) {
		lines = append(lines, [2]int{lineStart, end})
		lineStart, lineW = end, 0
	}
	start := 0
	for _, end := range pieceEnds(rs) {
		wordW, trail := 0.0, 0.0
		for i := start; i < end; i++ {
			wordW += w[i]
		}
		for i := end - 1; i >= start && rs[i] == ' '; i-- {
			trail += w[i]
		}
		if lineW > 0 && lineW+wordW-trail > avail && !inside(start) {
			flush(start)
		}
		if wordW-trail > avail && end-start > 1 {
			for i := start; i < end; i++ {
				if lineW > 0 && lineW+w[i] > avail && !isMark(rs[i]) && !inside(i) {
					flush(i)
				}
				lineW += w[i]
			}
		} else {
			lineW += wordW
		}
		start = end
	}
	flush(len(rs))
	return lines
}

// line draws one line of a paragraph: trailing spaces dropped, reordered
// for display, each run of one font as one cell, shaped clusters (sh, nil
// when there are none) glyph by glyph.
func (t *textWriter) line(x float64, style string, size, h float64, rs []rune, levels []uint8, fonts []int, w []float64, sh []shapedRef, base uint8) {
	for len(rs) > 0 && rs[len(rs)-1] == ' ' {
		rs, levels, fonts, w = rs[:len(rs)-1], levels[:len(rs)-1], fonts[:len(rs)-1], w[:len(rs)-1]
	}
	shapedAt := func(k int) *shapedCluster {
		if k < len(sh) {
			return sh[k].c
		}
		return nil
	}
	total := 0.0
	for _, v := range w {
		total += v
	}
	if base == 1 {
		t.pdf.SetX(max(x, t.maxX-total))
	}
	order := visualOrder(rs, levels)
	var b strings.Builder
	for i := 0; i < len(order); {
		f := fonts[order[i]]
		if c := shapedAt(order[i]); c != nil {
			var cs []*shapedCluster
			runW := 0.0
			j := i
			for ; j < len(order); j++ {
				d := shapedAt(order[j])
				if d == nil || d.hb != c.hb {
					break
				}
				if sh[order[j]].first {
					cs = append(cs, d)
					runW += w[order[j]]
				}
			}
			if len(cs) > 0 {
				t.drawShaped(cs, runW, h, size)
			}
			i = j
			continue
		}
		b.Reset()
		runW := 0.0
		j := i
		for ; j < len(order) && fonts[order[j]] == f && shapedAt(order[j]) == nil; j++ {
			r := rs[order[j]]
			if levels[order[j]]%2 == 1 {
				if c, ok := mirrorCode(r); ok && f == 0 && t.mirrorCodes {
					r = c
				} else {
					r = mirrored(r)
				}
			}
			b.WriteRune(r)
			runW += w[order[j]]
		}
		t.setFont(f, style, size)
		t.pdf.CellFormat(runW, h, b.String(), "", 0, "L", false, 0, "")
		i = j
	}
	t.pdf.Ln(h)
}

// advance is the width of r drawn in font f of the chain, cached.
func (t *textWriter) advance(f int, style string, size float64, r rune) float64 {
	key := widthKey{font: f, bold: f == 0 && style == "B", r: r}
	if u, ok := t.width[key]; ok {
		return u * size
	}
	t.setFont(f, style, size)
	w := t.pdf.GetStringWidth(string(r))
	t.width[key] = w / size
	return w
}

// usable reports whether font i of the chain can be drawn with (its file
// still there, fpdf can embed it), registering it with the document.
func (t *textWriter) usable(i int) bool {
	if i == 0 || t.added[i] {
		return true
	}
	if t.bad[i] {
		return false
	}
	data, err := t.chain.fonts[i].bytes()
	if err != nil {
		t.bad[i] = true
		return false
	}
	t.pdf.AddUTF8FontFromBytes(t.chain.fonts[i].family(i), "", data)
	t.added[i] = true
	return true
}

// fontsFor picks each rune's font from the chain; a rune whose font cannot
// be embedded becomes a replacement mark in the built-in font (rs is
// changed in place) and is counted as missing.
func (t *textWriter) fontsFor(rs []rune) []int {
	fonts := t.chain.assign(rs, t.miss)
	for i, f := range fonts {
		if f > 0 && !t.usable(f) {
			if rs[i] != ' ' {
				r := rs[i]
				if t.chain.fonts[f].astral {
					r = astralOriginal(r)
				}
				t.miss[r]++
				rs[i] = replacementRune
			}
			fonts[i] = 0
		}
	}
	return fonts
}

// setFont selects font i of the chain (usable must have said yes).
func (t *textWriter) setFont(i int, style string, size float64) {
	if i == 0 || !t.usable(i) {
		t.pdf.SetFont(fontFamily, style, size)
		return
	}
	// Fallback fonts have one face: bold text in them is drawn regular.
	t.pdf.SetFont(t.chain.fonts[i].family(i), "", size)
}

// isWide reports whether r is a CJK character (ideographs, kana, Hangul,
// full-width forms): lines may break after it.
func isWide(r rune) bool {
	return r >= 0x2E80 && r < 0xA000 || r >= 0xAC00 && r < 0xD800 ||
		r >= 0xF900 && r < 0xFB00 || r >= 0xFF00 && r < 0xFFF0 || r >= 0x20000
}

// maxPiece bounds a piece of text measured at once (a very long "word"
// is broken there when it reaches the margin).
const maxPiece = 64

// pieceEnds returns where the pieces of rs end: after each space, after
// each wide (CJK) character, where lines may break without a space, and
// every maxPiece characters.
func pieceEnds(rs []rune) []int {
	var ends []int
	n := 0
	for i, r := range rs {
		n++
		if r == ' ' || r == '\n' || isWide(r) || n == maxPiece {
			ends = append(ends, i+1)
			n = 0
		}
	}
	if n > 0 {
		ends = append(ends, len(rs))
	}
	return ends
}

// warnings describes the characters no font had, once each, in order.
func (t *textWriter) warnings() []string {
	if len(t.miss) == 0 {
		return nil
	}
	rs := make([]rune, 0, len(t.miss))
	for r := range t.miss {
		rs = append(rs, r)
	}
	slices.Sort(rs)
	const most = 20
	var b strings.Builder
	b.WriteString("no font has ")
	for i, r := range rs {
		if i == most {
			fmt.Fprintf(&b, " and %d more", len(rs)-most)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "U+%04X", r)
	}
	b.WriteString(": drawn as \uFFFD")
	return []string{b.String()}
}

// printable normalises text for the page: CRLF to LF, tabs to spaces,
// other control characters removed (they have no glyph and upset layout).
func printable(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\t", "    ")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n':
			return r
		case r == '\r':
			return '\n'
		case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
			return -1
		case r == '\u00ad', r == '\u200b', r == '\ufeff':
			// Soft hyphen, zero-width space, BOM: invisible, no glyph needed.
			return -1
		}
		return r
	}, s)
}

// fontSet is the TrueType data the pages are drawn with.
type fontSet struct {
	regular, bold []byte
	// chain supplies every character the regular font lacks.
	chain *fontChain
}
