package pdfmail

// The HTML layout measures and draws its words through the textWriter's
// font chain (run segmentation, fallback fonts, replacement marks counted
// as warnings): one word, one style at a time, at a given place. Line
// filling is the HTML layout's (htmllayout.go), since a paragraph there
// mixes styles, sizes, links and images.

// htmlFontStyle is the built-in font's style for st; italic is drawn by
// slanting (the built-in font has no italic face, fallback fonts neither).
func htmlFontStyle(st hStyle) string {
	if st.bold {
		return "B"
	}
	return ""
}

// htmlRun is a piece of a word drawn in one font of the chain.
type htmlRun struct {
	font int
	text string
}

// htmlRuns splits s into runs of one font each (replacement marks where
// no font can draw a character; counted as warnings).
func (t *textWriter) htmlRuns(s string) []htmlRun {
	rs := []rune(s)
	fonts := t.fontsFor(rs)
	var runs []htmlRun
	for i := 0; i < len(rs); {
		j := i
		for j < len(rs) && fonts[j] == fonts[i] {
			j++
		}
		runs = append(runs, htmlRun{font: fonts[i], text: string(rs[i:j])})
		i = j
	}
	return runs
}

// htmlWidth is the width of s in style st, in mm.
func (t *textWriter) htmlWidth(st hStyle, s string) float64 {
	w := 0.0
	for _, r := range t.htmlRuns(s) {
		t.setFont(r.font, htmlFontStyle(st), st.size)
		w += t.pdf.GetStringWidth(r.text)
	}
	return w
}

// italicSkew is the slant of synthetic italics, in degrees.
const italicSkew = 12

// htmlDraw draws s in style st with its top left corner at x, y in a cell
// of height h, and returns its width.
func (t *textWriter) htmlDraw(st hStyle, x, y, h float64, s string) float64 {
	if st.italic {
		t.pdf.TransformBegin()
		// Slanted about the text's baseline, so letters lean right.
		t.pdf.TransformSkewX(italicSkew, x, y+h/2+st.size*ptToMM*0.3)
		defer t.pdf.TransformEnd()
	}
	cx := x
	for _, r := range t.htmlRuns(s) {
		t.setFont(r.font, htmlFontStyle(st), st.size)
		w := t.pdf.GetStringWidth(r.text)
		t.pdf.SetXY(cx, y)
		t.pdf.CellFormat(w, h, r.text, "", 0, "L", false, 0, "")
		cx += w
	}
	return cx - x
}
