package message

import (
	"bytes"
	"strings"
	"testing"
)

func TestLineBreaker(t *testing.T) {
	for _, n := range []int{0, 1, 75, 76, 77, 152, 153} {
		var b bytes.Buffer
		lb := &LineBreaker{W: &b}
		in := strings.Repeat("A", n)
		// In uneven pieces, as an encoder writes.
		for i := 0; i < len(in); i += 7 {
			lb.Write([]byte(in[i:min(i+7, len(in))]))
		}
		lines := strings.Split(b.String(), "\r\n")
		if strings.Join(lines, "") != in {
			t.Fatalf("%d: content changed", n)
		}
		for i, l := range lines {
			if len(l) > 76 || (i < len(lines)-1 && len(l) != 76) {
				t.Fatalf("%d: line %d has %d characters", n, i, len(l))
			}
		}
		if strings.HasSuffix(b.String(), "\r\n") {
			t.Fatalf("%d: trailing CRLF", n)
		}
	}
}
