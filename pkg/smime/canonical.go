package smime

import (
	"bytes"
	"mime/quotedprintable"
	"strings"
)

// maxLine is the SMTP line limit (RFC 5322 §2.1.1) without CRLF; longer
// lines get rewrapped by relays, so they must be encoded before signing.
const maxLine = 998

// needsEncoding reports whether a 7bit transport could alter body: 8-bit
// bytes, NUL, bare CR, over-long lines, trailing whitespace (stripped by
// some relays) and lines starting with "From " (escaped by mbox stores).
func needsEncoding(body []byte) bool {
	col := 0
	for i, c := range body {
		switch {
		case c >= 0x80 || c == 0:
			return true
		case c == '\n':
			if i > 0 && (body[i-1] == ' ' || body[i-1] == '\t' ||
				body[i-1] == '\r' && i > 1 && (body[i-2] == ' ' || body[i-2] == '\t')) {
				return true
			}
			col = 0
			continue
		case c == '\r' && (i+1 >= len(body) || body[i+1] != '\n'):
			return true
		case col == 0 && c == 'F' && bytes.HasPrefix(body[i:], []byte("From ")):
			return true
		}
		col++
		if col > maxLine {
			return true
		}
	}
	return false
}

// appendCanonicalEntity writes a MIME entity (fields + body) in the
// canonical form RFC 8551 §3.1 requires before signing: CRLF line ends,
// and every part that is not 7bit-safe re-encoded (text as
// quoted-printable, everything else as base64) so that the signed bytes
// survive any relay unchanged. Multiparts and message/rfc822 are
// canonicalised part by part. depth bounds the recursion.
func appendCanonicalEntity(dst []byte, fields []field, body []byte, depth int) []byte {
	mt, params := mediaType(fields)
	if headerValue(fields, "content-type") == "" {
		fields = append([]field{{name: "content-type", raw: []byte("Content-Type: text/plain; charset=us-ascii\r\n")}}, fields...)
	}
	cte := strings.ToLower(headerValue(fields, "content-transfer-encoding"))
	identity := cte == "" || cte == "7bit" || cte == "8bit" || cte == "binary"
	switch {
	case depth < 20 && strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" && identity:
		if cte == "8bit" || cte == "binary" {
			fields = replaceField(fields, "content-transfer-encoding", "Content-Transfer-Encoding: 7bit")
		}
		dst = appendFields(dst, fields)
		dst = append(dst, '\r', '\n')
		return appendCanonicalMultipart(dst, body, params["boundary"], depth)
	case depth < 20 && mt == "message/rfc822" && identity:
		if cte == "8bit" || cte == "binary" {
			fields = replaceField(fields, "content-transfer-encoding", "Content-Transfer-Encoding: 7bit")
		}
		dst = appendFields(dst, fields)
		dst = append(dst, '\r', '\n')
		inner, ibody := splitMessage(body)
		// The embedded message's own headers are written as they are;
		// its content is canonicalised like any entity.
		return appendCanonicalEntity(dst, inner, ibody, depth+1)
	case identity && needsEncoding(body):
		if strings.HasPrefix(mt, "text/") {
			fields = replaceField(fields, "content-transfer-encoding", "Content-Transfer-Encoding: quoted-printable")
			dst = appendFields(dst, fields)
			dst = append(dst, '\r', '\n')
			return appendQP(dst, body)
		}
		fields = replaceField(fields, "content-transfer-encoding", "Content-Transfer-Encoding: base64")
		dst = appendFields(dst, fields)
		dst = append(dst, '\r', '\n')
		return appendBase64Lines(dst, body)
	default:
		dst = appendFields(dst, fields)
		dst = append(dst, '\r', '\n')
		return appendCRLF(dst, body)
	}
}

func replaceField(fields []field, name, line string) []field {
	out := make([]field, 0, len(fields)+1)
	for _, f := range fields {
		if f.name != name {
			out = append(out, f)
		}
	}
	return append(out, field{name: name, raw: []byte(line + "\r\n")})
}

// appendQP encodes text as quoted-printable with CRLF line breaks; the
// text's own line breaks stay hard breaks.
func appendQP(dst []byte, body []byte) []byte {
	var buf bytes.Buffer
	w := quotedprintable.NewWriter(&buf)
	w.Write(body)
	w.Close()
	qp := buf.Bytes()
	// "From " at a line start would be mangled to ">From " by mbox
	// stores; =46 is the same letter in quoted-printable.
	if bytes.HasPrefix(qp, []byte("From ")) {
		qp = append([]byte("=46"), qp[1:]...)
	}
	qp = bytes.ReplaceAll(qp, []byte("\nFrom "), []byte("\n=46rom "))
	return appendCRLF(dst, qp)
}

// appendCanonicalMultipart canonicalises each body part between the
// boundary delimiters; preamble and epilogue are only CRLF-normalised.
func appendCanonicalMultipart(dst, body []byte, boundary string, depth int) []byte {
	delim := []byte("--" + boundary)
	// Find delimiter lines.
	pos := 0
	var lines []int // offsets of delimiter line starts
	var closeAt = -1
	for pos <= len(body) {
		i := bytes.Index(body[pos:], delim)
		if i < 0 {
			break
		}
		at := pos + i
		if at == 0 || body[at-1] == '\n' {
			after := body[at+len(delim):]
			if bytes.HasPrefix(after, []byte("--")) {
				lines = append(lines, at)
				closeAt = at
				break
			}
			rest := bytes.TrimLeft(after, " \t")
			if len(rest) == 0 || rest[0] == '\r' || rest[0] == '\n' {
				lines = append(lines, at)
			}
		}
		pos = at + len(delim)
	}
	if len(lines) == 0 {
		return appendCRLF(dst, body)
	}
	lineEnd := func(at int) int { // offset after the delimiter line's LF
		j := bytes.IndexByte(body[at:], '\n')
		if j < 0 {
			return len(body)
		}
		return at + j + 1
	}
	// contentEnd strips the line break that belongs to the next delimiter.
	contentEnd := func(next int) int {
		e := next
		if e > 0 && body[e-1] == '\n' {
			e--
			if e > 0 && body[e-1] == '\r' {
				e--
			}
		}
		return e
	}
	dst = appendCRLF(dst, body[:contentEnd(lines[0])])
	if lines[0] > 0 {
		dst = append(dst, '\r', '\n')
	}
	for k, at := range lines {
		if at == closeAt {
			dst = append(dst, delim...)
			dst = append(dst, '-', '-')
			end := lineEnd(at)
			if end > at+len(delim)+2 || end == len(body) && len(body) > at+len(delim)+2 {
				tail := body[at+len(delim)+2:]
				dst = appendCRLF(dst, tail)
			}
			return dst
		}
		dst = append(dst, delim...)
		dst = append(dst, '\r', '\n')
		start := lineEnd(at)
		var end int
		if k+1 < len(lines) {
			end = contentEnd(lines[k+1])
		} else {
			end = len(body)
		}
		if start > end {
			start = end
		}
		pf, pb := splitMessage(body[start:end])
		dst = appendCanonicalEntity(dst, pf, pb, depth+1)
		if k+1 < len(lines) {
			dst = append(dst, '\r', '\n')
		}
	}
	// No closing delimiter: write one so the structure is valid.
	dst = append(dst, '\r', '\n')
	dst = append(dst, delim...)
	return append(dst, '-', '-', '\r', '\n')
}
