package pdfmail

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/tdewolff/parse/v2"
	"github.com/tdewolff/parse/v2/css"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// css.go applies the <style> sheets of an HTML mail: every <style>
// element in document order is tokenized (tdewolff/parse), its rules
// matched against the elements (selector.go), and the cascade (origin,
// !important, specificity, order; the style attribute after the sheets
// unless a sheet says !important) decides each property. The winners are
// written back into the element's style attribute, which the layout
// (html.go) already reads: one way in for inline and sheet styles.
//
// @media blocks apply when their query matches a screen as wide as the
// page's text (cssScreenPx: A4 less margins, 642 px; so the mobile rules
// of a newsletter, max-width: 600px, do not) in light colour scheme;
// @layer blocks apply, every other at-rule (@import, @font-face,
// @supports, @keyframes, @page) is ignored. <link rel=stylesheet> is never
// fetched, nor is anything named in url(...).
//
// A hostile sheet cannot make us work without bound: the sheets are read
// up to maxStyleBytes, at most maxCSSSelectors selectors are kept, each of
// at most maxSelectorParts compounds, maxSelectorTokens tokens and
// maxNotDepth nested :not(), and
// matching stops after maxCSSMatchSteps steps. Every cap hit is a warning.
const (
	maxStyleBytes     = 256 << 10
	maxCSSSelectors   = 4000
	maxSelectorParts  = 12
	maxSelectorTokens = 256
	maxNotDepth       = 3
	maxCSSMatchSteps  = 3_000_000
	maxInlineStyle    = 16 << 10
	cssScreenPx       = (210 - 2*pageMargin) / pxToMM
)

// cssProps are the properties the layout reads; the others are dropped.
var cssProps = []string{
	"display", "visibility", "max-height", "overflow", "text-align", "font-weight", "font-style", "font-size",
	"text-decoration", "color", "background-color", "width", "margin", "margin-left", "margin-right",
	"border", "border-width", "border-style",
}

var cssPropIndex = func() map[string]int {
	m := map[string]int{}
	for i, p := range cssProps {
		m[p] = i
	}
	return m
}()

type cssDecl struct {
	prop      int // index in cssProps
	val       string
	important bool
}

type cssRule struct {
	sel   *cSelector
	spec  int
	order int
	decls []cssDecl
}

// styleSheet is the rules of all <style> elements, indexed by the
// rightmost compound's id, class or tag (as browsers do), so that an
// element is matched only against the rules that can apply to it.
type styleSheet struct {
	byID, byClass, byTag map[string][]*cssRule
	any                  []*cssRule
	n                    int
	warnings             []string
}

func (s *styleSheet) warn(w string) {
	for _, have := range s.warnings {
		if have == w {
			return
		}
	}
	s.warnings = append(s.warnings, w)
}

// applyStyleSheets reads the document's <style> elements and writes the
// cascaded properties into the style attribute of each element a rule
// matches. It returns warnings for every limit reached.
func applyStyleSheets(root *html.Node) []string {
	var src bytes.Buffer
	truncated := false
	var collect func(n *html.Node, depth int)
	collect = func(n *html.Node, depth int) {
		if depth > 1024 {
			return
		}
		if n.Type == html.ElementNode && n.DataAtom == atom.Style && n.Namespace == "" {
			if !mediaAttrApplies(attr(n, "media")) {
				return
			}
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				if c.Type != html.TextNode {
					continue
				}
				if src.Len()+len(c.Data) > maxStyleBytes {
					truncated = true
					src.WriteString(c.Data[:max(0, maxStyleBytes-src.Len())])
					return
				}
				src.WriteString(c.Data)
			}
			src.WriteString("\n")
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			collect(c, depth+1)
		}
	}
	collect(root, 0)
	if src.Len() == 0 {
		return nil
	}
	sheet := parseStyleSheet(src.Bytes())
	if truncated {
		sheet.warn("HTML style sheets longer than 256 KiB: the rest is ignored")
	}
	if sheet.n > 0 {
		sheet.apply(root)
	}
	return sheet.warnings
}

// mediaAttrApplies reads <style media="...">.
func mediaAttrApplies(media string) bool {
	if strings.TrimSpace(media) == "" {
		return true
	}
	p := css.NewParser(parse.NewInputString("@media "+media+"{}"), false)
	gt, _, _ := p.Next()
	return gt == css.BeginAtRuleGrammar && mediaApplies(p.Values())
}

