package pdfmail

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"

	"codeberg.org/go-pdf/fpdf"
)

// hLayout draws blocks top to bottom, breaking pages itself (fpdf's
// automatic break would split a table row). In dry mode it only measures:
// y advances, nothing is drawn.
type hLayout struct {
	pdf         *fpdf.Fpdf
	tw          *textWriter
	y           float64
	top, bottom float64
	dry         bool
	noBreak     bool // inside a table row: the row was made to fit
	images      map[string]bool
}

// hTok is a measured piece of a paragraph: a word with its trailing
// space, an image or a line break.
type hTok struct {
	text   string
	st     hStyle
	w      float64 // mm, trailing space included
	trail  float64 // width of the trailing space
	img    *hImage
	iw, ih float64
	br     bool
}

const ptToMM = 25.4 / 72

// fitSlack absorbs rounding when a column was made exactly as wide as
// its content.
const fitSlack = 0.05

// lineH is the line height of text of size pt.
func lineH(size float64) float64 { return size * 0.5 }

// drawHTML lays out doc from the cursor down, over as many pages as it
// needs, in the text width.
func drawHTML(pdf *fpdf.Fpdf, tw *textWriter, doc *htmlDoc) {
	_, pageH := pdf.GetPageSize()
	auto, margin := pdf.GetAutoPageBreak()
	pdf.SetAutoPageBreak(false, margin)
	defer pdf.SetAutoPageBreak(auto, margin)
	_, top, right, _ := pdf.GetMargins()
	pageW, _ := pdf.GetPageSize()
	// Words are placed at measured positions: no cell margin around them.
	cm := pdf.GetCellMargin()
	pdf.SetCellMargin(0)
	defer pdf.SetCellMargin(cm)
	l := &hLayout{pdf: pdf, tw: tw, y: pdf.GetY(), top: top, bottom: pageH - margin, images: map[string]bool{}}
	x := pageMargin
	l.blocks(doc.blocks, x, pageW-right-x)
	pdf.SetTextColor(0, 0, 0)
	pdf.SetXY(x, l.y)
}

func (l *hLayout) newPage() {
	if l.dry || l.noBreak {
		return
	}
	l.pdf.AddPage()
	l.y = l.top
}

// room makes sure h mm fit below y (a new page when not, unless already
// at the top of one).
func (l *hLayout) room(h float64) {
	if !l.dry && !l.noBreak && l.y+h > l.bottom && l.y > l.top+0.01 {
		l.newPage()
	}
}

func (l *hLayout) blocks(bs []*hBlock, x, w float64) {
	for _, b := range bs {
		l.block(b, x, w)
	}
}

func (l *hLayout) block(b *hBlock, x, w float64) {
	w = max(w, 5)
	l.y += b.gap
	switch b.kind {
	case bPara:
		l.para(b, x, w)
	case bRule:
		l.room(1)
		if !l.dry {
			l.pdf.SetDrawColor(170, 170, 170)
			l.pdf.SetLineWidth(0.3)
			l.pdf.Line(x, l.y, x+w, l.y)
		}
		l.y += 0.5
	case bQuote:
		indent := 5.0
		startPage, startY := l.pdf.PageNo(), l.y
		l.blocks(b.inner, x+indent, w-indent)
		if !l.dry && !b.ordered { // ordered marks a <dd>: indented, no bar
			from := startY
			if l.pdf.PageNo() != startPage {
				from = l.top
			}
			l.pdf.SetDrawColor(190, 190, 190)
			l.pdf.SetLineWidth(0.8)
			l.pdf.Line(x+1.5, from, x+1.5, l.y)
		}
	case bList:
		indent := 6.0
		for i, item := range b.items {
			l.room(lineH(bodySize))
			if !l.dry {
				marker := "•"
				if b.ordered {
					marker = fmt.Sprintf("%d.", b.start+i)
				}
				y := l.y
				if len(item) > 0 {
					y += firstGap(item)
				}
				l.pdf.SetTextColor(0, 0, 0)
				l.tw.htmlDraw(hStyle{size: bodySize}, x, y, lineH(bodySize), marker)
			}
			if len(item) > 0 {
				l.blocks(item, x+indent, w-indent)
			}
		}
	case bTable:
		l.table(b.table, x, w)
	}
}

