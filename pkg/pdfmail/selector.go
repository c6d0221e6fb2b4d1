package pdfmail

import (
	"strconv"
	"strings"

	"github.com/tdewolff/parse/v2/css"
	"golang.org/x/net/html"
)

// selector.go: CSS selectors of a mail's style sheets, parsed from the
// tokenizer's output and matched right to left against the DOM. Our own
// matcher rather than a library's: every step is counted against a
// budget, so that a hostile sheet (deep descendant chains against deep
// markup, long :not() chains) ends in bounded time instead of the
// combinatorial search a backtracking matcher would do.
//
// Supported: type, universal, #id, .class, [attr], [attr=v], ~=, |=, ^=,
// $=, *=, descendant, child (>), adjacent (+) and general (~) siblings,
// grouping, :first-child, :last-child, :only-child, :first-of-type,
// :last-of-type, :only-of-type, :nth-child(odd|even|N), :root, :empty,
// :link, :any-link and :not(…). User-action states (:hover, :focus,
// :visited, …) never match; pseudo-elements and unknown pseudo-classes
// make the selector invalid, as in browsers.

// cSelector is one complex selector: compounds joined by combinators
// (combs[i] joins parts[i] and parts[i+1]).
type cSelector struct {
	parts []cCompound
	combs []byte
}

type cCompound struct {
	tag     string // "" for any
	ids     []string
	classes []string
	attrs   []cAttr
	pseudo  []cPseudo
	nots    [][]*cSelector // each :not() holds a selector list
	never   bool           // a user-action state: never matches on paper
}

type cAttr struct {
	name, val string
	op        string // "" (present), "=", "~=", "|=", "^=", "$=", "*="
	fold      bool   // [a=v i]
}

type cPseudo struct {
	name string
	a, b int // :nth-child(an+b)
}

// parseSelectorGroup parses a rule's prelude. ok is false when any
// selector of the group is invalid or beyond the limits (the whole rule is
// dropped, as browsers do); group is then non-empty when the cause was a
// limit.
func parseSelectorGroup(toks []css.Token) (group []*cSelector, ok bool) {
	sp := &selParser{toks: toks}
	group, ok = sp.list(0)
	if !ok || sp.pos != len(toks) {
		if sp.limit {
			return []*cSelector{nil}, false
		}
		return nil, false
	}
	return group, true
}

type selParser struct {
	toks  []css.Token
	pos   int
	limit bool // a limit, not a syntax error, refused the selector
}

func (p *selParser) peek() (css.Token, bool) {
	if p.pos >= len(p.toks) {
		return css.Token{}, false
	}
	return p.toks[p.pos], true
}

func (p *selParser) skipWS() bool {
	seen := false
	for p.pos < len(p.toks) && (p.toks[p.pos].TokenType == css.WhitespaceToken || p.toks[p.pos].TokenType == css.CommentToken) {
		p.pos++
		seen = true
	}
	return seen
}

// list parses selectors separated by commas, up to the end or a ")" at
// :not() depth.
func (p *selParser) list(depth int) ([]*cSelector, bool) {
	var out []*cSelector
	for {
		p.skipWS()
		sel, ok := p.complex(depth)
		if !ok {
			return nil, false
		}
		out = append(out, sel)
		p.skipWS()
		t, more := p.peek()
		if !more || t.TokenType == css.RightParenthesisToken {
			return out, true
		}
		if t.TokenType != css.CommaToken {
			return nil, false
		}
		p.pos++
	}
}

func (p *selParser) complex(depth int) (*cSelector, bool) {
	sel := &cSelector{}
	start := p.pos
	for {
		c, ok := p.compound(depth)
		if p.pos-start > maxSelectorTokens {
			p.limit = true
			return nil, false
		}
		if !ok {
			return nil, false
		}
		sel.parts = append(sel.parts, c)
		if len(sel.parts) > maxSelectorParts {
			p.limit = true
			return nil, false
		}
		ws := p.skipWS()
		t, more := p.peek()
		if !more || t.TokenType == css.CommaToken || t.TokenType == css.RightParenthesisToken {
			return sel, true
		}
		comb := byte(' ')
		if t.TokenType == css.DelimToken && len(t.Data) == 1 && strings.IndexByte(">+~", t.Data[0]) >= 0 {
			comb = t.Data[0]
			p.pos++
			p.skipWS()
		} else if !ws {
			return nil, false
		}
		sel.combs = append(sel.combs, comb)
	}
}

