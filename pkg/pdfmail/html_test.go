package pdfmail

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// testPNG is a w×h PNG: a blue frame around an orange field.
func testPNG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.RGBA{240, 140, 20, 255}
			if x < 6 || y < 6 || x >= w-6 || y >= h-6 {
				c = color.RGBA{20, 60, 200, 255}
			}
			img.Set(x, y, c)
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// relatedMessage is an HTML mail with inline parts (multipart/related),
// as newsletters are sent: each inline part is "cid content-type data".
type inlinePart struct {
	cid, contentType string
	data             []byte
}

func relatedMessage(subject, htmlBody string, inline ...inlinePart) []byte {
	var b bytes.Buffer
	b.WriteString("From: Shop <news@shop.example>\r\nTo: zoe@partner.example\r\nDate: Mon, 02 Mar 2026 10:15:00 +0100\r\n")
	b.WriteString("Subject: " + subject + "\r\nMIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: multipart/related; boundary=\"=_rel\"\r\n\r\n")
	b.WriteString("--=_rel\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	writeBase64(&b, []byte(htmlBody))
	for _, p := range inline {
		fmt.Fprintf(&b, "--=_rel\r\nContent-Type: %s\r\nContent-ID: <%s>\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\n", p.contentType, p.cid)
		writeBase64(&b, p.data)
	}
	b.WriteString("--=_rel--\r\n")
	return b.Bytes()
}

// newsletterHTML has what newsletters and invoices use: a 600 px layout
// table, a heading, bold and italic, a list, a quote, a bordered table
// with a rowspan and a colspan whose total belongs under the price
// column, an inline cid: image, a link, a javascript: link and a remote
// image (remote is the URL of a server that counts requests).
func newsletterHTML(remote string) string {
	return `<!DOCTYPE html><html><head><title>ignored title</title>
<style>.x{color:red}</style><script>document.write("SCRIPTRAN")</script></head>
<body><div style="display:none">hidden preheader text</div>
<table width="600" cellpadding="0" cellspacing="0" align="center"><tr><td>
<p><img src="cid:logo@shop.example" width="600" height="120" alt="Shop logo"></p>
<h1>Spring offers</h1>
<p>Dear customer, this week <b>everything is cheaper</b> and <i>delivery is free</i>.</p>
<ul><li>First point</li><li>Second point</li></ul>
<blockquote>Quoted words from an earlier mail.</blockquote>
<table border="1" cellpadding="4">
<tr><th>Item</th><th>Qty</th><th>Price</th></tr>
<tr><td rowspan="2">Widgets</td><td>2</td><td align="right">10,00</td></tr>
<tr><td>3</td><td align="right">15,00</td></tr>
<tr><td colspan="2"><b>Total</b></td><td align="right"><b>25,00</b></td></tr>
</table>
<p>See <a href="https://shop.example/offer?id=7">all offers</a> or <a href="javascript:alert(document.cookie)">click here</a>
or <a href="  JaVaScRiPt:alert(2)">here</a>.</p>
<table cellpadding="8" align="center"><tr><td bgcolor="#0b5cad" align="center"><a href="https://shop.example/buy" style="color:#ffffff;text-decoration:none"><b>Buy now</b></a></td></tr></table>
<p><img src="` + remote + `/tracker.png" alt="remote picture"></p>
</td></tr></table></body></html>`
}

// TestHTMLNewsletterLaidOut: the newsletter read back by poppler (text in
// reading order, table cells in their columns), qpdf (link annotations)
// and MuPDF (renders without complaint); the inline image is drawn and
// not an attachment, the HTML travels as message.html, the remote image
// is never fetched, the script never runs, javascript: is not a link.
func TestHTMLNewsletterLaidOut(t *testing.T) {
	testpeer.Require(t, "pdftotext")
	testpeer.Require(t, "qpdf")
	testpeer.Require(t, "pdfdetach")
	var fetched atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()

	logo := testPNG(t, 600, 120)
	msg := relatedMessage("Spring offers", newsletterHTML(srv.URL), inlinePart{"logo@shop.example", "image/png", logo})
	_, pdf := seal(t, &Sealer{}, msg, testPassword)

	text := testpeer.PDFText(t, pdf, testPassword, false)
	for _, want := range []string{"Spring offers", "everything is cheaper", "delivery is free", "First point", "Second point",
		"Quoted words from an earlier mail.", "Widgets", "Total", "25,00", "all offers", "Buy now", "[remote picture]"} {
		if !strings.Contains(text, want) {
			t.Errorf("pdftotext lacks %q\n--- text ---\n%s", want, text)
		}
	}
	for _, bad := range []string{"hidden preheader", "SCRIPTRAN", "document.write", "color:red", "ignored title", "*everything", "<b>"} {
		if strings.Contains(text, bad) {
			t.Errorf("pdftotext shows %q", bad)
		}
	}
	// Reading order: heading, paragraph, list, quote, table, links.
	order := []string{"Spring offers", "Dear customer", "First point", "Quoted words", "Item", "Widgets", "Total", "all offers"}
	last := -1
	for _, w := range order {
		i := strings.Index(text, w)
		if i < last {
			t.Errorf("%q out of order\n%s", w, text)
		}
		last = i
	}

	// Table cells in their columns: with -layout, every price and the
	// total end in the same column (right-aligned cells), right of the
	// quantities; the total is on no line with a quantity.
	layout := testpeer.PDFText(t, pdf, testPassword, true)
	col := map[string]int{}
	for _, line := range strings.Split(layout, "\n") {
		for _, cell := range []string{"10,00", "15,00", "25,00", "Price"} {
			if i := strings.Index(line, cell); i >= 0 {
				col[cell] = i + len(cell) // right-aligned: the ends line up
			}
		}
		if strings.Contains(line, "Total") && (strings.Contains(line, " 2 ") || strings.Contains(line, " 3 ")) {
			t.Errorf("total line has a quantity: %q", line)
		}
		if i := strings.Index(line, "Widgets"); i >= 0 {
			if j := strings.Index(line, "10,00"); j >= 0 && j < i {
				t.Errorf("price left of the item: %q", line)
			}
		}
	}
	near := func(a, b int) bool { return a-b <= 1 && b-a <= 1 } // bold digits are wider: one column of slack
	if len(col) != 4 || !near(col["10,00"], col["25,00"]) || !near(col["15,00"], col["25,00"]) {
		t.Errorf("prices and total not in one column: %v\n--- layout ---\n%s", col, layout)
	}

	links := testpeer.PDFFirstPageLinks(t, pdf, testPassword)
	for _, want := range []string{"https://shop.example/offer?id=7", "https://shop.example/buy"} {
		if !slices.Contains(links, want) {
			t.Errorf("no link annotation for %s: %v", want, links)
		}
	}
	for _, l := range links {
		if strings.Contains(strings.ToLower(l), "javascript") || strings.Contains(l, "tracker") {
			t.Errorf("link annotation %q", l)
		}
	}
	raw, _ := os.ReadFile(pdf)
	if bytes.Contains(bytes.ToLower(raw), []byte("javascript")) {
		t.Error("the PDF contains a JavaScript action")
	}

	names := testpeer.PDFAttachmentNames(t, pdf, testPassword)
	if !slices.Contains(names, "message.html") {
		t.Errorf("HTML not embedded as message.html: %v", names)
	}
	for _, n := range names {
		if strings.Contains(n, "logo") {
			t.Errorf("drawn inline image still an attachment: %v", names)
		}
	}
	if got := testpeer.PDFAttachments(t, pdf, testPassword)["message.html"]; !bytes.Equal(got, []byte(newsletterHTML(srv.URL))) {
		t.Errorf("message.html is not the HTML as sent (%d bytes)", len(got))
	}
	if n := fetched.Load(); n != 0 {
		t.Errorf("the remote image was fetched %d times", n)
	}

	// MuPDF draws it without complaint; the page is kept for a look.
	dir := t.TempDir()
	if out := os.Getenv("SEALGATE_HTML_PNG_DIR"); out != "" {
		dir = out
	}
	pngPath, warn := testpeer.MuPDFRenderPNG(t, pdf, testPassword, 1, 80, dir)
	if warn != "" {
		t.Errorf("mutool draw complains: %s", warn)
	}
	if st, err := os.Stat(pngPath); err != nil || st.Size() < 1000 {
		t.Errorf("no page image: %v", err)
	}
	// The orange of the logo is on the page: the image was drawn.
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	orange := 0
	b := page.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := page.At(x, y).RGBA()
			if r>>8 > 200 && g>>8 > 100 && g>>8 < 180 && bl>>8 < 60 {
				orange++
			}
		}
	}
	if orange < 500 {
		t.Errorf("the inline image is not on page 1 (%d orange samples)", orange)
	}

	// The page against its golden image (looked at before it was
	// committed), with a tolerance for anti-aliasing.
	small, _ := testpeer.MuPDFRenderPNG(t, pdf, testPassword, 1, 50, t.TempDir())
	goldenImage(t, "html-newsletter.p1.png", small)
}