func firstGap(bs []*hBlock) float64 {
	if len(bs) == 0 {
		return 0
	}
	return bs[0].gap
}

// tokens splits a paragraph into measured pieces (once per paragraph).
func (l *hLayout) tokens(b *hBlock) []hTok {
	if b.tokked {
		return b.toks
	}
	b.tokked = true
	var toks []hTok
	for _, in := range b.inl {
		switch {
		case in.br:
			toks = append(toks, hTok{br: true, st: in.st})
		case in.img != nil:
			toks = append(toks, hTok{img: in.img, st: in.st, iw: in.img.w * pxToMM, ih: in.img.h * pxToMM})
		default:
			for _, piece := range splitWords(printable(in.text)) {
				t := hTok{text: piece, st: in.st}
				t.w = l.tw.htmlWidth(in.st, piece)
				if trimmed := strings.TrimRight(piece, " "); trimmed != piece {
					t.trail = t.w - l.tw.htmlWidth(in.st, trimmed)
				}
				toks = append(toks, t)
			}
		}
	}
	b.toks = toks
	return toks
}

// splitWords cuts text after each space and after each wide (CJK)
// character, where a line may break.
func splitWords(s string) []string {
	var out []string
	start := 0
	for i, r := range s {
		if r == ' ' || r >= 0x2E80 && r < 0xA000 || r >= 0xAC00 && r < 0xD800 {
			end := i + utf8.RuneLen(r)
			// Spaces stay with the word before them.
			if r != ' ' && end < len(s) && s[end] == ' ' {
				continue
			}
			out = append(out, s[start:end])
			start = end
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// para fills lines with tokens and draws them.
func (l *hLayout) para(b *hBlock, x, w float64) {
	toks := l.tokens(b)
	var line []hTok
	lineW := 0.0
	emit := func(force bool) {
		if len(line) == 0 && !force {
			return
		}
		l.line(line, x, w, b.align)
		line, lineW = nil, 0
	}
	for _, t := range toks {
		if t.br {
			if len(line) == 0 {
				l.y += lineH(t.st.size)
				continue
			}
			emit(false)
			continue
		}
		if t.img != nil && t.iw > w {
			// Wider than the column: scaled down to fit.
			t.ih, t.iw = t.ih*w/t.iw, w
		}
		if pageH := l.bottom - l.top; t.img != nil && t.ih > pageH {
			// Taller than a page: scaled down to one page.
			t.iw, t.ih = t.iw*pageH/t.ih, pageH
		}
		if len(line) == 0 && t.text == " " {
			continue // no space at the start of a line
		}
		if len(line) > 0 && lineW+t.w-t.trail > w+fitSlack {
			emit(false)
			if t.text == " " {
				continue
			}
		}
		if t.img == nil && t.w-t.trail > w+fitSlack {
			// A word longer than the line: broken between characters.
			for _, r := range t.text {
				c := hTok{text: string(r), st: t.st, w: l.tw.htmlWidth(t.st, string(r))}
				if len(line) > 0 && lineW+c.w > w+fitSlack {
					emit(false)
				}
				line = append(line, c)
				lineW += c.w
			}
			continue
		}
		line = append(line, t)
		lineW += t.w
	}
	emit(false)
}

// line draws one line of tokens at y, bottoms aligned, and moves below.
func (l *hLayout) line(toks []hTok, x, w float64, align string) {
	h, total := 0.0, 0.0
	for i, t := range toks {
		switch {
		case t.img != nil:
			h = max(h, t.ih)
			total += t.iw
		default:
			h = max(h, lineH(t.st.size))
			total += t.w
			if i == len(toks)-1 {
				total -= t.trail
			}
		}
	}
	l.room(h)
	cx := x
	switch align {
	case "C":
		cx += max(0, (w-total)/2)
	case "R":
		cx += max(0, w-total)
	}
	if l.dry {
		l.y += h
		return
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.img != nil {
			l.drawImage(t, cx, l.y+h-t.ih)
			cx += t.iw
			continue
		}
		th := lineH(t.st.size)
		ty := l.y + h - th
		col := t.st.color
		if t.st.grey {
			col = [3]int{120, 120, 120}
		}
		l.pdf.SetTextColor(col[0], col[1], col[2])
		l.tw.htmlDraw(t.st, cx, ty, th, t.text)
		drawn := t.w
		if i == len(toks)-1 {
			drawn -= t.trail
		}
		if t.st.underline && drawn > 0 {
			l.pdf.SetDrawColor(col[0], col[1], col[2])
			l.pdf.SetLineWidth(0.2)
			uy := ty + th/2 + t.st.size*ptToMM*0.42
			l.pdf.Line(cx, uy, cx+drawn, uy)
		}
		if t.st.href != "" {
			// One annotation for the link's words on this line.
			lw := drawn
			j := i + 1
			for ; j < len(toks) && toks[j].img == nil && toks[j].st.href == t.st.href; j++ {
				lw += toks[j].w
				if j == len(toks)-1 {
					lw -= toks[j].trail
				}
			}
			if lw > 0 {
				l.pdf.LinkString(cx, ty, lw, th, t.st.href)
			}
			// The following words of the same link are drawn without
			// another annotation.
			cx += t.w
			for k := i + 1; k < j; k++ {
				u := toks[k]
				uth := lineH(u.st.size)
				uty := l.y + h - uth
				l.tw.htmlDraw(u.st, cx, uty, uth, u.text)
				ud := u.w
				if k == len(toks)-1 {
					ud -= u.trail
				}
				if u.st.underline && ud > 0 {
					uy := uty + uth/2 + u.st.size*ptToMM*0.42
					l.pdf.Line(cx, uy, cx+ud, uy)
				}
				cx += u.w
			}
			i = j - 1
			continue
		}
		cx += t.w
	}
	l.y += h
}

func (l *hLayout) drawImage(t hTok, x, y float64) {
	opts := fpdf.ImageOptions{ImageType: "PNG"}
	if !l.images[t.img.name] {
		l.pdf.RegisterImageOptionsReader(t.img.name, opts, bytes.NewReader(t.img.png))
		l.images[t.img.name] = true
	}
	l.pdf.ImageOptions(t.img.name, x, y, t.iw, t.ih, false, opts, 0, t.st.href)
}

// table lays out a table: column widths from the cells' content and
// width attributes, the grid with colspan and rowspan, row heights from
// the measured cells; a row (with the rows its cells span) is not split
// over pages unless it is taller than a page.
func (l *hLayout) table(t *hTable, x, w float64) {
	// The grid: which cell starts where, which slots are covered.
	type placed struct {
		c        *hCell
		row, col int
	}
	var cells []placed
	cover := map[[2]int]bool{}
	ncols := 0
	// Spans cost a slot each: a hostile table of 2000 rows of cells
	// spanning 64×500 would mean billions. Beyond the budget, spans are 1.
	budget := maxSpanSlots
	var overflow []*hBlock
	defer func() { l.blocks(overflow, x, w) }()
	for r, row := range t.rows {
		col := 0
		for _, c := range row {
			for cover[[2]int{r, col}] && col < maxTableCols {
				col++
			}
			if col >= maxTableCols {
				// No column left in this row (spans from above fill
				// it): the cell is drawn below the table, not lost.
				overflow = append(overflow, c.blocks...)
				continue
			}
			span := min(c.colspan, maxTableCols-col)
			rs := max(min(c.rowspan, len(t.rows)-r), 1)
			if span*rs > budget {
				span, rs = 1, 1
			}
			budget -= span * rs
			c.colspan, c.rowspan = span, rs
			for dr := range c.rowspan {
				for dc := range span {
					cover[[2]int{r + dr, col + dc}] = true
				}
			}
			cells = append(cells, placed{c, r, col})
			col += span
			ncols = max(ncols, col)
		}
	}
	if ncols == 0 {
		return
	}
	// Column widths.
	avail := w
	target := 0.0
	switch {
	case t.widthPct > 0:
		target = avail * t.widthPct / 100
	case t.widthMM > 0:
		target = min(t.widthMM, avail)
	}
	minW := make([]float64, ncols)
	natW := make([]float64, ncols)
	fixed := make([]float64, ncols)
	for _, p := range cells {
		mn, nat := l.contentWidths(p.c.blocks)
		mn += 2 * t.pad
		nat += 2 * t.pad
		if p.c.colspan == 1 {
			minW[p.col] = max(minW[p.col], mn)
			natW[p.col] = max(natW[p.col], nat)
			if p.c.widthMM > 0 {
				fixed[p.col] = max(fixed[p.col], p.c.widthMM)
			}
		}
	}
	want := make([]float64, ncols)
	sumWant := 0.0
	for c := range ncols {
		want[c] = natW[c]
		if fixed[c] > 0 {
			want[c] = max(fixed[c], minW[c])
		}
		want[c] = max(want[c], 3)
		sumWant += want[c]
	}
	if target == 0 {
		target = min(sumWant, avail)
	}
	colW := make([]float64, ncols)
	for c := range ncols {
		colW[c] = want[c] * target / sumWant
	}
	if sumWant > target {
		// Too wide: every column at least its longest word where the
		// others can give, the rest shared by what each column wants.
		sumMin := 0.0
		for c := range ncols {
			sumMin += min(minW[c], want[c])
		}
		if sumMin < target {
			extra := target - sumMin
			rest := sumWant - sumMin
			for c := range ncols {
				m := min(minW[c], want[c])
				colW[c] = m
				if rest > 0 {
					colW[c] += extra * (want[c] - m) / rest
				}
			}
		}
	}
	if sumMinW := sum(minW); sumMinW > avail*1.5 {
		// Far too wide for the page (hundreds of columns, long words
		// in many): the cells one after the other, nothing cut off.
		for r := range t.rows {
			for _, c := range t.rows[r] {
				l.blocks(c.blocks, x, w)
			}
		}
		return
	}
	colX := make([]float64, ncols+1)
	colX[0] = x
	if t.center {
		// A newsletter's 600 px body, a centred button.
		colX[0] = x + max(0, (w-target)/2)
	}
	for c := range ncols {
		colX[c+1] = colX[c] + colW[c]
	}
	// Row heights from the cells (measured dry).
	nrows := len(t.rows)
	rowH := make([]float64, nrows)
	contentH := map[*hCell]float64{}
	for _, p := range cells {
		cw := colX[p.col+p.c.colspan] - colX[p.col] - 2*t.pad
		h := l.measure(p.c.blocks, cw)
		contentH[p.c] = h
		if p.c.rowspan == 1 {
			rowH[p.row] = max(rowH[p.row], h+2*t.pad)
		}
	}
	for r := range rowH {
		rowH[r] = max(rowH[r], lineH(bodySize)*0.6)
	}
	for _, p := range cells {
		if p.c.rowspan > 1 {
			have := 0.0
			for r := p.row; r < p.row+p.c.rowspan; r++ {
				have += rowH[r]
			}
			if need := contentH[p.c] + 2*t.pad; need > have {
				rowH[p.row+p.c.rowspan-1] += need - have
			}
		}
	}
	// Draw by groups of rows that rowspans tie together.
	byRow := make([][]placed, nrows)
	for _, p := range cells {
		byRow[p.row] = append(byRow[p.row], p)
	}
	groupEnd := func(r int) int {
		end := r + 1
		for k := r; k < end; k++ {
			for _, p := range byRow[k] {
				end = max(end, p.row+p.c.rowspan)
			}
		}
		return end
	}
	// The header rows, repeated on every page the table continues on:
	// when no rowspan ties them to the body and they take less than a
	// third of a page (else the repeat would crowd out the rows).
	headEnd, headH := 0, 0.0
	for headEnd < t.head {
		headEnd = groupEnd(headEnd)
	}
	for k := range headEnd {
		headH += rowH[k]
	}
	repeatHead := t.head > 0 && headEnd == t.head && headEnd < nrows && headH < (l.bottom-l.top)/3
	// drawRows draws rows r to end-1 from l.y, which must have room.
	drawRows := func(r, end int) {
		rowY := make([]float64, end-r+1)
		rowY[0] = l.y
		for k := r; k < end; k++ {
			rowY[k-r+1] = rowY[k-r] + rowH[k]
		}
		saved := l.noBreak
		l.noBreak = true
		for k := r; k < end; k++ {
			for _, p := range byRow[k] {
				cx, cw := colX[p.col], colX[p.col+p.c.colspan]-colX[p.col]
				cy := rowY[k-r]
				ch := rowY[k-r+p.c.rowspan] - cy
				if p.c.bg != nil {
					l.pdf.SetFillColor(p.c.bg[0], p.c.bg[1], p.c.bg[2])
					l.pdf.Rect(cx, cy, cw, ch, "F")
				}
				if t.border {
					l.pdf.SetDrawColor(120, 120, 120)
					l.pdf.SetLineWidth(0.2)
					l.pdf.Rect(cx, cy, cw, ch, "D")
				}
				off := t.pad
				switch p.c.valign {
				case "M":
					off = max(t.pad, (ch-contentH[p.c])/2)
				case "B":
					off = max(t.pad, ch-contentH[p.c]-t.pad)
				}
				l.y = cy + off
				l.blocks(p.c.blocks, cx+t.pad, cw-2*t.pad)
			}
		}
		l.noBreak = saved
		l.y = rowY[end-r]
	}
	for r := 0; r < nrows; {
		end := groupEnd(r)
		groupH := 0.0
		for k := r; k < end; k++ {
			groupH += rowH[k]
		}
		if l.dry {
			l.y += groupH
			r = end
			continue
		}
		if groupH > l.bottom-l.top {
			// Taller than a page: the cells one after the other, so
			// that nothing is cut off.
			for k := r; k < end; k++ {
				for _, p := range byRow[k] {
					l.blocks(p.c.blocks, colX[0]+t.pad, colX[ncols]-colX[0]-2*t.pad)
				}
			}
			r = end
			continue
		}
		if repeatHead && r >= headEnd && !l.noBreak && l.y+groupH > l.bottom && l.y > l.top+0.01 &&
			headH+groupH <= l.bottom-l.top {
			// The table goes on over the page: its header first.
			l.newPage()
			drawRows(0, headEnd)
		}
		need := groupH
		if repeatHead && r < headEnd {
			// The header not alone at the foot of a page: it starts
			// where the first body rows fit under it.
			need = 0
			for k := r; k < groupEnd(headEnd); k++ {
				need += rowH[k]
			}
			if need > l.bottom-l.top {
				need = groupH
			}
		}
		l.room(need)
		drawRows(r, end)
		r = end
	}
}

// measure returns the height blocks take in width w.
func (l *hLayout) measure(bs []*hBlock, w float64) float64 {
	saved, savedDry := l.y, l.dry
	l.y, l.dry = 0, true
	l.blocks(bs, 0, w)
	h := l.y
	l.y, l.dry = saved, savedDry
	return h
}

// contentWidths returns the narrowest width blocks can take (their
// widest word or image) and the width they would like (their longest
// line unbroken), capped at a page.
func (l *hLayout) contentWidths(bs []*hBlock) (minW, natW float64) {
	const capW = 400.0
	for _, b := range bs {
		var mn, nat float64
		switch b.kind {
		case bPara:
			line, trail := 0.0, 0.0
			for _, t := range l.tokens(b) {
				switch {
				case t.br:
					nat = max(nat, line-trail)
					line, trail = 0, 0
				case t.img != nil:
					mn = max(mn, min(t.iw, capW))
					line, trail = line+t.iw, 0
				default:
					mn = max(mn, t.w-t.trail)
					line, trail = line+t.w, t.trail
				}
			}
			nat = max(nat, line-trail)
		case bList, bQuote:
			inner := b.inner
			for _, it := range b.items {
				inner = append(inner[:len(inner):len(inner)], it...)
			}
			mn, nat = l.contentWidths(inner)
			mn += 6
			nat += 6
		case bTable:
			if b.table.widthMM > 0 {
				mn, nat = 20, b.table.widthMM
				break
			}
			for _, row := range b.table.rows {
				rowMin, rowNat := 0.0, 0.0
				for _, c := range row {
					cm, cn := l.contentWidths(c.blocks)
					rowMin += cm + 2*b.table.pad
					rowNat += cn + 2*b.table.pad
				}
				mn, nat = max(mn, rowMin), max(nat, rowNat)
			}
		}
		minW, natW = max(minW, min(mn, capW)), max(natW, min(nat, capW))
	}
	return minW, natW
}

func sum(v []float64) float64 {
	s := 0.0
	for _, f := range v {
		s += f
	}
	return s
}
