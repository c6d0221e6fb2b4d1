package pdfmail

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	_ "image/gif" // first frame of GIF inline images
	_ "image/jpeg"
	"image/png"
	"io"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// An HTML body is laid out, not flattened to text: html.go turns the
// parsed document into blocks (paragraphs of styled runs, lists, quotes,
// tables, rules), htmllayout.go draws them. Nothing is fetched (remote
// images show their alt text), nothing is executed (script, style and the
// like are dropped), and only http, https and mailto links become links.
// Every limit below bounds what a hostile message can make us do.
const (
	maxHTMLDepth     = 48 // element nesting that still gives structure
	maxHTMLBlocks    = 20000
	maxTableRows     = 2000
	maxTableCols     = 64
	maxRowSpan       = 500
	maxSpanSlots     = 200000 // grid slots the cells of one table may cover
	maxHTMLCells     = 50000  // cells in all tables; beyond, content joins the last cell
	maxHTMLImages    = 64
	maxImagePixels   = 16 << 20  // decoded RGBA ≈ 64 MB at most
	maxImageBytes    = 16 << 20  // one inline image, decoded part
	pxToMM           = 25.4 / 96 // a CSS pixel
	htmlBodyFontSize = bodySize
)

type blockKind int

const (
	bPara blockKind = iota
	bTable
	bList
	bQuote
	bRule
)

// hStyle is the inherited style of a run of text.
type hStyle struct {
	bold, italic, underline bool
	size                    float64 // pt
	href                    string  // a safe link target or ""
	color                   [3]int
	align                   string // "" (left), "C", "R"
	pre                     bool
	grey                    bool // placeholder text (remote image alt)
	dark                    bool // on a dark cell background: light text
}

// hInline is one piece of a paragraph: text, an image or a line break.
type hInline struct {
	text string
	st   hStyle
	img  *hImage
	br   bool
}

// hBlock is one block of the document.
type hBlock struct {
	kind    blockKind
	gap     float64 // space before, mm
	align   string
	inl     []hInline
	table   *hTable
	items   [][]*hBlock // list items
	ordered bool
	start   int
	inner   []*hBlock // quote
	toks    []hTok    // paragraph, measured once
	tokked  bool
}

type hTable struct {
	rows     [][]*hCell
	border   bool
	widthMM  float64 // from width="600" (px) or style; 0 = auto
	widthPct float64
	pad      float64 // cell padding, mm
	center   bool    // align="center" or margin: auto
	// head is the number of leading header rows (<thead>, or rows of
	// <th> only), drawn again at the top of each page the table
	// continues on.
	head int
}

type hCell struct {
	blocks           []*hBlock
	colspan, rowspan int
	header           bool
	bg               *[3]int
	widthMM          float64
	valign           string // "T", "M" (default), "B"
}

// hImage is an inline image, decoded and re-encoded as an opaque PNG
// (what the PDF writer reads safely), with its size in CSS pixels.
type hImage struct {
	png  []byte
	w, h float64 // displayed size, px
	name string  // the image's name in the PDF, one per part
}

// htmlDoc is a laid-out-ready HTML body.
type htmlDoc struct {
	blocks []*hBlock
}

// prepareHTML builds pm.body from pm.HTML: the inline images it refers to
// (cid:) are drawn and no longer listed as attachments, and the HTML
// itself is embedded as message.html. Images that cannot be drawn stay
// attachments: nothing the sender sent is lost.
func prepareHTML(pm *parsedMessage) error {
	if pm.HTML == "" {
		return nil
	}
	root, err := html.Parse(strings.NewReader(pm.HTML))
	if err != nil {
		// The parser refuses some hostile documents (more than 512
		// open elements): their text is shown without structure.
		root = flatHTML(pm.HTML)
	}
	// The <style> sheets write their properties into the elements' style
	// attributes (css.go): the layout and the text below see them.
	pm.htmlWarnings = applyStyleSheets(root)
	// The HTML layout draws words left to right and does not join Arabic
	// letters nor shape Indic or Thai text; the text layout does (bidi.go,
	// shape.go, hbshape.go). Mail with right-to-left text or text that
	// needs shaping is therefore laid out as text: the text alternative
	// when there is one, else the HTML's text. The HTML still travels
	// inside the PDF (message.html), its images as files.
	if txt := htmlPlainText(root); needsBidi([]rune(txt)) || needsComplexShaping([]rune(txt)) {
		if strings.TrimSpace(pm.Text) == "" {
			pm.Text = txt
		}
		return nil
	}
	byCID := map[string]*attachment{}
	for _, a := range pm.Attachments {
		if a.ContentID != "" && strings.HasPrefix(a.ContentType, "image/") {
			byCID[strings.ToLower(a.ContentID)] = a
		}
	}
	b := &hBuilder{cids: byCID, images: map[*attachment]*hImage{}, used: map[*attachment]bool{}}
	b.out = &b.doc.blocks
	b.walk(root, hStyle{size: htmlBodyFontSize}, 0)
	pm.body = &b.doc

	kept := pm.Attachments[:0]
	seen := map[string]int{}
	for _, a := range pm.Attachments {
		if b.used[a] {
			continue
		}
		kept = append(kept, a)
		seen[strings.ToLower(a.Name)]++
	}
	pm.Attachments = kept
	orig, err := readAttachment(strings.NewReader(pm.HTML), "message.html", "text/html", seen)
	if err != nil {
		return fmt.Errorf("HTML body: %w", err)
	}
	pm.Attachments = append(pm.Attachments, orig)
	return nil
}

// flatHTML is the fallback for a document the parser refuses: its text
// (outside script, style and the like) as one paragraph, with a line
// break for every block tag.
func flatHTML(doc string) *html.Node {
	root := &html.Node{Type: html.DocumentNode}
	p := &html.Node{Type: html.ElementNode, Data: "p", DataAtom: atom.P}
	root.AppendChild(p)
	z := html.NewTokenizer(strings.NewReader(doc))
	skip := 0
	for {
		switch tt := z.Next(); tt {
		case html.ErrorToken:
			return root
		case html.TextToken:
			if skip == 0 {
				p.AppendChild(&html.Node{Type: html.TextNode, Data: string(z.Text())})
			}
		case html.StartTagToken, html.EndTagToken:
			name, _ := z.TagName()
			a := atom.Lookup(name)
			if flatSkipped[a] {
				if tt == html.StartTagToken {
					skip++
				} else if skip > 0 {
					skip--
				}
				continue
			}
			if blockElems[a] || a == atom.Br {
				p.AppendChild(&html.Node{Type: html.ElementNode, Data: "br", DataAtom: atom.Br})
			}
		}
	}
}

// hBuilder walks the DOM into blocks.
type hBuilder struct {
	doc     htmlDoc
	out     *[]*hBlock // the container blocks are added to
	cur     *hBlock    // the open paragraph, nil when none
	gap     float64    // space owed before the next block
	nblocks int
	ncells  int
	cids    map[string]*attachment
	images  map[*attachment]*hImage
	used    map[*attachment]bool
	nimg    int
}

func (b *hBuilder) add(blk *hBlock) *hBlock {
	b.nblocks++
	blk.gap, b.gap = b.gap, 0
	*b.out = append(*b.out, blk)
	return blk
}

func (b *hBuilder) endPara() { b.cur = nil }

func (b *hBuilder) para(st hStyle) *hBlock {
	if b.cur == nil {
		b.cur = b.add(&hBlock{kind: bPara, align: st.align})
	}
	return b.cur
}

func (b *hBuilder) space(mm float64) { b.gap = max(b.gap, mm) }

// sub collects the blocks f makes into a new container.
func (b *hBuilder) sub(f func()) []*hBlock {
	out, cur, gap := b.out, b.cur, b.gap
	var blocks []*hBlock
	b.out, b.cur, b.gap = &blocks, nil, 0
	f()
	b.out, b.cur, b.gap = out, cur, gap
	return blocks
}

func (b *hBuilder) children(n *html.Node, st hStyle, depth int) {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		b.walk(c, st, depth+1)
	}
}

// skipped elements carry no readable content, or content that would run
// (scripts) or fetch (frames, objects) in a browser.
var skipped = map[atom.Atom]bool{
	atom.Head: true, atom.Script: true, atom.Style: true, atom.Title: true, atom.Noscript: true,
	atom.Template: true, atom.Iframe: true, atom.Object: true, atom.Embed: true, atom.Svg: true,
	atom.Math: true, atom.Select: true, atom.Audio: true, atom.Video: true, atom.Canvas: true,
	atom.Frameset: true, atom.Frame: true, atom.Applet: true, atom.Link: true, atom.Meta: true, atom.Base: true,
}

// flatSkipped are the skipped elements that have an end tag.
var flatSkipped = map[atom.Atom]bool{
	atom.Head: true, atom.Script: true, atom.Style: true, atom.Title: true, atom.Noscript: true,
	atom.Template: true, atom.Iframe: true, atom.Object: true, atom.Svg: true, atom.Math: true, atom.Select: true,
}

// blockElems start a new paragraph.
var blockElems = map[atom.Atom]bool{
	atom.P: true, atom.Div: true, atom.Center: true, atom.Section: true, atom.Article: true, atom.Header: true,
	atom.Footer: true, atom.Main: true, atom.Nav: true, atom.Aside: true, atom.Address: true, atom.Figure: true,
	atom.Figcaption: true, atom.Dl: true, atom.Dt: true, atom.Dd: true, atom.Form: true, atom.Fieldset: true,
	atom.Legend: true, atom.Details: true, atom.Summary: true, atom.Body: true, atom.Html: true, atom.Caption: true,
	atom.Li: true, atom.Tr: true, atom.Td: true, atom.Th: true, atom.Thead: true, atom.Tbody: true, atom.Tfoot: true,
}

var headingSizes = map[atom.Atom]float64{atom.H1: 18, atom.H2: 15, atom.H3: 13, atom.H4: 11.5, atom.H5: 10.5, atom.H6: 10}

func (b *hBuilder) walk(n *html.Node, st hStyle, depth int) {
	switch n.Type {
	case html.DocumentNode:
		b.children(n, st, depth)
		return
	case html.TextNode:
		b.text(n.Data, st)
		return
	case html.ElementNode:
	default:
		return
	}
	if skipped[n.DataAtom] || hidden(n) {
		return
	}
	st = styleFrom(n, st)
	if depth > maxHTMLDepth || b.nblocks > maxHTMLBlocks {
		// Too deep for structure: the text still shows, as inline runs.
		if n.DataAtom == atom.Br {
			b.para(st).inl = append(b.para(st).inl, hInline{br: true, st: st})
		}
		b.children(n, st, depth)
		return
	}
	switch n.DataAtom {
	case atom.Br:
		p := b.para(st)
		p.inl = append(p.inl, hInline{br: true, st: st})
	case atom.Img:
		b.image(n, st)
	case atom.Hr:
		b.endPara()
		b.space(1.5)
		b.add(&hBlock{kind: bRule})
		b.space(1.5)
	case atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6:
		b.endPara()
		// Bold and the heading's size came with styleFrom (a sheet may
		// have changed them).
		b.space(st.size * 0.3)
		b.children(n, st, depth)
		b.endPara()
		b.space(1.5)
	case atom.P:
		b.endPara()
		b.space(2.5)
		b.children(n, st, depth)
		b.endPara()
		b.space(2.5)
	case atom.Pre:
		b.endPara()
		b.space(2)
		st.pre = true
		b.children(n, st, depth)
		b.endPara()
		b.space(2)
	case atom.Blockquote:
		b.endPara()
		b.space(2)
		inner := b.sub(func() { b.children(n, st, depth) })
		b.add(&hBlock{kind: bQuote, inner: inner})
		b.space(2)
	case atom.Ul, atom.Ol:
		b.list(n, st, depth)
	case atom.Table:
		b.table(n, st, depth)
	default:
		if blockElems[n.DataAtom] {
			b.endPara()
			if n.DataAtom == atom.Dd {
				inner := b.sub(func() { b.children(n, st, depth) })
				b.add(&hBlock{kind: bQuote, inner: inner, ordered: true}) // indented, no bar
				return
			}
			b.children(n, st, depth)
			b.endPara()
			return
		}
		b.children(n, st, depth)
	}
}

