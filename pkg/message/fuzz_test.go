package message

import (
	"bytes"
	"testing"
)

// FuzzParseHeader: no panic on any input, and whatever parses survives a
// rewrite of its text fields: the result parses again with the same
// author, and the body bytes are kept.
func FuzzParseHeader(f *testing.F) {
	for _, s := range []string{
		"From: a@example.org\r\nSubject: hi\r\n\r\nbody",
		"From: \"x\" <a@example.org>\r\nTo: b@example.net\r\nThread-Topic: =?utf-8?b?w7w=?=\r\n\r\n",
		"From: a@example.org\r\nContent-Type: multipart/signed; boundary=x; protocol=\"application/pkcs7-signature\"\r\n\r\n--x\r\n",
		"From: a@example.org\r\nX-A: 1\r\n 2\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		h, err := ParseHeader(raw)
		if err != nil {
			return
		}
		body := raw[h.End:]
		out := h.RewriteText(raw, func(f *Field) string { return f.Decoded + " x" })
		h2, err := ParseHeader(out)
		if err != nil {
			t.Fatalf("rewritten header does not parse: %v\n%q", err, out)
		}
		if h2.From != h.From {
			t.Fatalf("author changed: %+v → %+v", h.From, h2.From)
		}
		if !bytes.Equal(out[h2.End:], body) {
			t.Fatalf("body changed")
		}
	})
}
