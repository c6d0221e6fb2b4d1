package pdfmail

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// styledNewsletterHTML is a newsletter whose look comes from its <style>
// block, as Mailchimp and Outlook send them: a preheader hidden by a
// class, prices right-aligned by td.price, a red button cell by .button,
// a total row in bold, and mobile and dark-mode @media rules that must
// not apply on paper. remote is a server that counts requests: neither
// the <link> sheet nor url(...) may be fetched.
func styledNewsletterHTML(remote string) string {
	return `<!DOCTYPE html><html><head>
<link rel="stylesheet" href="` + remote + `/remote.css">
<style type="text/css">
@import url(` + remote + `/imported.css);
body{margin:0;padding:0}
.preheader{display:none!important;visibility:hidden;mso-hide:all;font-size:1px;max-height:0;overflow:hidden}
h1{text-align:center;font-size:32px}
.intro{font-style:italic}
table.prices{border:1px solid #999999;border-collapse:collapse;width:400px}
td.price{text-align:right}
.total td{font-weight:bold}
.button{background:#c0392b url(` + remote + `/button.png) no-repeat;text-align:center}
.button a{color:#ffffff;text-decoration:none;font-weight:bold}
.hero{background-color:#0b5cad}
</style>
<style>
@media only screen and (max-width:600px){
  .desktop-only{display:none!important}
  td.price{text-align:left!important}
}
@media (prefers-color-scheme: dark){ .hero{background-color:#000000} h1{display:none} }
</style></head>
<body><div class="preheader">PREHEADER teaser text nobody should see</div>
<table width="600" align="center" cellpadding="0"><tr><td>
<table width="100%" cellpadding="12"><tr><td class="hero"><b>SHOP NEWS</b></td></tr></table>
<h1>Autumn prices</h1>
<p class="intro">Our new prices, valid from Monday.</p>
<table class="prices" cellpadding="4">
<thead><tr><th>Item</th><th>Price</th></tr></thead>
<tbody><tr><td>Apples</td><td class="price">3,50</td></tr>
<tr><td>Pears of the season</td><td class="price">12,00</td></tr>
<tr class="total"><td>Total</td><td class="price">15,50</td></tr></tbody>
</table>
<p class="desktop-only">Shown on desktop and on paper.</p>
<table align="center" cellpadding="10"><tr><td class="button"><a href="https://shop.example/buy">Order now</a></td></tr></table>
</td></tr></table></body></html>`
}

// TestHTMLStyleSheetNewsletter: the look a <style> block gives is the
// PDF's, read back by poppler (no preheader, reading order, prices
// right-aligned in one column, the mobile rule not applied) and MuPDF
// (the button's red cell and the hero's blue cell drawn; golden page);
// nothing is fetched.
func TestHTMLStyleSheetNewsletter(t *testing.T) {
	testpeer.Require(t, "pdftotext")
	testpeer.Require(t, "mutool")
	var fetched atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()

	msg := relatedMessage("Autumn prices", styledNewsletterHTML(srv.URL))
	var out bytes.Buffer
	info, err := (&Sealer{}).Seal(context.Background(), bytes.NewReader(msg), []byte(testPassword), &out)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Warnings) != 0 {
		t.Errorf("warnings for a plain newsletter: %q", info.Warnings)
	}
	pdf := t.TempDir() + "/m.pdf"
	if err := os.WriteFile(pdf, extractPDF(t, out.Bytes(), (&Sealer{}).attachmentName()), 0o600); err != nil {
		t.Fatal(err)
	}

	text := testpeer.PDFText(t, pdf, testPassword, false)
	if strings.Contains(text, "PREHEADER") || strings.Contains(text, "teaser") {
		t.Errorf("the hidden preheader is in the PDF:\n%s", text)
	}
	order := []string{"SHOP NEWS", "Autumn prices", "Our new prices", "Item", "Apples", "Pears of the season", "Total", "15,50", "Shown on desktop", "Order now"}
	rest := text[strings.Index(text, "Attachments:"):] // the body, after the header block
	for _, w := range order {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Errorf("%q missing or out of order\n%s", w, text)
			continue
		}
		rest = rest[i+len(w):]
	}

	// td.price{text-align:right}: the prices end at one x (left
	// aligned, "3,50" would end well before "12,00"); table.prices
	// {width:400px}: from "Apples" to the prices' end is the table's
	// width less the padding (auto width would hug the content).
	box := wordBoxes(t, pdf)
	x50, x12, x15, apples := box["3,50"], box["12,00"], box["15,50"], box["Apples"]
	if x50[1] == 0 || x12[1] == 0 || x15[1] == 0 || apples[1] == 0 {
		t.Fatalf("words not found: %v", box)
	}
	if abs(x50[1]-x12[1]) > 0.5 || abs(x15[1]-x12[1]) > 0.5 {
		t.Errorf("prices not right-aligned: ends %.1f %.1f %.1f pt", x50[1], x12[1], x15[1])
	}
	if w := x12[1] - apples[0]; w < 280 || w > 300 {
		t.Errorf("price table %.1f pt wide inside, want 400 px (300 pt) less padding", w)
	}
	// h1{font-size:32px}: 24 pt, not the default 18 pt, against the
	// body's text.
	if ratio := box["Autumn"][2] / box["Our"][2]; abs(ratio-24.0/bodySize) > 0.1*24/bodySize {
		t.Errorf("heading %.2f times the body text, want %.2f (24 pt)", ratio, 24.0/bodySize)
	}
	if n := fetched.Load(); n != 0 {
		t.Errorf("the remote style sheet or url() was fetched %d times", n)
	}

	// The coloured cells come from the sheet: the button red (#c0392b)
	// and the hero blue (#0b5cad) are on the page.
	dir := t.TempDir()
	if d := os.Getenv("SEALGATE_HTML_PNG_DIR"); d != "" {
		dir = d
	}
	pngPath, warn := testpeer.MuPDFRenderPNG(t, pdf, testPassword, 1, 60, dir)
	if warn != "" {
		t.Errorf("mutool draw complains: %s", warn)
	}
	red, blue := countColour(t, pngPath, [3]int{0xc0, 0x39, 0x2b}), countColour(t, pngPath, [3]int{0x0b, 0x5c, 0xad})
	if red < 200 || blue < 200 {
		t.Errorf("sheet colours not drawn: %d red, %d blue samples", red, blue)
	}
	goldenImage(t, "html-style.p1.png", pngPath)
}

func absInt(v int) int { return max(v, -v) }

func abs(v float64) float64 { return max(v, -v) }

var bboxWord = regexp.MustCompile(`<word xMin="([0-9.]+)" yMin="([0-9.]+)" xMax="([0-9.]+)" yMax="([0-9.]+)">([^<]*)</word>`)

// wordBoxes is each word's last [xMin, xMax, height] on page 1 in
// points, from pdftotext -bbox (poppler).
func wordBoxes(t *testing.T, pdf string) map[string][3]float64 {
	t.Helper()
	out := testpeer.MustRun(t, nil, "pdftotext", "-bbox", "-f", "1", "-l", "1", "-upw", testPassword, pdf, "-")
	boxes := map[string][3]float64{}
	for _, m := range bboxWord.FindAllStringSubmatch(string(out), -1) {
		var v [4]float64
		for i := range v {
			v[i], _ = strconv.ParseFloat(m[i+1], 64)
		}
		boxes[m[5]] = [3]float64{v[0], v[2], v[3] - v[1]}
	}
	return boxes
}

// countColour counts the pixels of the PNG within 12 of c in each channel.
func countColour(t *testing.T, path string, c [3]int) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if absInt(int(r>>8)-c[0]) <= 12 && absInt(int(g>>8)-c[1]) <= 12 && absInt(int(bl>>8)-c[2]) <= 12 {
				n++
			}
		}
	}
	return n
}

// longTableHTML is a table of 120 rows under a two-row header: three
// pages at least.
func longTableHTML(thead bool) string {
	var b strings.Builder
	b.WriteString(`<p>Price list</p><table border="1" cellpadding="3">`)
	if thead {
		b.WriteString(`<thead><tr><td colspan="3">Price list, continued</td></tr><tr><td>Article</td><td>Stock</td><td>Unit price</td></tr></thead><tbody>`)
	} else {
		b.WriteString(`<tr><th colspan="3">Price list, continued</th></tr><tr><th>Article</th><th>Stock</th><th>Unit price</th></tr>`)
	}
	for i := range 120 {
		fmt.Fprintf(&b, `<tr><td>Article number %03d</td><td>%d</td><td align="right">%d,00</td></tr>`, i, i%7, 10+i)
	}
	if thead {
		b.WriteString(`</tbody>`)
	}
	b.WriteString(`</table><p>End of list</p>`)
	return b.String()
}

