package config

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with the configuration file. Key is the key
// path as an admin would search for it in the file (policy.rules[1].encrypt),
// Line its 1-based line (0 when the key is absent and nothing near it is in
// the file), Message what is wrong, and Hint what to do about it.
type Problem struct {
	Key     string `json:"key"`
	Line    int    `json:"line"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

// String formats the problem as "line: key: message (hint)" without the
// file name.
func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "%d: ", p.Line)
	}
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	if p.Hint != "" {
		fmt.Fprintf(&b, " (%s)", p.Hint)
	}
	return b.String()
}

// Errors is every problem Load found in one file. It is returned whole so
// that an admin fixes the file in one round instead of one error per run.
type Errors struct {
	File     string    // the path as given to Load
	Problems []Problem // in file order; problems without a line come last
}

// Error lists one problem per line, each prefixed with file and line like a
// compiler does, so editors can jump to it:
//
//	config.example.toml:12: pki.validity: "8760" is not a duration (use e.g. "720h")
func (e *Errors) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		sep := ":"
		if p.Line == 0 {
			sep = ": "
		}
		lines[i] = e.File + sep + p.String()
	}
	return strings.Join(lines, "\n")
}

// problems collects Problems while decoding and validating.
type problems struct {
	list  []Problem
	lines map[string]int
}

// add records a problem at key. The line is the first of key, then the
// alternatives in near, then the key's ancestors that appear in the file,
// so a missing key still points at the section or the key that needs it.
//
// A problem under a key that already has one is dropped: an entry that
// could not be decoded would otherwise also be reported for each of its
// keys that validation then finds missing.
func (ps *problems) add(key string, near []string, message, hint string) {
	for _, p := range ps.list {
		if p.Key == key || strings.HasPrefix(key, p.Key+".") || strings.HasPrefix(key, p.Key+"[") {
			return
		}
	}
	ps.list = append(ps.list, Problem{Key: key, Line: ps.lineNear(key, near...), Message: message, Hint: hint})
}

// has reports whether key already has a problem (its value could not be
// decoded, so it still holds the default).
func (ps *problems) has(key string) bool {
	for _, p := range ps.list {
		if p.Key == key {
			return true
		}
	}
	return false
}

func (ps *problems) lineNear(key string, near ...string) int {
	if l := ps.lines[key]; l > 0 {
		return l
	}
	for _, n := range near {
		if l := ps.lines[n]; l > 0 {
			return l
		}
	}
	for k := parentPath(key); k != ""; k = parentPath(k) {
		if l := ps.lines[k]; l > 0 {
			return l
		}
	}
	return 0
}

// sorted returns the problems in file order (stable for equal lines),
// problems without a line last.
func (ps *problems) sorted() []Problem {
	out := append([]Problem(nil), ps.list...)
	sort.SliceStable(out, func(i, j int) bool {
		li, lj := out[i].Line, out[j].Line
		if (li == 0) != (lj == 0) {
			return lj == 0
		}
		return li < lj
	})
	return out
}

// parentPath strips the last element of a key path: "a.b[2].c" → "a.b[2]",
// "a.b[2]" → "a.b", "a" → "".
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

// joinKey appends one key to a path.
func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// indexKey addresses element i of the array at path.
func indexKey(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }
