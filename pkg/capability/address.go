package capability

import (
	"fmt"
	"strings"
)

// FieldError is an input the API refuses, naming the field (a JSON path
// or parameter name) so the caller can fix it.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Address limits (RFC 5321 §4.5.3.1).
const (
	maxAddress = 254
	maxLocal   = 64
	maxLabel   = 63
)

// CheckAddress accepts a bare address as a mail client sends it to the
// gateway: local@domain, ASCII only, a dot-atom local part and a host
// name of letters, digits and hyphens (internationalized domains in
// their xn-- form). Everything else is refused rather than read some
// way: display names, angle brackets, quoted local parts, comments,
// address literals, control characters, RFC 2047 encoded words, and any
// non-ASCII character, so that a look-alike (a Cyrillic "а", a
// fullwidth "＠") is never answered for as if it were another address.
func CheckAddress(field, s string) error {
	bad := func(format string, args ...any) error {
		return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case s == "":
		return bad("an address is required (local@domain)")
	case len(s) > maxAddress:
		return bad("longer than %d characters", maxAddress)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x80 {
			return bad("only ASCII is accepted: write an internationalized domain in its xn-- form")
		} else if c <= ' ' || c == 0x7f {
			return bad("control characters and spaces are not allowed")
		}
	}
	if strings.Contains(s, "=?") {
		// RFC 2047 forbids encoded words in an address; a reader that
		// decodes one anyway would see another address than we did.
		return bad("an encoded word (=?charset?...?=) is not an address: send the address itself")
	}
	at := strings.IndexByte(s, '@')
	if at < 0 || strings.IndexByte(s[at+1:], '@') >= 0 {
		return bad("want exactly one @ (local@domain)")
	}
	local, domain := s[:at], s[at+1:]
	if err := checkLocal(local); err != "" {
		return bad("local part: %s", err)
	}
	if err := checkDomain(domain); err != "" {
		return bad("domain: %s", err)
	}
	return nil
}

// atext of RFC 5322 §3.2.3, besides letters and digits.
const atextSpecials = "!#$%&'*+-/=?^_`{|}~"

func checkLocal(l string) string {
	switch {
	case l == "":
		return "empty"
	case len(l) > maxLocal:
		return fmt.Sprintf("longer than %d characters", maxLocal)
	case l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, ".."):
		return "dots only between characters"
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !isAlnum(c) && c != '.' && strings.IndexByte(atextSpecials, c) < 0 {
			return fmt.Sprintf("character %q is not allowed (no quoting, comments or display names)", c)
		}
	}
	return ""
}

func checkDomain(d string) string {
	if d == "" {
		return "empty"
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return "want a fully qualified host name (example.org)"
	}
	for _, lb := range labels {
		switch {
		case lb == "":
			return "empty label"
		case len(lb) > maxLabel:
			return fmt.Sprintf("a label is longer than %d characters", maxLabel)
		case lb[0] == '-' || lb[len(lb)-1] == '-':
			return "a label starts or ends with a hyphen"
		}
		for i := 0; i < len(lb); i++ {
			if c := lb[i]; !isAlnum(c) && c != '-' {
				return fmt.Sprintf("character %q is not allowed in a host name", c)
			}
		}
	}
	return ""
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