// text adds a text node: white space collapsed, except in <pre>.
func (b *hBuilder) text(s string, st hStyle) {
	if st.pre {
		for i, line := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n") {
			p := b.para(st)
			if i > 0 {
				p.inl = append(p.inl, hInline{br: true, st: st})
			}
			if line != "" {
				p.inl = append(p.inl, hInline{text: strings.ReplaceAll(line, "\t", "    "), st: st})
			}
		}
		return
	}
	collapsed := strings.Join(strings.Fields(s), " ")
	if collapsed == "" {
		if b.cur != nil && s != "" {
			b.cur.inl = append(b.cur.inl, hInline{text: " ", st: st})
		}
		return
	}
	if s[0] == ' ' || s[0] == '\n' || s[0] == '\t' || s[0] == '\r' {
		collapsed = " " + collapsed
	}
	if last := s[len(s)-1]; last == ' ' || last == '\n' || last == '\t' || last == '\r' {
		collapsed += " "
	}
	p := b.para(st)
	p.inl = append(p.inl, hInline{text: collapsed, st: st})
}

func (b *hBuilder) list(n *html.Node, st hStyle, depth int) {
	b.endPara()
	b.space(1.5)
	blk := &hBlock{kind: bList, ordered: n.DataAtom == atom.Ol, start: 1}
	if v, err := strconv.Atoi(attr(n, "start")); err == nil && v > -1e6 && v < 1e6 {
		blk.start = v
	}
	var loose []*html.Node // text or inline elements directly in the list
	flush := func() {
		if len(loose) == 0 {
			return
		}
		item := b.sub(func() {
			for _, c := range loose {
				b.walk(c, st, depth+1)
			}
		})
		if len(item) > 0 {
			blk.items = append(blk.items, item)
		}
		loose = nil
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.ElementNode && c.DataAtom == atom.Li {
			flush()
			cst := styleFrom(c, st)
			blk.items = append(blk.items, b.sub(func() { b.children(c, cst, depth+1) }))
			continue
		}
		if c.Type == html.TextNode && strings.TrimSpace(c.Data) == "" {
			continue
		}
		loose = append(loose, c)
	}
	flush()
	if len(blk.items) > 0 {
		b.add(blk)
	}
	b.space(1.5)
}

func (b *hBuilder) table(n *html.Node, st hStyle, depth int) {
	b.endPara()
	t := &hTable{pad: 1.2}
	if v := attr(n, "border"); v != "" && v != "0" {
		t.border = true
	}
	if cssBorder(attr(n, "style")) {
		t.border = true
	}
	t.widthMM, t.widthPct = lengthAttr(n)
	t.center = strings.EqualFold(attr(n, "align"), "center") || strings.Contains(strings.ToLower(cssValue(attr(n, "style"), "margin")), "auto")
	if v, err := strconv.ParseFloat(attr(n, "cellpadding"), 64); err == nil && v >= 0 {
		t.pad = min(max(v*pxToMM, 0.4), 4)
	}
	var caption []*hBlock
	var headRows []bool // per row: in <thead>, or of <th> only
	var rows func(*html.Node, bool)
	rows = func(p *html.Node, inHead bool) {
		for c := p.FirstChild; c != nil; c = c.NextSibling {
			if c.Type != html.ElementNode || hidden(c) {
				continue
			}
			switch c.DataAtom {
			case atom.Thead, atom.Tbody, atom.Tfoot:
				rows(c, c.DataAtom == atom.Thead)
			case atom.Caption:
				cst := styleFrom(c, st)
				cst.align = "C"
				caption = append(caption, b.sub(func() { b.children(c, cst, depth+1) })...)
			case atom.Tr:
				if len(t.rows) >= maxTableRows {
					continue
				}
				rst := styleFrom(c, st)
				var row []*hCell
				allTH := true
				for cc := c.FirstChild; cc != nil; cc = cc.NextSibling {
					if cc.Type != html.ElementNode || (cc.DataAtom != atom.Td && cc.DataAtom != atom.Th) || hidden(cc) {
						continue
					}
					c := b.cell(cc, rst, depth)
					allTH = allTH && c.header
					b.ncells++
					if len(row) > 0 && (len(row) >= maxTableCols || b.ncells > maxHTMLCells) {
						// Beyond the columns we lay out: the content
						// joins the last cell, nothing is dropped.
						last := row[len(row)-1]
						last.blocks = append(last.blocks, c.blocks...)
						continue
					}
					row = append(row, c)
				}
				t.rows = append(t.rows, row)
				headRows = append(headRows, inHead || allTH && len(row) > 0)
			}
		}
	}
	rows(n, false)
	for t.head < len(headRows) && headRows[t.head] {
		t.head++
	}
	if len(caption) > 0 {
		for _, c := range caption {
			b.add(c)
		}
	}
	if len(t.rows) > 0 {
		b.space(1)
		b.add(&hBlock{kind: bTable, table: t})
		b.space(1)
	}
}