func (p *selParser) compound(depth int) (cCompound, bool) {
	var c cCompound
	start := p.pos
	for {
		t, more := p.peek()
		if !more {
			break
		}
		switch t.TokenType {
		case css.IdentToken:
			if p.pos != start {
				return c, false
			}
			c.tag = strings.ToLower(string(t.Data))
			p.pos++
			continue
		case css.DelimToken:
			switch string(t.Data) {
			case "*":
				if p.pos != start {
					return c, false
				}
				p.pos++
				continue
			case ".":
				p.pos++
				n, ok := p.peek()
				if !ok || n.TokenType != css.IdentToken {
					return c, false
				}
				c.classes = append(c.classes, string(n.Data))
				p.pos++
				continue
			}
		case css.HashToken:
			c.ids = append(c.ids, string(t.Data[1:]))
			p.pos++
			continue
		case css.LeftBracketToken:
			a, ok := p.attr()
			if !ok {
				return c, false
			}
			c.attrs = append(c.attrs, a)
			continue
		case css.ColonToken:
			if !p.pseudo(&c, depth) {
				return c, false
			}
			continue
		}
		break
	}
	return c, p.pos > start
}

func (p *selParser) attr() (cAttr, bool) {
	var a cAttr
	p.pos++ // [
	p.skipWS()
	t, ok := p.peek()
	if !ok || t.TokenType != css.IdentToken {
		return a, false
	}
	a.name = strings.ToLower(string(t.Data))
	p.pos++
	p.skipWS()
	t, ok = p.peek()
	if !ok {
		return a, false
	}
	switch t.TokenType {
	case css.RightBracketToken:
		p.pos++
		return a, true
	case css.IncludeMatchToken, css.DashMatchToken, css.PrefixMatchToken, css.SuffixMatchToken, css.SubstringMatchToken:
		a.op = string(t.Data)
	case css.DelimToken:
		if string(t.Data) != "=" {
			return a, false
		}
		a.op = "="
	default:
		return a, false
	}
	p.pos++
	p.skipWS()
	t, ok = p.peek()
	switch {
	case !ok:
		return a, false
	case t.TokenType == css.IdentToken:
		a.val = string(t.Data)
	case t.TokenType == css.StringToken:
		a.val = unquoteCSS(string(t.Data))
	default:
		return a, false
	}
	p.pos++
	p.skipWS()
	if t, ok = p.peek(); ok && t.TokenType == css.IdentToken && strings.EqualFold(string(t.Data), "i") {
		a.fold = true
		p.pos++
		p.skipWS()
	}
	if t, ok = p.peek(); !ok || t.TokenType != css.RightBracketToken {
		return a, false
	}
	p.pos++
	return a, true
}