// TestHTMLTableHeaderRepeats: a table over three pages shows its header
// rows at the top of every page (poppler, page by page), whether they
// are a <thead> or leading rows of <th>; every row is there once.
func TestHTMLTableHeaderRepeats(t *testing.T) {
	testpeer.Require(t, "pdftotext")
	for _, thead := range []bool{true, false} {
		t.Run(fmt.Sprintf("thead=%t", thead), func(t *testing.T) {
			_, pdf := seal(t, &Sealer{}, relatedMessage("Prices", longTableHTML(thead)), testPassword)
			pages := testpeer.PDFPages(t, pdf, testPassword)
			if pages < 3 {
				t.Fatalf("%d pages, want the table over 3 at least", pages)
			}
			all := ""
			// The header is not left alone at the foot of page 1 (38 lines
			// before the table leave room for the header only).
			top := "<p>" + strings.Repeat("Filler line<br>", 38) + "</p>"
			_, orphan := seal(t, &Sealer{}, relatedMessage("Prices", top+longTableHTML(thead)), testPassword)
			if p1 := testpeer.PDFPageText(t, orphan, testPassword, 1); strings.Contains(p1, "Unit price") && !strings.Contains(p1, "Article number 000") {
				t.Errorf("page 1 ends with the table's header and no row:\n%s", p1)
			}
			for p := 1; p <= pages; p++ {
				text := testpeer.PDFPageText(t, pdf, testPassword, p)
				all += text
				if !strings.Contains(text, "Article number") {
					continue // a last page with the closing paragraph only
				}
				h, first := strings.Index(text, "Unit price"), strings.Index(text, "Article number")
				if h < 0 || h > first {
					t.Errorf("page %d: no header above the rows\n%s", p, text)
				}
				if !strings.Contains(text, "Price list, continued") {
					t.Errorf("page %d: the header's first row is missing", p)
				}
			}
			for i := range 120 {
				if n := strings.Count(all, fmt.Sprintf("Article number %03d", i)); n != 1 {
					t.Errorf("row %d appears %d times", i, n)
				}
			}
		})
	}
}

// TestHTMLStyleWarnings: a hostile sheet still gives the PDF, with the
// text, and a warning in the seal's result (the event).
func TestHTMLStyleWarnings(t *testing.T) {
	doc := "<style>" + strings.Repeat(".a .b .c .d .e, p{color:red}", 30000) + "</style><p class=a>still here</p>"
	var out bytes.Buffer
	info, err := (&Sealer{}).Seal(context.Background(), bytes.NewReader(relatedMessage("hostile", doc)), []byte(testPassword), &out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(info.Warnings, "|"), "HTML style") {
		t.Errorf("warnings %q", info.Warnings)
	}
}

// BenchmarkSealHTMLStyled: the ten-page newsletter of
// BenchmarkSealHTMLNewsletter laid out by a style-heavy sheet: 600 rules
// (classes, descendants, attributes, :not(), @media blocks) as template
// builders emit them, and classes on every element.
func BenchmarkSealHTMLStyled(b *testing.B) {
	builtinChain()
	msg := styledTenPageNewsletter(b)
	benchSeal(b, msg, len(msg))
}

func styledTenPageNewsletter(b testing.TB) []byte {
	var sheet strings.Builder
	for i := range 150 {
		fmt.Fprintf(&sheet, ".mc%d td.cell%d{text-align:right;color:#333333}\n", i, i)
		fmt.Fprintf(&sheet, "#block%d p:not(.intro) > a[href^=\"https\"]{font-weight:bold}\n", i)
		fmt.Fprintf(&sheet, "table.t%d tr:nth-child(even) td{background-color:#f2f2f2}\n", i)
		fmt.Fprintf(&sheet, "@media only screen and (max-width:600px){.mc%d{display:none!important}}\n", i)
	}
	sheet.WriteString(`.preheader{display:none!important} h2{text-align:center} .price{text-align:right} .lead{font-style:italic}
table.items{border:1px solid #999999;width:500px} .items th{background-color:#dddddd}`)
	var doc strings.Builder
	doc.WriteString(`<html><head><style>` + sheet.String() + `</style></head><body><div class="preheader">preheader</div>`)
	doc.WriteString(`<table width="600" align="center" class="mc1"><tr><td class="cell1">`)
	var parts []inlinePart
	for i := range 5 {
		parts = append(parts, inlinePart{fmt.Sprintf("img%d@x", i), "image/png", testPNG(b, 600, 200)})
	}
	for page := range 10 {
		fmt.Fprintf(&doc, `<div id="block%d" class="mc%d"><h2>Section %d</h2>`, page, page, page+1)
		if page%2 == 0 {
			fmt.Fprintf(&doc, `<p><img src="cid:img%d@x" width="600"></p>`, page/2)
		}
		for range 13 {
			doc.WriteString(`<p class="lead">Dear customer, this week <b>everything is cheaper</b> and <i>delivery is free</i>. ` +
				`Read <a href="https://shop.example/offer">all offers</a> on our site; prices include VAT and are valid while stocks last.</p>`)
		}
		fmt.Fprintf(&doc, `<table class="items t%d" cellpadding="4"><thead><tr><th>Item</th><th>Qty</th><th>Price</th></tr></thead>`, page)
		for r := range 4 {
			fmt.Fprintf(&doc, `<tr><td class="cell%d">Widget %d</td><td>%d</td><td class="price">%d,00</td></tr>`, r, r, r+1, 10*(r+1))
		}
		doc.WriteString(`<tr><td colspan="2">Total</td><td class="price">100,00</td></tr></table></div>`)
	}
	doc.WriteString(`</td></tr></table></body></html>`)
	return relatedMessage("Bench", doc.String(), parts...)
}
