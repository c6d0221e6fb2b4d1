package pdfmail

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/tdewolff/parse/v2"
	"github.com/tdewolff/parse/v2/css"
	"golang.org/x/net/html"
)

// styled parses doc, applies its style sheets and returns the element
// with id="t" (nil when none) and the warnings.
func styled(t *testing.T, doc string) (*html.Node, *html.Node, []string) {
	t.Helper()
	root, err := html.Parse(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	warns := applyStyleSheets(root)
	var find func(*html.Node) *html.Node
	find = func(n *html.Node) *html.Node {
		if n.Type == html.ElementNode && attr(n, "id") == "t" {
			return n
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if f := find(c); f != nil {
				return f
			}
		}
		return nil
	}
	return root, find(root), warns
}

// TestStyleCascade: what a sheet says reaches the element's style as the
// cascade decides (specificity, order, !important, the style attribute).
func TestStyleCascade(t *testing.T) {
	tests := []struct {
		name, sheet, body, prop, want string
	}{
		{"type", `td{text-align:right}`, `<table><tr><td id=t>x</td></tr></table>`, "text-align", "right"},
		{"class", `.price{text-align:right}`, `<p id=t class="a price">x</p>`, "text-align", "right"},
		{"type and class", `td.price{font-weight:bold}`, `<table><tr><td id=t class=price>x</td></tr></table>`, "font-weight", "bold"},
		{"type and class, other type", `td.price{font-weight:bold}`, `<p id=t class=price>x</p>`, "font-weight", ""},
		{"id", `#t{color:#123456}`, `<p id=t>x</p>`, "color", "#123456"},
		{"descendant", `.box p{font-style:italic}`, `<div class=box><div><p id=t>x</p></div></div>`, "font-style", "italic"},
		{"descendant, no ancestor", `.box p{font-style:italic}`, `<div><p id=t>x</p></div>`, "font-style", ""},
		{"child", `.box > p{font-style:italic}`, `<div class=box><div><p id=t>x</p></div></div>`, "font-style", ""},
		{"child, direct", `.box > p{font-style:italic}`, `<div class=box><p id=t>x</p></div>`, "font-style", "italic"},
		{"adjacent", `h1 + p{color:#111111}`, `<h1>a</h1><p id=t>x</p>`, "color", "#111111"},
		{"general sibling", `h1 ~ p{color:#111111}`, `<h1>a</h1><p>b</p><p id=t>x</p>`, "color", "#111111"},
		{"attribute", `[data-kind="btn"]{background-color:#0b5cad}`, `<table><tr><td id=t data-kind=btn>x</td></tr></table>`, "background-color", "#0b5cad"},
		{"attribute prefix", `a[href^="https"]{font-weight:bold}`, `<a id=t href="https://x.example">x</a>`, "font-weight", "bold"},
		{"grouping", `h2, .x, p{text-align:center}`, `<p id=t>x</p>`, "text-align", "center"},
		{"first-child", `tr:first-child td{font-weight:bold}`, `<table><tr><td id=t>x</td></tr><tr><td>y</td></tr></table>`, "font-weight", "bold"},
		{"last-child no", `tr:last-child td{font-weight:bold}`, `<table><tr><td id=t>x</td></tr><tr><td>y</td></tr></table>`, "font-weight", ""},
		{"nth-child even", `tr:nth-child(even) td{background-color:#eeeeee}`, `<table><tr><td>a</td></tr><tr><td id=t>x</td></tr></table>`, "background-color", "#eeeeee"},
		{"not", `p:not(.keep){display:none}`, `<p id=t class=keep>x</p>`, "display", ""},
		{"not matches", `p:not(.keep){display:none}`, `<p id=t>x</p>`, "display", "none"},
		{"hover never", `p:hover{display:none}`, `<p id=t>x</p>`, "display", ""},
		{"pseudo-element drops rule", `p::before, p{display:none}`, `<p id=t>x</p>`, "display", ""},
		{"specificity beats order", `#t{color:#111111} p{color:#222222}`, `<p id=t>x</p>`, "color", "#111111"},
		{"later wins at equal specificity", `p{color:#111111} p{color:#222222}`, `<p id=t>x</p>`, "color", "#222222"},
		{"important beats specificity", `p{color:#111111 !important} #t{color:#222222}`, `<p id=t>x</p>`, "color", "#111111"},
		{"inline beats sheet", `#t{color:#111111}`, `<p id=t style="color:#333333">x</p>`, "color", "#333333"},
		{"sheet important beats inline", `p{color:#111111!important}`, `<p id=t style="color:#333333">x</p>`, "color", "#111111"},
		{"inline important beats sheet important", `p{color:#111111!important}`, `<p id=t style="color:#333333 !important">x</p>`, "color", "#333333"},
		{"inline kept beside sheet", `p{color:#111111}`, `<p id=t style="text-align:right">x</p>`, "text-align", "right"},
		{"background shorthand colour", `td{background:#0b5cad url(https://x.example/bg.png) no-repeat}`, `<table><tr><td id=t>x</td></tr></table>`, "background-color", "#0b5cad"},
		{"background shorthand rgb", `td{background:rgb(11, 92, 173)}`, `<table><tr><td id=t>x</td></tr></table>`, "background-color", "rgb(11,92,173)"},
		{"background none", `td{background-color:#0b5cad} td.x{background:none}`, `<table><tr><td id=t class=x>x</td></tr></table>`, "background-color", "transparent"},
		{"margin auto", `table{margin-left:auto;margin-right:auto}`, `<table id=t><tr><td>x</td></tr></table>`, "margin", "0 auto"},
		{"unknown property dropped", `p{float:left;color:#111111}`, `<p id=t>x</p>`, "float", ""},
		{"url never a value", `p{width:url(https://x.example/w)}`, `<p id=t>x</p>`, "width", ""},
		{"media screen applies", `@media screen{p{color:#111111}}`, `<p id=t>x</p>`, "color", "#111111"},
		{"media mobile does not", `@media only screen and (max-width:600px){p{display:none}}`, `<p id=t>x</p>`, "display", ""},
		{"media desktop does", `@media screen and (min-width:480px){p{font-weight:bold}}`, `<p id=t>x</p>`, "font-weight", "bold"},
		{"media dark does not", `@media (prefers-color-scheme: dark){p{color:#eeeeee}}`, `<p id=t>x</p>`, "color", ""},
		{"media print does not", `@media print{p{display:none}}`, `<p id=t>x</p>`, "display", ""},
		{"media list one matches", `@media print, screen{p{font-style:italic}}`, `<p id=t>x</p>`, "font-style", "italic"},
		{"media not print", `@media not print{p{font-style:italic}}`, `<p id=t>x</p>`, "font-style", "italic"},
		{"style media attribute", ``, `<style media="print">p{display:none}</style><p id=t>x</p>`, "display", ""},
		{"supports ignored", `@supports (display:grid){p{display:none}}`, `<p id=t>x</p>`, "display", ""},
		{"import and font-face ignored", `@import url(https://x.example/a.css); @font-face{font-family:x;src:url(https://x.example/f.woff)} p{color:#111111}`, `<p id=t>x</p>`, "color", "#111111"},
		{"nested rule ignored", `div{p{display:none}}`, `<div><p id=t>x</p></div>`, "display", ""},
		{"broken rule skipped", `p{color:;;} } p{font-style:italic}`, `<p id=t>x</p>`, "font-style", "italic"},
		{"over-long style attribute kept", `p{display:none}`, `<p id=t style="color:#111111;` + strings.Repeat(" ", maxInlineStyle) + `">x</p>`, "display", ""},
		{"font-size", `h1{font-size:32px}`, `<h1 id=t>x</h1>`, "font-size", "32px"},
		{"last declaration in a rule wins", `p{color:#111111;color:#222222}`, `<p id=t>x</p>`, "color", "#222222"},
		{"important declaration in a rule wins", `p{color:#111111!important;color:#222222}`, `<p id=t>x</p>`, "color", "#111111"},
		{"long selector group", strings.Repeat(".x, ", 150) + `p{color:#111111}`, `<p id=t>x</p>`, "color", "#111111"},
		{"second sheet later", ``, `<style>p{color:#111111}</style><style>p{color:#222222}</style><p id=t>x</p>`, "color", "#222222"},
		{"declaration breakout", `p{color:"a;display:none;b"}`, `<p id=t>x</p>`, "display", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := `<html><head><style>` + tc.sheet + `</style></head><body>` + tc.body + `</body></html>`
			_, n, _ := styled(t, doc)
			if n == nil {
				t.Fatal("no element t")
			}
			if got := cssValue(attr(n, "style"), tc.prop); got != tc.want {
				t.Errorf("%s = %q, want %q (style %q)", tc.prop, got, tc.want, attr(n, "style"))
			}
		})
	}
}

