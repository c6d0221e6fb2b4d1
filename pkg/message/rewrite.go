package message

import (
	"mime"
	"strings"
	"unicode/utf8"
)

// unstructured are the fields whose value is free text (RFC 5322 3.6.5,
// Exchange's Thread-Topic, and every X- field by convention): they may be
// rewritten as encoded words. A structured field (addresses, Content-*,
// Received, DKIM-Signature …) is never re-encoded.
func unstructured(name string) bool {
	switch name {
	case "Subject", "Comments", "Thread-Topic", "Keywords":
		return true
	}
	return strings.HasPrefix(name, "X-")
}

// Unstructured reports whether the field's value is free text that
// RewriteText may change.
func (f *Field) Unstructured() bool { return unstructured(f.Name) }

// RewriteText returns raw (the message this header was parsed from) with
// the decoded value of every unstructured field replaced by what edit
// returns for it; fields edit leaves unchanged keep their bytes. A field
// edit empties is removed. The result is a new slice, or raw itself when
// nothing changed.
func (h *Header) RewriteText(raw []byte, edit func(f *Field) string) []byte {
	var out []byte
	last := 0
	for i := range h.Fields {
		f := &h.Fields[i]
		if !f.Unstructured() {
			continue
		}
		v := edit(f)
		if v == f.Decoded {
			continue
		}
		if out == nil {
			out = make([]byte, 0, len(raw))
		}
		out = append(out, raw[last:f.Start]...)
		if v != "" || f.Name == "Subject" {
			out = append(out, FormatField(f.Name, v)...)
		}
		last = f.Start + len(f.Raw)
	}
	if out == nil {
		return raw
	}
	return append(out, raw[last:]...)
}

// FormatField renders an unstructured field: ASCII as it is, anything
// else as UTF-8 Q encoded words, folded at spaces so that lines stay short.
func FormatField(name, value string) string {
	value = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, value)
	if !isPrintableASCII(value) || strings.Contains(value, "=?") {
		value = mime.QEncoding.Encode("utf-8", value)
	}
	return fold(name+": "+value) + "\r\n"
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return utf8.ValidString(s)
}

// fold breaks a field line before spaces so that lines stay within 78
// characters where a space allows it.
func fold(line string) string {
	if len(line) <= 78 {
		return line
	}
	var b strings.Builder
	col := 0
	for i, word := range strings.Split(line, " ") {
		if i > 0 {
			if col+1+len(word) > 78 && i > 1 {
				b.WriteString("\r\n ")
				col = 1
			} else {
				b.WriteByte(' ')
				col++
			}
		}
		b.WriteString(word)
		col += len(word)
	}
	return b.String()
}