func (b *hBuilder) cell(n *html.Node, st hStyle, depth int) *hCell {
	c := &hCell{colspan: 1, rowspan: 1, header: n.DataAtom == atom.Th, valign: "M"}
	if v, err := strconv.Atoi(attr(n, "colspan")); err == nil && v > 1 {
		c.colspan = min(v, maxTableCols)
	}
	if v, err := strconv.Atoi(attr(n, "rowspan")); err == nil && v > 1 {
		c.rowspan = min(v, maxRowSpan)
	}
	if c.header {
		st.bold = true
		if st.align == "" {
			st.align = "C"
		}
	}
	st = styleFrom(n, st)
	switch strings.ToLower(attr(n, "valign")) {
	case "top":
		c.valign = "T"
	case "bottom":
		c.valign = "B"
	}
	if col, ok := parseColor(attr(n, "bgcolor")); ok {
		c.bg = &col
	} else if col, ok := parseColor(cssValue(attr(n, "style"), "background-color")); ok {
		c.bg = &col
	}
	if c.bg != nil {
		// A newsletter's button: white text on a coloured cell.
		st.dark = c.bg[0]*299+c.bg[1]*587+c.bg[2]*114 < 128*1000
		if st.dark {
			st.color = [3]int{255, 255, 255}
		} else if tooLight(st.color) {
			st.color = [3]int{}
		}
	}
	c.widthMM, _ = lengthAttr(n)
	c.blocks = b.sub(func() { b.children(n, st, depth+1) })
	return c
}

// image adds an <img>: a cid: reference to an inline part is drawn;
// anything else (remote, data:, unknown part) shows its alt text and is
// never fetched.
func (b *hBuilder) image(n *html.Node, st hStyle) {
	src := strings.TrimSpace(attr(n, "src"))
	alt := strings.Join(strings.Fields(attr(n, "alt")), " ")
	if img := b.cidImage(src, n); img != nil {
		p := b.para(st)
		p.inl = append(p.inl, hInline{img: img, st: st})
		return
	}
	if alt == "" {
		return
	}
	st.grey = true
	p := b.para(st)
	p.inl = append(p.inl, hInline{text: "[" + alt + "]", st: st})
}

func (b *hBuilder) cidImage(src string, n *html.Node) *hImage {
	if len(src) < 5 || !strings.EqualFold(src[:4], "cid:") {
		return nil
	}
	cid, err := url.PathUnescape(src[4:])
	if err != nil {
		cid = src[4:]
	}
	a := b.cids[strings.ToLower(strings.TrimSpace(cid))]
	if a == nil {
		return nil
	}
	img, ok := b.images[a]
	if !ok {
		if b.nimg >= maxHTMLImages {
			return nil
		}
		b.nimg++
		img = decodeInlineImage(a)
		b.images[a] = img
		if img != nil {
			b.used[a] = true
			img.name = fmt.Sprintf("cid%d", b.nimg)
		}
	}
	if img == nil {
		return nil
	}
	// The displayed size: width/height attributes in px, the other side
	// kept in proportion.
	out := hImage{w: img.w, h: img.h}
	w, _ := strconv.ParseFloat(strings.TrimSuffix(attr(n, "width"), "px"), 64)
	h, _ := strconv.ParseFloat(strings.TrimSuffix(attr(n, "height"), "px"), 64)
	switch {
	case w > 0 && h > 0:
		out.w, out.h = w, h
	case w > 0:
		out.w, out.h = w, img.h*w/img.w
	case h > 0:
		out.w, out.h = img.w*h/img.h, h
	}
	if out.w > 1e5 || out.h > 1e5 || out.w <= 0 || out.h <= 0 {
		out.w, out.h = img.w, img.h
	}
	// The copy shares the PNG and the name it is registered under once.
	return &hImage{png: img.png, w: out.w, h: out.h, name: img.name}
}