// TestStyleHiddenPreheader: a preheader hidden by a class is neither in
// the laid-out document nor in the HTML's text.
func TestStyleHiddenPreheader(t *testing.T) {
	root, _, _ := styled(t, `<style>.preheader{display:none!important;max-height:0;overflow:hidden}</style>
<div class="preheader">PREHEADER secret teaser</div><p>Visible text</p>`)
	text := htmlPlainText(root)
	if strings.Contains(text, "PREHEADER") || !strings.Contains(text, "Visible text") {
		t.Errorf("text %q", text)
	}
}

// TestStyleHostile plays the attacker: huge sheets, 100k selectors, deep
// descendant chains against deep markup, long :not() chains. Each ends
// with a warning (the cap that stopped it); without the caps they would
// run for hours (the test's deadline) or use gigabytes.
func TestStyleHostile(t *testing.T) {
	deepDOM := strings.Repeat("<div>", 400) + "x" + strings.Repeat("</div>", 400)
	tests := []struct {
		name, doc, warn string
	}{
		{"100k selectors", "<style>" + strings.Repeat(".a, .b, .c, .d, .e{color:red}", 25000) + "</style><p class=a>x</p>", "more than 4000 selectors"},
		{"huge sheet", "<style>" + strings.Repeat("p{color:red}", 60000) + "</style><p>x</p>", "longer than 256 KiB"},
		{"deep descendant chain", "<style>" + strings.Repeat("span div div div div div div div div div div{color:red}", 300) + "</style>" + deepDOM, "too costly"},
		{"long selector", "<style>" + strings.Repeat("div ", 40) + "{color:red}</style>" + deepDOM, "too complex"},
		{"long compound", "<style>p" + strings.Repeat("[a]", 100) + "{color:red}</style><p>x</p>", "too complex"},
		{"not chain", "<style>p" + strings.Repeat(":not(", 50) + "a" + strings.Repeat(")", 50) + "{color:red}</style><p>x</p>", "too complex"},
		{"long class attributes", "<style>" + strings.Repeat(`[class~="`+strings.Repeat("a", 200)+`"]{color:red}`, 1000) + "</style>" +
			strings.Repeat(`<p class="`+strings.Repeat("a", 100000)+`">x</p>`, 40), "too costly"},
		{"long attribute values", "<style>" + strings.Repeat(`[title*="zq"]{color:red}`, 4000) + "</style>" +
			strings.Repeat(`<p title="`+strings.Repeat("z", 100000)+`">x</p>`, 40), "too costly"},
		{"sibling scan", "<style>" + strings.Repeat("p:last-of-type ~ p:nth-child(3) ~ p{color:red}", 300) + "</style>" + strings.Repeat("<p>x</p>", 20000), "too costly"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, warns := styled(t, tc.doc)
			if !strings.Contains(strings.Join(warns, "|"), tc.warn) {
				t.Errorf("warnings %q lack %q", warns, tc.warn)
			}
		})
	}
}

