package cms

import (
	"errors"
	"fmt"
)

// maxBERDepth bounds recursion so that hostile input cannot exhaust the
// stack; real CMS nests about a dozen levels.
const maxBERDepth = 64

// ErrMalformed is returned for input that is not valid BER/DER CMS.
var ErrMalformed = errors.New("malformed CMS structure")

// NormalizeBER converts BER as written by gpgsm, NSS and streaming openssl
// (indefinite lengths, constructed strings) into DER so that the strict
// cryptobyte parser can read it. Already-DER input is returned unchanged
// without copying, which matters for large messages.
func NormalizeBER(b []byte) ([]byte, error) {
	needs, err := needsNormalizing(b, 0)
	if err != nil {
		return nil, err
	}
	if !needs {
		return b, nil
	}
	out, rest, err := berElement(b, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		// Trailing bytes after the outer element (padding some tools add):
		// ignore only zero padding.
		for _, c := range rest {
			if c != 0 {
				return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(rest))
			}
		}
	}
	return out, nil
}

type berHeader struct {
	class, tag    int
	constructed   bool
	indefinite    bool
	length        int
	headerLen     int
	identifierRaw []byte
}

func readBERHeader(b []byte) (berHeader, error) {
	var h berHeader
	if len(b) < 2 {
		return h, fmt.Errorf("%w: truncated header", ErrMalformed)
	}
	i := 0
	h.class = int(b[0] >> 6)
	h.constructed = b[0]&0x20 != 0
	h.tag = int(b[0] & 0x1f)
	i++
	if h.tag == 0x1f {
		h.tag = 0
		for {
			if i >= len(b) || i > 5 {
				return h, fmt.Errorf("%w: bad tag", ErrMalformed)
			}
			c := b[i]
			i++
			h.tag = h.tag<<7 | int(c&0x7f)
			if c&0x80 == 0 {
				break
			}
		}
	}
	h.identifierRaw = b[:i]
	if i >= len(b) {
		return h, fmt.Errorf("%w: truncated length", ErrMalformed)
	}
	l := b[i]
	i++
	switch {
	case l == 0x80:
		if !h.constructed {
			return h, fmt.Errorf("%w: indefinite length on primitive", ErrMalformed)
		}
		h.indefinite = true
	case l < 0x80:
		h.length = int(l)
	default:
		n := int(l & 0x7f)
		if n > 4 || i+n > len(b) {
			return h, fmt.Errorf("%w: bad length", ErrMalformed)
		}
		for j := 0; j < n; j++ {
			h.length = h.length<<8 | int(b[i+j])
		}
		i += n
		if h.length < 0 {
			return h, fmt.Errorf("%w: bad length", ErrMalformed)
		}
	}
	h.headerLen = i
	if !h.indefinite && h.length > len(b)-i {
		return h, fmt.Errorf("%w: length %d exceeds data", ErrMalformed, h.length)
	}
	return h, nil
}

// isStringTag reports universal string types that BER may split into
// constructed chunks and DER must not.
func isStringTag(h berHeader) bool {
	if h.class != 0 {
		return false
	}
	switch h.tag {
	case 3, 4, 12, 19, 20, 22, 26, 28, 30:
		return true
	}
	return false
}

func needsNormalizing(b []byte, depth int) (bool, error) {
	if depth > maxBERDepth {
		return false, fmt.Errorf("%w: nesting too deep", ErrMalformed)
	}
	for len(b) > 0 {
		h, err := readBERHeader(b)
		if err != nil {
			return false, err
		}
		if h.indefinite || (h.constructed && isStringTag(h)) {
			return true, nil
		}
		// Non-minimal long-form lengths are BER too.
		if h.headerLen-len(h.identifierRaw) > 1 && h.length < 0x80 {
			return true, nil
		}
		body := b[h.headerLen : h.headerLen+h.length]
		if h.constructed {
			if n, err := needsNormalizing(body, depth+1); err != nil || n {
				return n, err
			}
		}
		b = b[h.headerLen+h.length:]
	}
	return false, nil
}

// berElement converts one element and returns its DER and the remainder.
func berElement(b []byte, depth int) ([]byte, []byte, error) {
	if depth > maxBERDepth {
		return nil, nil, fmt.Errorf("%w: nesting too deep", ErrMalformed)
	}
	h, err := readBERHeader(b)
	if err != nil {
		return nil, nil, err
	}
	if !h.constructed {
		end := h.headerLen + h.length
		return appendDERHeader(append([]byte(nil), h.identifierRaw...), h.length, b[h.headerLen:end]), b[end:], nil
	}
	var children [][]byte
	var rest []byte
	if h.indefinite {
		rest = b[h.headerLen:]
		for {
			if len(rest) < 2 {
				return nil, nil, fmt.Errorf("%w: missing end-of-contents", ErrMalformed)
			}
			if rest[0] == 0 && rest[1] == 0 {
				rest = rest[2:]
				break
			}
			var c []byte
			c, rest, err = berElement(rest, depth+1)
			if err != nil {
				return nil, nil, err
			}
			children = append(children, c)
		}
	} else {
		body := b[h.headerLen : h.headerLen+h.length]
		rest = b[h.headerLen+h.length:]
		for len(body) > 0 {
			var c []byte
			c, body, err = berElement(body, depth+1)
			if err != nil {
				return nil, nil, err
			}
			children = append(children, c)
		}
	}
	if isStringTag(h) {
		// Concatenate the chunks into one primitive string.
		var content []byte
		for _, c := range children {
			ch, err := readBERHeader(c)
			if err != nil {
				return nil, nil, err
			}
			content = append(content, c[ch.headerLen:]...)
		}
		id := append([]byte(nil), h.identifierRaw...)
		id[0] &^= 0x20
		return appendDERHeader(id, len(content), content), rest, nil
	}
	n := 0
	for _, c := range children {
		n += len(c)
	}
	out := make([]byte, 0, len(h.identifierRaw)+6+n)
	out = append(out, h.identifierRaw...)
	out = appendLength(out, n)
	for _, c := range children {
		out = append(out, c...)
	}
	return out, rest, nil
}

func appendDERHeader(id []byte, n int, content []byte) []byte {
	out := appendLength(id, n)
	return append(out, content...)
}

// appendLength appends a DER definite length.
func appendLength(b []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n < 0x100:
		return append(b, 0x81, byte(n))
	case n < 0x10000:
		return append(b, 0x82, byte(n>>8), byte(n))
	case n < 0x1000000:
		return append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		return append(b, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// derHeader returns the tag byte followed by the DER length n.
func derHeader(tag byte, n int) []byte {
	return appendLength([]byte{tag}, n)
}