// decodeInlineImage inflates an attachment and decodes it (PNG, JPEG,
// GIF first frame) after checking its dimensions, then re-encodes it as
// an opaque PNG on white. nil when it cannot be drawn.
func decodeInlineImage(a *attachment) *hImage {
	if a.Size > maxImageBytes {
		return nil
	}
	zr, err := zlib.NewReader(bytes.NewReader(a.Deflated))
	if err != nil {
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(zr, maxImageBytes+1))
	if err != nil || len(data) > maxImageBytes {
		return nil
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil || cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width*cfg.Height > maxImagePixels {
		return nil
	}
	src, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil
	}
	r := src.Bounds()
	dst := image.NewRGBA(image.Rect(0, 0, r.Dx(), r.Dy()))
	draw.Draw(dst, dst.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	draw.Draw(dst, dst.Bounds(), src, r.Min, draw.Over)
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, dst); err != nil {
		return nil
	}
	return &hImage{png: buf.Bytes(), w: float64(r.Dx()), h: float64(r.Dy())}
}

// safeHref returns href when it is an http, https or mailto link, else
// "": javascript:, data:, file: and the rest are not links in the PDF.
func safeHref(href string) string {
	href = strings.TrimSpace(href)
	if href == "" || len(href) > 2048 {
		return ""
	}
	for _, r := range href {
		// Browsers drop tabs and line ends inside a scheme
		// ("java\tscript:"); a control character is never a link here.
		if r < 0x20 || r == 0x7f {
			return ""
		}
	}
	u, err := url.Parse(href)
	if err != nil {
		return ""
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		if u.Host == "" {
			return ""
		}
		return u.String()
	case "mailto":
		return u.String()
	}
	return ""
}

// styleFrom applies an element's own formatting to the inherited style.
func styleFrom(n *html.Node, st hStyle) hStyle {
	switch n.DataAtom {
	case atom.B, atom.Strong:
		st.bold = true
	case atom.I, atom.Em, atom.Cite, atom.Var, atom.Dfn:
		st.italic = true
	case atom.U, atom.Ins:
		st.underline = true
	case atom.Small:
		st.size *= 0.85
	case atom.Big:
		st.size *= 1.2
	case atom.Sub, atom.Sup:
		st.size *= 0.75
	case atom.Center:
		st.align = "C"
	case atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6:
		st.bold, st.size = true, headingSizes[n.DataAtom]
	case atom.A:
		if h := safeHref(attr(n, "href")); h != "" {
			st.href, st.underline, st.color = h, true, [3]int{11, 92, 173}
			if st.dark {
				st.color = [3]int{255, 255, 255}
			}
		}
	}
	st.size = min(max(st.size, 5), 36)
	if n.DataAtom == atom.Table || n.DataAtom == atom.Img {
		// align on a table places the table (centred by the layout
		// when narrower than the page), on an image floats it: not the
		// alignment of the text inside.
		return styleCSS(n, st)
	}
	switch strings.ToLower(attr(n, "align")) {
	case "center", "middle":
		st.align = "C"
	case "right":
		st.align = "R"
	case "left":
		st.align = ""
	}
	return styleCSS(n, st)
}