// parseStyleSheet tokenizes src into rules.
func parseStyleSheet(src []byte) *styleSheet {
	s := &styleSheet{byID: map[string][]*cssRule{}, byClass: map[string][]*cssRule{}, byTag: map[string][]*cssRule{}}
	p := css.NewParser(parse.NewInput(bytes.NewReader(src)), false)
	// The block stack: whether each open at-rule or rule set applies.
	var stack []bool
	var rules []*cssRule // the open rule set's rules (one per selector)
	var decls []cssDecl  // and their declarations, shared
	inRule := 0          // depth of open rule sets (nested ones are ignored)
	active := func() bool {
		for _, a := range stack {
			if !a {
				return false
			}
		}
		return true
	}
	order := 0
	for steps := 0; steps < 4*len(src)+64; steps++ {
		gt, _, data := p.Next()
		switch gt {
		case css.ErrorGrammar:
			if errors.Is(p.Err(), io.EOF) {
				return s
			}
		case css.BeginAtRuleGrammar:
			apply := false
			switch strings.ToLower(string(data)) {
			case "@media":
				apply = mediaApplies(p.Values())
			case "@layer":
				apply = true
			}
			stack = append(stack, apply && inRule == 0)
		case css.EndAtRuleGrammar:
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case css.BeginRulesetGrammar:
			inRule++
			if inRule == 1 {
				rules, decls = nil, nil
			}
			if inRule > 1 || !active() {
				continue
			}
			group, ok := parseSelectorGroup(p.Values())
			if !ok {
				if len(group) > 0 {
					s.warn("HTML style: selector too complex, ignored")
				}
				continue
			}
			for _, sel := range group {
				if s.n >= maxCSSSelectors {
					s.warn("HTML style sheets with more than 4000 selectors: the rest are ignored")
					break
				}
				s.n++
				order++
				rules = append(rules, &cssRule{sel: sel, spec: sel.specificity(), order: order})
			}
		case css.EndRulesetGrammar:
			if inRule > 0 {
				inRule--
			}
			if inRule == 0 {
				// One copy of the declarations for all selectors of
				// the group, the last of each property and importance
				// only (a rule set of 20 000 declarations and 4000
				// selectors must not become 80 million).
				decls = lastDecls(decls)
				for _, r := range rules {
					r.decls = decls
					s.index(r)
				}
				rules, decls = nil, nil
			}
		case css.DeclarationGrammar:
			if inRule != 1 || len(rules) == 0 {
				continue
			}
			if d, ok := makeDecl(string(data), p.Values()); ok {
				decls = append(decls, d...)
				if len(decls) > 4*len(cssProps) {
					decls = lastDecls(decls)
				}
			}
		}
	}
	s.warn("HTML style sheet could not be read to its end")
	return s
}

// lastDecls keeps the last declaration of each property and importance,
// in order: within a rule set, it is the one that counts.
func lastDecls(ds []cssDecl) []cssDecl {
	seen := make([]bool, 2*len(cssProps))
	out := make([]cssDecl, 0, min(len(ds), len(seen)))
	for i := len(ds) - 1; i >= 0; i-- {
		k := ds[i].prop * 2
		if ds[i].important {
			k++
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, ds[i])
		}
	}
	slices.Reverse(out)
	return out
}

func (s *styleSheet) index(r *cssRule) {
	if len(r.decls) == 0 {
		return
	}
	last := &r.sel.parts[len(r.sel.parts)-1]
	switch {
	case len(last.ids) > 0:
		s.byID[last.ids[0]] = append(s.byID[last.ids[0]], r)
	case len(last.classes) > 0:
		s.byClass[last.classes[0]] = append(s.byClass[last.classes[0]], r)
	case last.tag != "":
		s.byTag[last.tag] = append(s.byTag[last.tag], r)
	default:
		s.any = append(s.any, r)
	}
}

// makeDecl turns a declaration into the properties the layout reads:
// background gives its colour, !important is noted, url(...) and the
// like are dropped without ever being fetched.
func makeDecl(prop string, vals []css.Token) ([]cssDecl, bool) {
	important := false
	if n := len(vals); n >= 2 && vals[n-1].TokenType == css.IdentToken && strings.EqualFold(string(vals[n-1].Data), "important") &&
		vals[n-2].TokenType == css.DelimToken && string(vals[n-2].Data) == "!" {
		important = true
		vals = vals[:n-2]
	}
	prop = strings.ToLower(prop)
	if prop == "background" {
		// The shorthand sets the colour (transparent when it names none).
		col := "transparent"
		for i, v := range vals {
			switch v.TokenType {
			case css.HashToken, css.IdentToken:
				if _, ok := parseColor(string(v.Data)); ok {
					col = string(v.Data)
				}
			case css.FunctionToken:
				if fn := strings.ToLower(string(v.Data)); fn == "rgb(" || fn == "rgba(" {
					col = tokensText(vals[i:closeParen(vals, i)])
				}
			}
		}
		return []cssDecl{{prop: cssPropIndex["background-color"], val: col, important: important}}, true
	}
	idx, ok := cssPropIndex[prop]
	if !ok {
		return nil, false
	}
	for _, v := range vals {
		if v.TokenType == css.URLToken || v.TokenType == css.BadURLToken {
			return nil, false
		}
	}
	return []cssDecl{{prop: idx, val: tokensText(vals), important: important}}, true
}

// closeParen is the index after the parenthesis that closes vals[i].
func closeParen(vals []css.Token, i int) int {
	level := 0
	for j := i; j < len(vals); j++ {
		switch vals[j].TokenType {
		case css.FunctionToken, css.LeftParenthesisToken:
			level++
		case css.RightParenthesisToken:
			level--
			if level == 0 {
				return j + 1
			}
		}
	}
	return len(vals)
}

// tokensText is a value as text, without anything that would end a
// declaration in the style attribute.
func tokensText(vals []css.Token) string {
	var b strings.Builder
	for _, v := range vals {
		if b.Len() > 256 {
			break
		}
		b.Write(v.Data)
	}
	return strings.Map(func(r rune) rune {
		if r == ';' || r == '"' || r == '\'' || r < 0x20 {
			return -1
		}
		return r
	}, b.String())
}

// mediaApplies evaluates a media query list for a screen cssScreenPx
// wide, in portrait, in light colour scheme. Unknown media features do
// not match (a rule for a device we cannot name is not ours).
func mediaApplies(vals []css.Token) bool {
	var query []css.Token
	for i := 0; i <= len(vals); i++ {
		if i == len(vals) || vals[i].TokenType == css.CommaToken {
			if len(query) > 0 && mediaQuery(query) {
				return true
			}
			query = nil
			continue
		}
		if vals[i].TokenType != css.WhitespaceToken && vals[i].TokenType != css.CommentToken {
			query = append(query, vals[i])
		}
	}
	return len(vals) == 0
}

func mediaQuery(q []css.Token) bool {
	not := false
	ok := true
	for i := 0; i < len(q); i++ {
		t := q[i]
		switch t.TokenType {
		case css.IdentToken:
			switch strings.ToLower(string(t.Data)) {
			case "not":
				if i == 0 {
					not = true
					continue
				}
				return false
			case "only", "and":
			case "all", "screen":
			default:
				ok = false // print, speech, or, an unknown type
			}
		case css.LeftParenthesisToken:
			end := closeParen(q, i)
			ok = ok && mediaFeature(q[i+1:max(i+1, end-1)])
			i = end - 1
		default:
			ok = false
		}
	}
	return ok != not
}

func mediaFeature(f []css.Token) bool {
	if len(f) == 0 || f[0].TokenType != css.IdentToken {
		return false
	}
	name := strings.ToLower(string(f[0].Data))
	if len(f) == 1 {
		return name == "color"
	}
	if len(f) != 3 || f[1].TokenType != css.ColonToken {
		return false
	}
	val := strings.ToLower(string(f[2].Data))
	px := func() (float64, bool) {
		num, unit := splitDimension(val)
		switch unit {
		case "px":
			return num, true
		case "em", "rem":
			return num * 16, true
		case "":
			return num, num == 0
		}
		return 0, false
	}
	switch name {
	case "width", "device-width":
		w, ok := px()
		return ok && w == cssScreenPx
	case "min-width", "min-device-width":
		w, ok := px()
		return ok && cssScreenPx >= w
	case "max-width", "max-device-width":
		w, ok := px()
		return ok && cssScreenPx <= w
	case "orientation":
		return val == "portrait"
	case "prefers-color-scheme":
		return val == "light"
	}
	return false
}

