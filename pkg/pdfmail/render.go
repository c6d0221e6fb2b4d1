package pdfmail

import (
	"bytes"
	_ "embed"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

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
	pdf.AddUTF8FontFromBytes(fontFamily, "", fonts.regular)
	pdf.AddUTF8FontFromBytes(fontFamily, "B", fonts.bold)
	tw := &textWriter{pdf: pdf, chain: fonts.chain, added: map[int]bool{}, miss: missingRunes{}}
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
// when a run needs them.
type textWriter struct {
	pdf   *fpdf.Fpdf
	maxX  float64 // the right end of the lines of the current block
	chain *fontChain
	added map[int]bool
	miss  missingRunes
}

// block draws s as a paragraph whose lines start at x, wrapped at the
// right margin, and leaves the cursor at x on the line below.
func (t *textWriter) block(x float64, style string, size, h float64, s string) {
	left, top, right, _ := t.pdf.GetMargins()
	t.pdf.SetMargins(x, top, right)
	t.pdf.SetX(x)
	pageW, _ := t.pdf.GetPageSize()
	t.maxX = pageW - right
	for _, r := range t.chain.segment(s, t.miss) {
		if !t.setFont(r.font, style, size) {
			r.text = t.unusable(r.text)
		}
		for _, piece := range pieces(r.text) {
			t.place(x, h, piece)
		}
	}
	t.pdf.Ln(h)
	t.pdf.SetMargins(left, top, right)
	t.pdf.SetX(left)
}

// place draws one piece (a word with its trailing space or line end, or
// one wide character) at the cursor, on the next line when it does not
// fit, and one character at a time when it is wider than a whole line.
// The line filling is ours, not fpdf's Write: Write converts its whole
// text to runes once per line (quadratic) and counts zero-width marks
// (Devanagari vowel signs, accents) as 65535 units wide, breaking a line
// after every one of them. GetStringWidth counts them right.
func (t *textWriter) place(x, h float64, piece string) {
	text, newline := strings.CutSuffix(piece, "\n")
	word := strings.TrimRight(text, " ")
	if wordW := t.pdf.GetStringWidth(word); t.pdf.GetX()+wordW > t.maxX {
		if t.pdf.GetX() > x {
			t.pdf.Ln(h)
		}
		if wordW > t.maxX-x && utf8.RuneCountInString(word) > 1 {
			for _, r := range text {
				t.place(x, h, string(r))
			}
			if newline {
				t.pdf.Ln(h)
			}
			return
		}
	}
	if text != "" {
		t.pdf.CellFormat(t.pdf.GetStringWidth(text), h, text, "", 0, "L", false, 0, "")
	}
	if newline {
		t.pdf.Ln(h)
	}
}

// setFont selects font i of the chain. It reports false, with the
// built-in font selected, when font i cannot be used (its file went away
// or fpdf cannot embed it): the run is then drawn as replacement marks.
func (t *textWriter) setFont(i int, style string, size float64) bool {
	if i == 0 {
		t.pdf.SetFont(fontFamily, style, size)
		return true
	}
	family := t.chain.fonts[i].family(i)
	if !t.added[i] {
		data, err := t.chain.fonts[i].bytes()
		if err != nil {
			t.pdf.SetFont(fontFamily, style, size)
			return false
		}
		t.pdf.AddUTF8FontFromBytes(family, "", data)
		t.added[i] = true
	}
	// Fallback fonts have one face: bold text in them is drawn regular.
	t.pdf.SetFont(family, "", size)
	return true
}

// maxPiece bounds a piece of text handed to fpdf at once (a very long
// "word" is broken there when it reaches the margin).
const maxPiece = 64

// pieces splits s after each space and line end, after each wide (CJK)
// character, where lines may break without a space, and every maxPiece
// characters.
func pieces(s string) []string {
	var out []string
	start, n := 0, 0
	for i, r := range s {
		n++
		if r == ' ' || r == '\n' || r >= 0x2E80 || n == maxPiece {
			end := i + utf8.RuneLen(r)
			out = append(out, s[start:end])
			start, n = end, 0
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// unusable turns a run meant for an unusable font into replacement marks
// (spaces and line ends kept) and counts its characters as missing.
func (t *textWriter) unusable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\n' {
			return r
		}
		t.miss[r]++
		return replacementRune
	}, s)
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
