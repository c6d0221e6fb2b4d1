package inbound

import (
	"bytes"
	"strings"
)

// field is one header field with its raw lines (CRLF included).
type field struct {
	name string // as written
	raw  []byte
}

// splitHeader separates the header block from the body. ok is false when
// data does not begin with a well-formed header block (every line up to
// the empty one a field or a continuation): bare content.
func splitHeader(data []byte) (fields []field, body []byte, ok bool) {
	pos := 0
	for pos < len(data) {
		end := bytes.IndexByte(data[pos:], '\n')
		var line []byte
		next := len(data)
		if end >= 0 {
			next = pos + end + 1
		}
		line = data[pos:next]
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 {
			return fields, data[next:], true
		}
		if trimmed[0] == ' ' || trimmed[0] == '\t' {
			if len(fields) == 0 {
				return nil, data, false
			}
			fields[len(fields)-1].raw = append(fields[len(fields)-1].raw, line...)
			pos = next
			continue
		}
		colon := bytes.IndexByte(trimmed, ':')
		if colon <= 0 || !validName(trimmed[:colon]) {
			return nil, data, false
		}
		fields = append(fields, field{name: string(trimmed[:colon]), raw: append([]byte(nil), line...)})
		pos = next
	}
	// A header block without body.
	return fields, nil, len(fields) > 0
}

func validName(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 127 || c == ':' {
			return false
		}
	}
	return true
}

// value is the unfolded value of a field.
func (f field) value() string {
	v := string(f.raw[len(f.name)+1:])
	v = strings.NewReplacer("\r\n", "", "\n", "").Replace(v)
	return strings.TrimSpace(v)
}

func (f field) is(name string) bool { return strings.EqualFold(f.name, name) }

func isContent(name string) bool {
	n := strings.ToLower(name)
	return strings.HasPrefix(n, "content-") || n == "mime-version"
}

// looksLikeEntity reports whether the parsed header block is really a
// MIME entity's or a message's header rather than a bare text whose first
// line happens to contain a colon ("Note: ..."): it must name a content or
// message field.
func looksLikeEntity(fields []field) bool {
	for _, f := range fields {
		switch strings.ToLower(f.name) {
		case "mime-version", "from", "to", "cc", "subject", "date", "message-id":
			return true
		}
		if isContent(f.name) {
			return true
		}
	}
	return false
}

func headerValue(fields []field, name string) string {
	for _, f := range fields {
		if f.is(name) {
			return f.value()
		}
	}
	return ""
}

// toCRLF turns bare LF line ends into CRLF. Mail that is CRLF already
// (the usual case) comes back as it is, without a copy; otherwise whole
// runs between line ends are copied at once.
func toCRLF(b []byte) []byte {
	bare := 0
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			break
		}
		if i+j == 0 || b[i+j-1] != '\r' {
			bare++
		}
		i += j + 1
	}
	if bare == 0 {
		return b
	}
	out := make([]byte, 0, len(b)+bare)
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return append(out, b[i:]...)
		}
		out = append(out, b[i:i+j]...)
		if i+j == 0 || b[i+j-1] != '\r' {
			out = append(out, '\r')
		}
		out = append(out, '\n')
		i += j + 1
	}
}

func appendFields(dst []byte, fields []field) []byte {
	for _, f := range fields {
		dst = append(dst, f.raw...)
		if !bytes.HasSuffix(f.raw, []byte("\n")) {
			dst = append(dst, "\r\n"...)
		}
	}
	return dst
}