// styleCSS applies the inline style attribute's text properties.
func styleCSS(n *html.Node, st hStyle) hStyle {
	css := attr(n, "style")
	if css == "" {
		return st
	}
	switch strings.ToLower(cssValue(css, "text-align")) {
	case "center":
		st.align = "C"
	case "right":
		st.align = "R"
	case "left":
		st.align = ""
	}
	switch v := strings.ToLower(cssValue(css, "font-weight")); v {
	case "bold", "bolder", "600", "700", "800", "900":
		st.bold = true
	case "normal", "lighter", "100", "200", "300", "400":
		st.bold = false
	}
	switch strings.ToLower(cssValue(css, "font-style")) {
	case "italic", "oblique":
		st.italic = true
	case "normal":
		st.italic = false
	}
	switch td := strings.ToLower(cssValue(css, "text-decoration")); {
	case strings.Contains(td, "underline"):
		st.underline = true
	case strings.Contains(td, "none"):
		st.underline = false
	}
	if size, ok := cssFontSize(cssValue(css, "font-size"), st.size); ok {
		st.size = min(max(size, 5), 36)
	}
	if c, ok := parseColor(cssValue(css, "color")); ok && (st.href == "" || st.dark) && tooLight(c) == st.dark {
		// Text keeps its colour where it stays readable: dark on
		// white paper, light on a dark cell.
		st.color = c
	}
	return st
}

// cssFontSize reads a font-size (px, pt, em, rem, %, keywords) in pt,
// relative sizes to the inherited size.
func cssFontSize(v string, inherited float64) (float64, bool) {
	v = strings.ToLower(strings.TrimSpace(v))
	keywords := map[string]float64{"xx-small": 7, "x-small": 7.5, "small": 10, "medium": 12, "large": 13.5,
		"x-large": 18, "xx-large": 24, "smaller": inherited / 1.2, "larger": inherited * 1.2}
	if k, ok := keywords[v]; ok {
		return k, true
	}
	for _, u := range []struct {
		suffix string
		factor float64
	}{{"px", 0.75}, {"pt", 1}, {"rem", 12}, {"em", inherited}, {"%", inherited / 100}} {
		if num, ok := strings.CutSuffix(v, u.suffix); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || f <= 0 || f > 1000 {
				return 0, false
			}
			return f * u.factor, true
		}
	}
	return 0, false
}

// hidden: display:none, visibility:hidden or the hidden attribute
// (newsletters hide a preheader text that no reader shows).
func hidden(n *html.Node) bool {
	for _, a := range n.Attr {
		if a.Key == "hidden" {
			return true
		}
	}
	css := strings.ToLower(attr(n, "style"))
	if css == "" {
		return false
	}
	return strings.ReplaceAll(cssValue(css, "display"), " ", "") == "none" || cssValue(css, "visibility") == "hidden" ||
		strings.ReplaceAll(cssValue(css, "max-height"), " ", "") == "0" && strings.Contains(css, "overflow:hidden")
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return a.Val
		}
	}
	return ""
}

// cssValue returns the value of property in an inline style attribute.
func cssValue(css, property string) string {
	var v string
	for decl := range strings.SplitSeq(css, ";") {
		k, val, ok := strings.Cut(decl, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), property) {
			v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(val), "!important"))
		}
	}
	return strings.TrimSpace(v)
}

// lengthAttr reads width="600", width="50%" or style="width: 600px" into
// mm (px at 96 dpi) or a percentage.
func lengthAttr(n *html.Node) (mm, pct float64) {
	v := attr(n, "width")
	if css := cssValue(attr(n, "style"), "width"); css != "" {
		v = css
	}
	v = strings.TrimSpace(strings.ToLower(v))
	if p, ok := strings.CutSuffix(v, "%"); ok {
		if f, err := strconv.ParseFloat(strings.TrimSpace(p), 64); err == nil && f > 0 && f <= 100 {
			return 0, f
		}
		return 0, 0
	}
	v = strings.TrimSuffix(v, "px")
	if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f > 0 && f < 1e5 {
		return f * pxToMM, 0
	}
	return 0, 0
}

