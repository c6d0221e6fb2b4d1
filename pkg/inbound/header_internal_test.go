package inbound

import "testing"

func TestToCRLF(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"a", "a"},
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\nb\n", "a\r\nb\r\n"},
		{"\n", "\r\n"},
		{"\r\n\n", "\r\n\r\n"},
		{"a\r\nb\nc", "a\r\nb\r\nc"},
		{"\r", "\r"},
	} {
		if got := string(toCRLF([]byte(tc.in))); got != tc.want {
			t.Errorf("toCRLF(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
