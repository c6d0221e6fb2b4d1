package mtasts

import (
	"strings"
	"testing"
)

// BenchmarkParse: a typical policy (4 mx lines) and one at the 64 KiB
// limit (padded with unknown fields).
func BenchmarkParse(b *testing.B) {
	typical := []byte("version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmx: mx2.example.test\r\nmx: *.backup.example.test\r\nmx: mail.example.test\r\nmax_age: 604800\r\n")
	big := []byte("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1\n")
	big = append(big, strings.Repeat("x-pad: y\n", (MaxPolicyBytes-len(big))/9)...)
	for _, c := range []struct {
		name string
		body []byte
	}{{"typical", typical}, {"64KiB", big}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			for b.Loop() {
				if _, err := Parse(c.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
