package config

import (
	"sort"

	"github.com/pelletier/go-toml/v2/unstable"
)

// keyLines maps every key path in a syntactically valid TOML document to
// the line it is written on. Array-of-tables entries are indexed in file
// order ("policy.rules[1].encrypt"), as are array elements
// ("smtp.allowed_networks[0]"). A table header line is recorded under the
// table's own path; the first occurrence wins.
//
// go-toml's decoder only knows positions for the first error it meets; this
// map lets every problem found afterwards (validation included) carry a line.
func keyLines(doc []byte) map[string]int {
	b := lineBuilder{lines: map[string]int{}, arrays: map[string]int{}}
	for i, c := range doc {
		if c == '\n' {
			b.newlines = append(b.newlines, i)
		}
	}
	b.p.Reset(doc)
	table := ""
	for b.p.NextExpression() {
		e := b.p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			parts, first := b.keyParts(e.Key())
			path := ""
			for i, part := range parts {
				path = joinKey(path, part)
				// A header continues the newest element of any array of
				// tables it names on the way ([[a]] then [a.b] is a[n].b).
				if i < len(parts)-1 || e.Kind == unstable.Table {
					if n, ok := b.arrays[path]; ok {
						path = indexKey(path, n-1)
					}
				}
				// Tables a header creates implicitly start on its line too.
				b.record(path, first)
			}
			if e.Kind == unstable.ArrayTable {
				b.record(path, first)
				n := b.arrays[path]
				b.arrays[path] = n + 1
				path = indexKey(path, n)
			}
			b.record(path, first)
			table = path
		case unstable.KeyValue:
			b.keyValue(table, e)
		}
	}
	return b.lines
}

type lineBuilder struct {
	p        unstable.Parser
	lines    map[string]int
	arrays   map[string]int // array-of-tables path → entries seen so far
	newlines []int          // offsets of '\n', for offset → line
}

func (b *lineBuilder) line(r unstable.Range) int {
	return sort.SearchInts(b.newlines, int(r.Offset)) + 1
}

func (b *lineBuilder) record(path string, line int) {
	if _, ok := b.lines[path]; !ok && line > 0 {
		b.lines[path] = line
	}
}

// keyParts returns the decoded parts of a dotted key and the line of its
// first part.
func (b *lineBuilder) keyParts(it unstable.Iterator) ([]string, int) {
	var parts []string
	line := 0
	for it.Next() {
		n := it.Node()
		if line == 0 {
			line = b.line(n.Raw)
		}
		parts = append(parts, string(n.Data))
	}
	return parts, line
}

func (b *lineBuilder) keyValue(prefix string, kv *unstable.Node) {
	parts, line := b.keyParts(kv.Key())
	path := prefix
	for _, part := range parts {
		path = joinKey(path, part)
		b.record(path, line)
	}
	b.value(path, kv.Value())
}

func (b *lineBuilder) value(path string, v *unstable.Node) {
	switch v.Kind {
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if n := it.Node(); n.Kind == unstable.KeyValue {
				b.keyValue(path, n)
			}
		}
	case unstable.Array:
		it := v.Children()
		i := 0
		for it.Next() {
			n := it.Node()
			if n.Kind == unstable.Comment {
				continue
			}
			elem := indexKey(path, i)
			if n.Raw.Length > 0 {
				b.record(elem, b.line(n.Raw))
			}
			b.value(elem, n)
			i++
		}
	}
}