// TestHTMLImageFormats: PNG, JPEG and a GIF's first frame are drawn (not
// listed); a part that is no image, a truncated one and one that claims
// 100000×100000 pixels (a decompression bomb) stay attachments, and the
// PDF is made all the same.
func TestHTMLImageFormats(t *testing.T) {
	testpeer.Require(t, "pdfdetach")
	pal := image.NewPaletted(image.Rect(0, 0, 40, 20), []color.Color{color.White, color.RGBA{200, 0, 0, 255}})
	var g bytes.Buffer
	if err := gif.EncodeAll(&g, &gif.GIF{Image: []*image.Paletted{pal, pal}, Delay: []int{10, 10}}); err != nil {
		t.Fatal(err)
	}
	var jpg bytes.Buffer
	if err := jpeg.Encode(&jpg, image.NewGray(image.Rect(0, 0, 30, 20)), nil); err != nil {
		t.Fatal(err)
	}
	bomb := testPNG(t, 8, 8)
	// Rewrite the IHDR size to 100000×100000 (the CRC is then wrong
	// too: either way the decoder must refuse before allocating).
	copy(bomb[16:24], []byte{0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0})
	tests := []struct {
		name     string
		part     inlinePart
		attached bool
	}{
		{"png", inlinePart{"a", "image/png", testPNG(t, 30, 20)}, false},
		{"gif first frame", inlinePart{"a", "image/gif", g.Bytes()}, false},
		{"jpeg", inlinePart{"a", "image/jpeg", jpg.Bytes()}, false},
		{"not an image", inlinePart{"a", "image/png", []byte("<script>alert(1)</script>")}, true},
		{"truncated", inlinePart{"a", "image/png", testPNG(t, 30, 20)[:40]}, true},
		{"bomb", inlinePart{"a", "image/png", bomb}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := relatedMessage("img", `<p>before <img src="cid:a"> after</p>`, tc.part)
			_, pdf := seal(t, &Sealer{}, msg, testPassword)
			names := testpeer.PDFAttachmentNames(t, pdf, testPassword)
			got := slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "a.") })
			if got != tc.attached {
				t.Errorf("attachments %v: image part listed = %t, want %t", names, got, tc.attached)
			}
		})
	}
}

// TestSafeHref plays the attacker with link targets: only http(s) with a
// host and mailto become links.
func TestSafeHref(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://shop.example/a?b=1", "https://shop.example/a?b=1"},
		{"HTTP://shop.example", "http://shop.example"},
		{"mailto:info@shop.example", "mailto:info@shop.example"},
		{"  https://shop.example/  ", "https://shop.example/"},
		{"javascript:alert(1)", ""},
		{"JavaScript:alert(1)", ""},
		{" javascript:alert(1)", ""},
		{"java\tscript:alert(1)", ""},
		{"java\nscript:alert(1)", ""},
		{"vbscript:msgbox", ""},
		{"data:text/html,<script>alert(1)</script>", ""},
		{"file:///etc/passwd", ""},
		{"//evil.example/x", ""},
		{"/relative", ""},
		{"https:///no-host", ""},
		{"launch:calc.exe", ""},
		{"https://x.example/" + strings.Repeat("a", 3000), ""},
	}
	for _, tc := range tests {
		if got := safeHref(tc.in); got != tc.want {
			t.Errorf("safeHref(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestHTMLHostileStructure: deep nesting, huge spans, thousands of cells
// and a table wider than any page still give a PDF with the text in it.
func TestHTMLHostileStructure(t *testing.T) {
	testpeer.Require(t, "pdftotext")
	wide := "<table border=1><tr>" + strings.Repeat("<td>cell</td>", 500) + "</tr></table>"
	tests := []struct{ name, html, want string }{
		{"deep nesting", strings.Repeat("<div><blockquote><ul><li>", 3000) + "deep text" + strings.Repeat("</li></ul></blockquote></div>", 3000), "deep text"},
		{"huge spans", `<table border=1><tr><td colspan="100000" rowspan="100000">spanned</td><td>next</td></tr><tr><td>below</td></tr></table>`, "spanned"},
		{"nested tables", strings.Repeat("<table><tr><td>", 60) + "inner cell" + strings.Repeat("</td></tr></table>", 60), "inner cell"},
		{"wide table", wide, "cell"},
		{"span bomb", "<table border=1>" + strings.Repeat("<tr>"+strings.Repeat(`<td colspan="64" rowspan="500">s</td>`, 4)+"</tr>", 300) + "<tr><td>after spans</td></tr></table>", "after spans"},
		{"many cells", strings.Repeat("<table><tr>"+strings.Repeat("<td>c</td>", 60)+"</tr></table>", 1000) + "<p>after cells</p>", "after cells"},
		{"long word", "<table border=1><tr><td>" + strings.Repeat("x", 5000) + "</td><td>right</td></tr></table>", "right"},
		{"tall image", `<p><img src="cid:a" width="1" height="99999">below the image</p>`, "below the image"},
		{"tall row", "<table border=1><tr><td>" + strings.Repeat("line<br>", 400) + "end of tall cell</td><td>b</td></tr></table>", "end of tall cell"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := relatedMessage("hostile", tc.html, inlinePart{"a", "image/png", testPNG(t, 10, 10)})
			_, pdf := seal(t, &Sealer{}, msg, testPassword)
			if text := testpeer.PDFText(t, pdf, testPassword, false); !strings.Contains(text, tc.want) {
				t.Errorf("text lacks %q", tc.want)
			}
			if tc.name == "tall image" {
				// Scaled to one page, not 26 metres of paper.
				if n := testpeer.PDFPages(t, pdf, testPassword); n > 2 {
					t.Errorf("%d pages", n)
				}
			}
		})
	}
}

// FuzzHTMLLayout feeds arbitrary HTML (with one inline image part) through
// the HTML layout: a PDF or an error, never a panic or a hang.
func FuzzHTMLLayout(f *testing.F) {
	f.Add(newsletterHTML("http://127.0.0.1:9"))
	f.Add(`<table><tr><td rowspan=3 colspan=2>a</td></tr><tr><td>b<table><tr><td>c</td></tr></table></td></tr></table>`)
	f.Add(`<ol start="-5"><li><blockquote><pre>x
  y</pre></blockquote></li></ol><img src="cid:a" width="-1" height="1e300">`)
	f.Add(`<a href="java&#09;script:x">j</a><p style="display:none">h</p><h1><i><b>x`)
	f.Add(strings.Repeat("<div>", 600) + "deep")
	f.Add(styledNewsletterHTML("http://127.0.0.1:9"))
	f.Add(`<style>td{font-size:1000%;width:1e9px} .h{display:none} table{width:1%;margin:0 auto} th{background:rgb(0,0,0)}</style>` +
		`<table><thead><tr><th class=h>a</th><th>b</th></tr></thead>` + strings.Repeat(`<tr><td>x</td><td>y</td></tr>`, 80) + `</table>`)
	img := testPNG(f, 10, 10)
	f.Fuzz(func(t *testing.T, doc string) {
		msg := relatedMessage("fuzz", doc, inlinePart{"a", "image/png", img})
		pm, err := parseMessage(bytes.NewReader(msg), nil)
		if err != nil {
			return
		}
		if err := prepareHTML(pm); err != nil {
			t.Fatalf("prepareHTML: %v", err)
		}
		if _, _, err := renderPages(pm, languages["en"], fixedTime, fontSet{fontRegular, fontBold, builtinChain()}); err != nil {
			t.Logf("render error (allowed, must not panic): %v", err)
		}
	})
}

// BenchmarkSealHTMLNewsletter: a 10-page HTML mail with 5 inline images
// (600×200 PNGs), headings, paragraphs with bold, italics and links, and
// a bordered table with spans on every page (issue target < 300 ms).
func BenchmarkSealHTMLNewsletter(b *testing.B) {
	builtinChain()
	msg := tenPageNewsletter(b)
	benchSeal(b, msg, len(msg))
}

// tenPageNewsletter is the benchmark's message (TestTenPageNewsletter
// checks that it is ten pages).
func tenPageNewsletter(b testing.TB) []byte {
	var doc strings.Builder
	doc.WriteString(`<html><body><table width="600" align="center"><tr><td>`)
	var parts []inlinePart
	for i := range 5 {
		parts = append(parts, inlinePart{fmt.Sprintf("img%d@x", i), "image/png", testPNG(b, 600, 200)})
	}
	for page := range 10 {
		fmt.Fprintf(&doc, `<h2>Section %d</h2>`, page+1)
		if page%2 == 0 {
			fmt.Fprintf(&doc, `<p><img src="cid:img%d@x" width="600"></p>`, page/2)
		}
		for range 13 {
			doc.WriteString(`<p>Dear customer, this week <b>everything is cheaper</b> and <i>delivery is free</i>. ` +
				`Read <a href="https://shop.example/offer">all offers</a> on our site; prices include VAT and are valid while stocks last.</p>`)
		}
		doc.WriteString(`<table border="1" cellpadding="4"><tr><th>Item</th><th>Qty</th><th>Price</th></tr>`)
		for r := range 4 {
			fmt.Fprintf(&doc, `<tr><td>Widget %d</td><td>%d</td><td align="right">%d,00</td></tr>`, r, r+1, 10*(r+1))
		}
		doc.WriteString(`<tr><td colspan="2">Total</td><td align="right">100,00</td></tr></table>`)
	}
	doc.WriteString(`</td></tr></table></body></html>`)
	return relatedMessage("Bench", doc.String(), parts...)
}

// TestTenPageNewsletter: the benchmark's message is what it says, ten
// pages (poppler counts) with the five images drawn, none attached.
func TestTenPageNewsletter(t *testing.T) {
	testpeer.Require(t, "pdfinfo")
	_, pdf := seal(t, &Sealer{}, tenPageNewsletter(t), testPassword)
	if n := testpeer.PDFPages(t, pdf, testPassword); n < 10 || n > 11 {
		t.Errorf("%d pages, want 10", n)
	}
	if names := testpeer.PDFAttachmentNames(t, pdf, testPassword); !slices.Equal(names, []string{"message.html"}) {
		t.Errorf("attachments %v, want only message.html", names)
	}
	if dir := os.Getenv("SEALGATE_HTML_PNG_DIR"); dir != "" {
		for _, p := range []int{1, 2, 10} {
			testpeer.MuPDFRenderPNG(t, pdf, testPassword, p, 60, dir)
		}
	}
}
