package message

// Addresses are compared ignoring the case of ASCII letters only. Unicode
// case folding maps distinct characters together (the Kelvin sign K to
// k, the long s ſ to s): an address that merely folds to a user's would
// then pass for it, be signed as the user, or match the user's
// certificate.

// LowerASCII lowercases A-Z and leaves every other byte as it is: the
// gateway's key for users, certificates, passwords and visible recipients.
func LowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// SameAddress says whether a and b are one address, ASCII case ignored.
func SameAddress(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerByte(a[i]) != lowerByte(b[i]) {
			return false
		}
	}
	return true
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// IsASCII reports whether s has only 7-bit bytes.
func IsASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// IsFieldName reports whether name is a header field name (RFC 5322
// §2.2: one or more printable ASCII characters other than colon).
func IsFieldName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}