// cssBorder: a border, border-width or border-style that draws a line
// (border-collapse, border-spacing and the like say nothing about that).
func cssBorder(style string) bool {
	if style == "" {
		return false
	}
	for _, p := range []string{"border", "border-width", "border-style"} {
		v := strings.ToLower(cssValue(style, p))
		if v == "" {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 || f[0] == "0" || f[0] == "0px" || f[0] == "none" || f[0] == "hidden" || f[0] == "initial" || f[0] == "inherit" {
			return false
		}
		return true
	}
	return false
}

// parseColor reads #rgb, #rrggbb, rgb(r, g, b) and a few names.
func parseColor(s string) ([3]int, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	switch s {
	case "black":
		return [3]int{0, 0, 0}, true
	case "white":
		return [3]int{255, 255, 255}, true
	case "red":
		return [3]int{200, 0, 0}, true
	case "gray", "grey":
		return [3]int{128, 128, 128}, true
	}
	if inner, ok := strings.CutPrefix(s, "rgb("); ok {
		return parseRGB(inner)
	}
	if inner, ok := strings.CutPrefix(s, "rgba("); ok {
		return parseRGB(inner)
	}
	s = strings.TrimPrefix(s, "#")
	if len(s) == 3 {
		s = string([]byte{s[0], s[0], s[1], s[1], s[2], s[2]})
	}
	if len(s) != 6 {
		return [3]int{}, false
	}
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		return [3]int{}, false
	}
	return [3]int{int(v >> 16 & 0xff), int(v >> 8 & 0xff), int(v & 0xff)}, true
}

// parseRGB reads "r, g, b)" or "r g b / a)" (integers 0-255); the alpha
// is ignored (printed on white).
func parseRGB(s string) ([3]int, bool) {
	s, ok := strings.CutSuffix(strings.TrimSpace(s), ")")
	if !ok {
		return [3]int{}, false
	}
	s, _, _ = strings.Cut(s, "/")
	f := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
	if len(f) != 3 && len(f) != 4 {
		return [3]int{}, false
	}
	var c [3]int
	for i := range 3 {
		v, err := strconv.Atoi(f[i])
		if err != nil || v < 0 || v > 255 {
			return [3]int{}, false
		}
		c[i] = v
	}
	return c, true
}

// tooLight: text colours that would vanish on white paper (white text on
// a coloured cell background is common in newsletters) print dark.
func tooLight(c [3]int) bool { return c[0]+c[1]+c[2] > 3*200 }

// htmlPlainText is the document's visible text: a line break for every
// block and <br>, cells apart by two spaces, list items bulleted; what
// the layout skips (head, script, hidden elements) is skipped here too.
func htmlPlainText(root *html.Node) string {
	var b strings.Builder
	var walk func(n *html.Node, depth int)
	walk = func(n *html.Node, depth int) {
		if depth > 1024 || b.Len() > MaxBodyText { // html.Parse keeps 512 open elements at most
			return
		}
		switch n.Type {
		case html.TextNode:
			b.WriteString(strings.Join(strings.Fields(n.Data), " "))
			if t := n.Data; t != "" && (t[len(t)-1] == ' ' || t[len(t)-1] == '\n') {
				b.WriteByte(' ')
			}
			return
		case html.ElementNode:
			if flatSkipped[n.DataAtom] || hidden(n) {
				return
			}
			switch {
			case n.DataAtom == atom.Br:
				b.WriteByte('\n')
			case n.DataAtom == atom.Td || n.DataAtom == atom.Th:
				b.WriteString("  ")
			case n.DataAtom == atom.Li:
				b.WriteString("\n• ")
			case blockElems[n.DataAtom]:
				b.WriteByte('\n')
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, depth+1)
		}
		if n.Type == html.ElementNode && blockElems[n.DataAtom] && n.DataAtom != atom.Td && n.DataAtom != atom.Th && n.DataAtom != atom.Li {
			b.WriteByte('\n')
		}
	}
	walk(root, 0)
	lines := strings.Split(b.String(), "\n")
	out := lines[:0]
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" && (len(out) == 0 || out[len(out)-1] == "") {
			continue // one empty line between blocks at most
		}
		out = append(out, l)
	}
	return strings.TrimSpace(strings.Join(out, "\n"))
}
