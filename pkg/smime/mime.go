package smime

import (
	"github.com/sealgate/sealgate/pkg/message"

	"bytes"
	"encoding/base64"
	"fmt"
	"mime"
	"strings"
)

// field is one header field as it appeared, folded lines included.
type field struct {
	name string // canonical lower-case name
	raw  []byte // "Name: value\r\n" possibly with continuation lines
}

// value returns the unfolded, trimmed value.
func (f field) value() string {
	i := bytes.IndexByte(f.raw, ':')
	v := string(f.raw[i+1:])
	v = strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(v)
	return strings.TrimSpace(v)
}

// splitMessage separates the header block from the body. It accepts CRLF
// and bare LF line ends; the body is returned as is.
func splitMessage(msg []byte) ([]field, []byte) {
	var fields []field
	rest := msg
	for len(rest) > 0 {
		lineEnd := bytes.IndexByte(rest, '\n')
		var line []byte
		if lineEnd < 0 {
			line, lineEnd = rest, len(rest)-1
		} else {
			line = rest[:lineEnd+1]
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 {
			return fields, rest[lineEnd+1:]
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			last := &fields[len(fields)-1]
			last.raw = append(last.raw, line...)
		} else {
			name := ""
			if i := bytes.IndexByte(trimmed, ':'); i > 0 {
				name = strings.ToLower(strings.TrimSpace(string(trimmed[:i])))
			}
			fields = append(fields, field{name: name, raw: append([]byte(nil), line...)})
		}
		rest = rest[lineEnd+1:]
	}
	return fields, nil
}

func headerValue(fields []field, name string) string {
	for _, f := range fields {
		if f.name == name {
			return f.value()
		}
	}
	return ""
}

// isContentField tells the headers that describe the content and so go
// inside the signature or envelope (RFC 8551 §3.1); all others stay
// outside with the transport headers.
func isContentField(name string) bool {
	return strings.HasPrefix(name, "content-")
}

// partition splits fields into outer (transport) and content headers;
// MIME-Version is dropped since the caller writes its own.
func partition(fields []field) (outer, content []field) {
	for _, f := range fields {
		switch {
		case f.name == "mime-version":
		case isContentField(f.name):
			content = append(content, f)
		default:
			outer = append(outer, f)
		}
	}
	return outer, content
}

// appendCRLF appends src to dst with every bare LF turned into CRLF.
func appendCRLF(dst, src []byte) []byte {
	for len(src) > 0 {
		i := bytes.IndexByte(src, '\n')
		if i < 0 {
			return append(dst, src...)
		}
		if i > 0 && src[i-1] == '\r' {
			dst = append(dst, src[:i+1]...)
		} else {
			dst = append(dst, src[:i]...)
			dst = append(dst, '\r', '\n')
		}
		src = src[i+1:]
	}
	return dst
}

// hasBareLF reports whether b has an LF not preceded by CR.
func hasBareLF(b []byte) bool {
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return false
		}
		if i == 0 || b[i-1] != '\r' {
			return true
		}
		b = b[i+1:]
	}
}

func appendFields(dst []byte, fields []field) []byte {
	for _, f := range fields {
		dst = appendCRLF(dst, f.raw)
		if !bytes.HasSuffix(dst, []byte("\r\n")) {
			dst = append(dst, '\r', '\n')
		}
	}
	return dst
}

// mediaType parses the Content-Type of fields, defaulting to text/plain
// as RFC 2045 does.
func mediaType(fields []field) (string, map[string]string) {
	v := headerValue(fields, "content-type")
	if v == "" {
		return "text/plain", map[string]string{}
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		// Keep going with what can be read: the type before ';'.
		mt = strings.ToLower(strings.TrimSpace(strings.SplitN(v, ";", 2)[0]))
		params = map[string]string{}
	}
	return mt, params
}

// decodeBase64Body decodes a base64 body tolerating any line length,
// stray whitespace and missing padding.
func decodeBase64Body(b []byte) ([]byte, error) {
	clean := make([]byte, 0, len(b))
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			clean = append(clean, c)
		}
	}
	clean = bytes.TrimRight(clean, "=")
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, err := base64.RawStdEncoding.Decode(out, clean)
	if err != nil {
		return nil, err
	}
	return out[:n], nil
}

// lineWriter writes base64 text into buf in lines of 76 characters.
type lineWriter struct {
	buf *bytes.Buffer
	col int
}

func (l *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := 76 - l.col
		if k > len(p) {
			k = len(p)
		}
		l.buf.Write(p[:k])
		l.col += k
		p = p[k:]
		if l.col == 76 {
			l.buf.WriteString("\r\n")
			l.col = 0
		}
	}
	return n, nil
}

func (l *lineWriter) finish() {
	if l.col > 0 {
		l.buf.WriteString("\r\n")
		l.col = 0
	}
}

// base64Size is the size of base64 of n bytes in 76-column CRLF lines.
func base64Size(n int) int {
	e := (n + 2) / 3 * 4
	return e + (e/76+1)*2
}

// appendBase64Lines appends base64 of data in 76-column CRLF lines.
func appendBase64Lines(dst []byte, data []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(base64Size(len(data)))
	lw := &lineWriter{buf: &buf}
	enc := base64.NewEncoder(base64.StdEncoding, lw)
	enc.Write(data)
	enc.Close()
	lw.finish()
	return append(dst, buf.Bytes()...)
}

// checkFields refuses a header section with a line that is not a header
// field (RFC 5322 §2.2: a name of printable ASCII other than colon, then
// a colon) nor the folded continuation of one. Sign and Encrypt keep the
// transport fields outside the signature and the envelope, so such a
// line, which is message text (a message without header, say), would
// travel unsigned or, worse, in the clear beside the envelope. The error
// names the line, never its text, which may be confidential.
func checkFields(fields []field) error {
	line := 0
	for i, f := range fields {
		line++
		name, _, ok := bytes.Cut(f.raw, []byte(":"))
		name = bytes.TrimRight(name, " \t") // obsolete syntax allows WSP before the colon
		switch {
		case f.raw[0] == ' ' || f.raw[0] == '\t':
			return fmt.Errorf("%w: header line %d is folded but follows no field; a message must start with its header fields", ErrMalformed, line)
		case !ok || bytes.IndexByte(name, '\n') >= 0:
			return fmt.Errorf("%w: header line %d is not a field (no colon); separate the header from the body with an empty line", ErrMalformed, line)
		case !message.IsFieldName(name):
			return fmt.Errorf("%w: header line %d (field %d) has no valid field name (printable ASCII without spaces)", ErrMalformed, line, i+1)
		}
		line += bytes.Count(f.raw[:len(f.raw)-1], []byte("\n"))
	}
	return nil
}