// splitDimension cuts "600px" into 600 and "px".
func splitDimension(v string) (float64, string) {
	i := 0
	for i < len(v) && (v[i] >= '0' && v[i] <= '9' || v[i] == '.' || v[i] == '-' || v[i] == '+') {
		i++
	}
	f, err := strconv.ParseFloat(v[:i], 64)
	if err != nil {
		return 0, "?"
	}
	return f, v[i:]
}

// apply matches the rules against every element and writes the cascaded
// properties into the style attributes.
func (s *styleSheet) apply(root *html.Node) {
	m := &matcher{budget: maxCSSMatchSteps}
	type win struct {
		val   string
		level int // 0 sheet, 1 style attribute, 2 sheet !important, 3 attribute !important
		spec  int
		order int
	}
	wins := make([]win, len(cssProps))
	var cands []*cssRule
	var walk func(n *html.Node, depth int)
	walk = func(n *html.Node, depth int) {
		if depth > 1024 || m.over() {
			return
		}
		if n.Type == html.ElementNode && n.Namespace == "" {
			cands = cands[:0]
			cands = append(cands, s.any...)
			cands = append(cands, s.byTag[n.Data]...)
			if id := attr(n, "id"); id != "" {
				cands = append(cands, s.byID[id]...)
			}
			classes := strings.Fields(attr(n, "class"))
			for i, c := range classes {
				if i >= 32 {
					break
				}
				if slices.Contains(classes[:i], c) {
					continue // its rules are candidates already
				}
				cands = append(cands, s.byClass[c]...)
			}
			matched := false
			for i := range wins {
				wins[i] = win{level: -1}
			}
			for _, r := range cands {
				if !m.matches(r.sel, n) {
					continue
				}
				matched = true
				for _, d := range r.decls {
					w := win{val: d.val, spec: r.spec, order: r.order}
					if d.important {
						w.level = 2
					}
					cur := wins[d.prop]
					if w.level > cur.level || w.level == cur.level && (w.spec > cur.spec || w.spec == cur.spec && w.order > cur.order) {
						wins[d.prop] = w
					}
				}
			}
			if inline := attr(n, "style"); matched && len(inline) <= maxInlineStyle {
				// (An over-long style attribute is left as it is, the
				// sheets' properties not added: nothing of it is lost.)
				if inline != "" {
					for _, d := range parseInlineStyle(inline) {
						w := win{val: d.val, level: 1}
						if d.important {
							w.level = 3
						}
						if w.level >= wins[d.prop].level {
							wins[d.prop] = w
						}
					}
				}
				setStyle(n, cascadedStyle(func(i int) (string, bool) { return wins[i].val, wins[i].level >= 0 }))
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, depth+1)
		}
	}
	walk(root, 0)
	if m.over() {
		s.warn("HTML style sheets too costly to match: applied in part")
	}
}

// parseInlineStyle reads a style attribute with the same tokenizer.
func parseInlineStyle(s string) []cssDecl {
	p := css.NewParser(parse.NewInputString(s), true)
	var out []cssDecl
	for steps := 0; steps < 4*len(s)+64; steps++ {
		gt, _, data := p.Next()
		switch gt {
		case css.ErrorGrammar:
			if errors.Is(p.Err(), io.EOF) {
				return out
			}
		case css.DeclarationGrammar:
			if d, ok := makeDecl(string(data), p.Values()); ok {
				out = append(out, d...)
			}
		}
	}
	return out
}

// cascadedStyle writes the winning values as a style attribute; margin
// auto on both sides becomes "margin: 0 auto" (a centred table).
func cascadedStyle(get func(int) (string, bool)) string {
	var b strings.Builder
	for i, p := range cssProps {
		v, ok := get(i)
		if !ok || v == "" {
			continue
		}
		b.WriteString(p)
		b.WriteByte(':')
		b.WriteString(v)
		b.WriteByte(';')
	}
	l, okL := get(cssPropIndex["margin-left"])
	r, okR := get(cssPropIndex["margin-right"])
	if okL && okR && strings.EqualFold(l, "auto") && strings.EqualFold(r, "auto") {
		b.WriteString("margin:0 auto;")
	}
	return b.String()
}

func setStyle(n *html.Node, style string) {
	for i := range n.Attr {
		if n.Attr[i].Namespace == "" && n.Attr[i].Key == "style" {
			n.Attr[i].Val = style
			return
		}
	}
	n.Attr = append(n.Attr, html.Attribute{Key: "style", Val: style})
}