func unquoteCSS(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

var neverPseudo = map[string]bool{
	"hover": true, "active": true, "focus": true, "focus-within": true, "focus-visible": true, "visited": true,
	"target": true, "checked": true, "disabled": true, "enabled": true,
}

func (p *selParser) pseudo(c *cCompound, depth int) bool {
	p.pos++ // :
	t, ok := p.peek()
	if !ok {
		return false
	}
	switch t.TokenType {
	case css.IdentToken:
		name := strings.ToLower(string(t.Data))
		p.pos++
		switch name {
		case "first-child", "last-child", "only-child", "first-of-type", "last-of-type", "only-of-type", "root", "empty", "link", "any-link":
			c.pseudo = append(c.pseudo, cPseudo{name: name})
			return true
		}
		if neverPseudo[name] {
			c.never = true
			return true
		}
		return false // a pseudo-element (::before) or unknown
	case css.FunctionToken:
		name := strings.ToLower(strings.TrimSuffix(string(t.Data), "("))
		p.pos++
		switch name {
		case "not":
			if depth >= maxNotDepth {
				p.limit = true
				return false
			}
			list, ok := p.list(depth + 1)
			if !ok {
				return false
			}
			if t, ok := p.peek(); !ok || t.TokenType != css.RightParenthesisToken {
				return false
			}
			p.pos++
			c.nots = append(c.nots, list)
			return true
		case "nth-child":
			p.skipWS()
			t, ok := p.peek()
			if !ok {
				return false
			}
			ps := cPseudo{name: name}
			switch {
			case t.TokenType == css.IdentToken && strings.EqualFold(string(t.Data), "odd"):
				ps.a, ps.b = 2, 1
			case t.TokenType == css.IdentToken && strings.EqualFold(string(t.Data), "even"):
				ps.a, ps.b = 2, 0
			case t.TokenType == css.NumberToken:
				v, err := strconv.Atoi(string(t.Data))
				if err != nil || v < 1 || v > 100000 {
					return false
				}
				ps.b = v
			default:
				return false
			}
			p.pos++
			p.skipWS()
			if t, ok := p.peek(); !ok || t.TokenType != css.RightParenthesisToken {
				return false
			}
			p.pos++
			c.pseudo = append(c.pseudo, ps)
			return true
		}
	}
	return false
}

// specificity is (ids, classes+attributes+pseudo-classes, types) packed
// into one comparable number.
func (s *cSelector) specificity() int {
	a, b, c := 0, 0, 0
	for i := range s.parts {
		pa, pb, pc := s.parts[i].specificity()
		a, b, c = a+pa, b+pb, c+pc
	}
	return min(a, 1023)<<20 | min(b, 1023)<<10 | min(c, 1023)
}

func (c *cCompound) specificity() (a, b, t int) {
	a = len(c.ids)
	b = len(c.classes) + len(c.attrs) + len(c.pseudo)
	if c.tag != "" {
		t = 1
	}
	if c.never {
		b++
	}
	for _, list := range c.nots {
		best := 0
		for _, s := range list {
			best = max(best, s.specificity())
		}
		a += best >> 20
		b += best >> 10 & 1023
		t += best & 1023
	}
	return a, b, t
}

// matcher matches selectors with a budget of steps shared by the whole
// document.
type matcher struct {
	budget int
}

func (m *matcher) over() bool { return m.budget <= 0 }

func (m *matcher) matches(s *cSelector, n *html.Node) bool {
	return m.match(s, len(s.parts)-1, n)
}

// match reports whether parts[0..i] match with parts[i] on n.
func (m *matcher) match(s *cSelector, i int, n *html.Node) bool {
	m.budget--
	if m.budget <= 0 || !m.compound(&s.parts[i], n) {
		return false
	}
	if i == 0 {
		return true
	}
	switch s.combs[i-1] {
	case '>':
		p := parentElement(n)
		return p != nil && m.match(s, i-1, p)
	case ' ':
		for p := parentElement(n); p != nil && m.budget > 0; p = parentElement(p) {
			if m.match(s, i-1, p) {
				return true
			}
		}
	case '+':
		p := prevElement(n)
		return p != nil && m.match(s, i-1, p)
	case '~':
		for p := prevElement(n); p != nil && m.budget > 0; p = prevElement(p) {
			if m.match(s, i-1, p) {
				return true
			}
		}
	}
	return false
}

func (m *matcher) compound(c *cCompound, n *html.Node) bool {
	if c.never || n.Type != html.ElementNode {
		return false
	}
	if c.tag != "" && n.Data != c.tag {
		return false
	}
	for _, id := range c.ids {
		if attr(n, "id") != id {
			return false
		}
	}
	if len(c.classes) > 0 {
		classes := attr(n, "class")
		classes = classes[:min(len(classes), maxWordList)]
		m.budget -= len(classes) / 64
		for _, want := range c.classes {
			if !m.hasWord(classes, want) {
				return false
			}
		}
	}
	for _, a := range c.attrs {
		m.budget--
		if !m.attrMatches(n, a) {
			return false
		}
	}
	for _, ps := range c.pseudo {
		if !m.pseudo(n, ps) {
			return false
		}
	}
	for _, list := range c.nots {
		for _, s := range list {
			m.budget--
			if m.budget <= 0 || m.matches(s, n) {
				return false
			}
		}
	}
	return true
}

// maxWordList is how much of a class attribute (or a [a~=w] value) is
// searched: the words of a real one, not a megabyte a sender made up to
// turn each selector test into a long scan.
const maxWordList = 2048

// hasWord reports whether the white-space separated list has word, without
// splitting it (matching runs for every element and selector). Every
// place the word is found costs steps in proportion to its length ("aa"
// in "aaaa…" is found everywhere, at no word boundary).
func (m *matcher) hasWord(list, word string) bool {
	if word == "" {
		return false
	}
	for from := 0; from < len(list); {
		m.budget -= 1 + len(word)/16
		if m.budget <= 0 {
			return false
		}
		j := strings.Index(list[from:], word)
		if j < 0 {
			return false
		}
		i := from + j
		end := i + len(word)
		if (i == 0 || isCSSSpace(list[i-1])) && (end == len(list) || isCSSSpace(list[end])) {
			return true
		}
		from = i + 1
	}
	return false
}

func isCSSSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }

func (m *matcher) attrMatches(n *html.Node, a cAttr) bool {
	var v string
	found := false
	for _, at := range n.Attr {
		if at.Namespace == "" && at.Key == a.name {
			v, found = at.Val, true
			break
		}
	}
	if !found {
		return false
	}
	m.budget -= len(v) / 64 // a scan of a long value costs its length
	want := a.val
	if a.fold {
		v, want = strings.ToLower(v), strings.ToLower(want)
	}
	switch a.op {
	case "":
		return true
	case "=":
		return v == want
	case "~=":
		return want != "" && m.hasWord(v[:min(len(v), maxWordList)], want)
	case "|=":
		return v == want || strings.HasPrefix(v, want+"-")
	case "^=":
		return want != "" && strings.HasPrefix(v, want)
	case "$=":
		return want != "" && strings.HasSuffix(v, want)
	case "*=":
		return want != "" && strings.Contains(v, want)
	}
	return false
}

// pseudo matches a structural pseudo-class; walking the siblings costs
// a step each.
func (m *matcher) pseudo(n *html.Node, ps cPseudo) bool {
	switch ps.name {
	case "first-child":
		return prevElement(n) == nil
	case "last-child":
		return nextElement(n) == nil
	case "only-child":
		return prevElement(n) == nil && nextElement(n) == nil
	case "first-of-type":
		for p := prevElement(n); p != nil; p = prevElement(p) {
			m.budget--
			if p.Data == n.Data {
				return false
			}
		}
		return true
	case "last-of-type":
		for p := nextElement(n); p != nil; p = nextElement(p) {
			m.budget--
			if p.Data == n.Data {
				return false
			}
		}
		return true
	case "only-of-type":
		return m.pseudo(n, cPseudo{name: "first-of-type"}) && m.pseudo(n, cPseudo{name: "last-of-type"})
	case "root":
		return n.Parent != nil && n.Parent.Type == html.DocumentNode
	case "empty":
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			m.budget--
			if c.Type == html.ElementNode || c.Type == html.TextNode && c.Data != "" {
				return false
			}
		}
		return true
	case "link", "any-link":
		return (n.Data == "a" || n.Data == "area") && attr(n, "href") != ""
	case "nth-child":
		pos := 1
		for p := prevElement(n); p != nil; p = prevElement(p) {
			m.budget--
			pos++
		}
		if ps.a == 0 {
			return pos == ps.b
		}
		return pos >= ps.b && (pos-ps.b)%ps.a == 0
	}
	return false
}

func parentElement(n *html.Node) *html.Node {
	if p := n.Parent; p != nil && p.Type == html.ElementNode {
		return p
	}
	return nil
}

func prevElement(n *html.Node) *html.Node {
	for p := n.PrevSibling; p != nil; p = p.PrevSibling {
		if p.Type == html.ElementNode {
			return p
		}
	}
	return nil
}

func nextElement(n *html.Node) *html.Node {
	for p := n.NextSibling; p != nil; p = p.NextSibling {
		if p.Type == html.ElementNode {
			return p
		}
	}
	return nil
}