// TestStyleDeclarationsShared: a rule set of 4000 selectors and 20 000
// declarations keeps one short list of declarations, not 80 million.
func TestStyleDeclarationsShared(t *testing.T) {
	var sel []string
	for i := range 4000 {
		sel = append(sel, fmt.Sprintf(".c%d", i))
	}
	sheet := parseStyleSheet([]byte(strings.Join(sel, ",") + "{" + strings.Repeat("color:red;text-align:left !important;", 10000) + "}"))
	if sheet.n != 4000 {
		t.Fatalf("%d selectors", sheet.n)
	}
	for _, rules := range sheet.byClass {
		for _, r := range rules {
			if len(r.decls) != 2 || r.decls[0].val != "red" || !r.decls[1].important {
				t.Fatalf("declarations %+v", r.decls[:min(len(r.decls), 4)])
			}
		}
	}
}

// TestMediaQueries: which queries apply to the page's screen (642 px).
func TestMediaQueries(t *testing.T) {
	tests := []struct {
		query string
		want  bool
	}{
		{"all", true}, {"screen", true}, {"only screen", true}, {"print", false}, {"speech", false},
		{"not print", true}, {"not screen", false},
		{"(max-width: 600px)", false}, {"screen and (max-width:480px)", false}, {"(max-width: 700px)", true},
		{"(min-width: 600px)", true}, {"(min-width: 800px)", false}, {"(min-width: 30em)", true},
		{"(prefers-color-scheme: dark)", false}, {"(prefers-color-scheme: light)", true},
		{"(orientation: landscape)", false}, {"(-webkit-min-device-pixel-ratio: 2)", false},
		{"(width <= 600px)", false}, {"print, (min-width: 100px)", true}, {"screen and (unknown-feature)", false},
	}
	for _, tc := range tests {
		p := css.NewParser(parse.NewInputString("@media "+tc.query+"{}"), false)
		if gt, _, _ := p.Next(); gt != css.BeginAtRuleGrammar {
			t.Fatalf("%q: %v", tc.query, gt)
		}
		if got := mediaApplies(p.Values()); got != tc.want {
			t.Errorf("@media %s applies = %t, want %t", tc.query, got, tc.want)
		}
	}
}

// TestSelectorSpecificity: (ids, classes, types) as CSS counts them.
func TestSelectorSpecificity(t *testing.T) {
	tests := []struct {
		sel     string
		a, b, c int
	}{
		{"p", 0, 0, 1}, {".x", 0, 1, 0}, {"#x", 1, 0, 0}, {"td.price", 0, 1, 1}, {"div > p.a.b", 0, 2, 2},
		{"#a .b c", 1, 1, 1}, {"p:not(#x)", 1, 0, 1}, {"[href]", 0, 1, 0}, {"*", 0, 0, 0}, {"tr:first-child td", 0, 1, 2},
	}
	for _, tc := range tests {
		p := css.NewParser(parse.NewInputString(tc.sel+"{}"), false)
		if gt, _, _ := p.Next(); gt != css.BeginRulesetGrammar {
			t.Fatalf("%q: %v", tc.sel, gt)
		}
		group, ok := parseSelectorGroup(p.Values())
		if !ok || len(group) != 1 {
			t.Fatalf("%q: not parsed", tc.sel)
		}
		want := tc.a<<20 | tc.b<<10 | tc.c
		if got := group[0].specificity(); got != want {
			t.Errorf("%q: specificity %s, want (%d,%d,%d)", tc.sel, fmt.Sprintf("(%d,%d,%d)", got>>20, got>>10&1023, got&1023), tc.a, tc.b, tc.c)
		}
	}
}

