package dkim

import (
	"bytes"
	"crypto"
	"strings"
	"testing"
)

// bigMessage is a 1 MB S/MIME-enveloped message as sealgate sends it:
// base64 in 76-character lines.
func bigMessage() []byte {
	var b bytes.Buffer
	b.WriteString(strings.SplitN(envelopedMsg, "\r\n\r\n", 2)[0] + "\r\n\r\n")
	line := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldY", 3)[:76] + "\r\n"
	for b.Len() < 1<<20 {
		b.WriteString(line)
	}
	return b.Bytes()
}

func BenchmarkSign1MB(b *testing.B) {
	msg := bigMessage()
	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{{"rsa2048", rsaKey(b)}, {"ed25519", edKey(b)}} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := New(Config{Selector: "sg", Domains: []string{"example.org"}, Key: tc.key})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, res, err := s.Sign(msg); err != nil || !res.Signed {
					b.Fatal(res, err)
				}
			}
		})
	}
}