// FuzzHTMLStyle feeds arbitrary style sheets (and a style attribute)
// against a fixed newsletter through the sheet path and the building of
// the layout's blocks: never a panic or a hang; the style attributes
// written back hold only the properties the layout reads.
func FuzzHTMLStyle(f *testing.F) {
	f.Add(`.preheader{display:none!important} td.price{text-align:right} @media only screen and (max-width:600px){td{display:block}}`, `color:#fff`)
	f.Add(`p:not(:not(:not(.a))) > a + b ~ c[href^="x" i]:nth-child(odd){background:rgb(1,2,3) url(x)}`, `display:none`)
	f.Add(`@media screen{@media print{p{color:red}}} @supports (x:y){p{x:y}} @font-face{src:url(a)} div{p{q:r}}`, ``)
	f.Add(`<!-- p{color:red} --> }}}{{{ @media ((( { p{`, `;;;:::!important`)
	f.Add(`*{width:100%;margin:0 auto;border:1px solid}#t{text-align:center}`, `width:1e308px`)
	f.Fuzz(func(t *testing.T, sheet, inline string) {
		doc := `<html><head><style>` + sheet + `</style></head><body><div class=preheader>pre</div>` +
			`<table class=prices width=600><thead><tr><th>a</th></tr></thead><tr><td class=price id=t style="` +
			html.EscapeString(inline) + `">1,00</td></tr></table><p>text <a href="https://x.example">link</a></p></body></html>`
		root, err := html.Parse(strings.NewReader(doc))
		if err != nil {
			return
		}
		applyStyleSheets(root)
		var check func(n *html.Node)
		check = func(n *html.Node) {
			if n.Type == html.ElementNode && attr(n, "style") != "" && attr(n, "id") != "t" {
				for decl := range strings.SplitSeq(attr(n, "style"), ";") {
					if k, _, ok := strings.Cut(decl, ":"); decl != "" && (!ok || cssPropIndex[k] == 0 && k != "display") {
						t.Errorf("style attribute %q has %q", attr(n, "style"), decl)
					}
				}
			}
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				check(c)
			}
		}
		check(root)
		msg := relatedMessage("fuzz", doc)
		pm, err := parseMessage(bytes.NewReader(msg), nil)
		if err != nil {
			return
		}
		if err := prepareHTML(pm); err != nil {
			t.Fatalf("prepareHTML: %v", err)
		}
		// The pages are drawn by FuzzHTMLLayout (whose seeds carry style
		// sheets): here the fuzzer spends its time on the sheet path.
	})
}

// TestCSSFontSize: sizes in pt, relative ones from the inherited size.
func TestCSSFontSize(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"16px", 12, true}, {"10pt", 10, true}, {"2em", 20, true}, {"1.5rem", 18, true}, {"150%", 15, true},
		{"large", 13.5, true}, {"smaller", 10 / 1.2, true}, {"0px", 0, false}, {"-3px", 0, false},
		{"1e9px", 0, false}, {"calc(1px)", 0, false}, {"", 0, false}, {"12", 0, false},
	}
	for _, tc := range tests {
		got, ok := cssFontSize(tc.in, 10)
		if ok != tc.ok || abs(got-tc.want) > 1e-9 {
			t.Errorf("cssFontSize(%q) = %v, %t; want %v, %t", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// BenchmarkApplyStyleSheets: the sheet path alone (600 rules read and
// matched against the ten-page styled newsletter's ~1000 elements).
func BenchmarkApplyStyleSheets(b *testing.B) {
	pm, err := parseMessage(bytes.NewReader(styledTenPageNewsletter(b)), nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		root, err := html.Parse(strings.NewReader(pm.HTML))
		if err != nil {
			b.Fatal(err)
		}
		if w := applyStyleSheets(root); len(w) > 0 {
			b.Fatal(w)
		}
	}
}

// TestHasWord: class lists are matched word by word.
func TestHasWord(t *testing.T) {
	tests := []struct {
		list, word string
		want       bool
	}{
		{"a b c", "b", true}, {"a b c", "a", true}, {"a b c", "c", true}, {"abc", "b", false}, {"ab b", "b", true},
		{"price-old price", "price", true}, {"price-old", "price", false}, {"x\tprice\n", "price", true}, {"", "a", false},
		{"aaa", "aa", false},
	}
	for _, tc := range tests {
		if got := (&matcher{budget: 1000}).hasWord(tc.list, tc.word); got != tc.want {
			t.Errorf("hasWord(%q, %q) = %t", tc.list, tc.word, got)
		}
	}
}
