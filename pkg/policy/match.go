package policy

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Case-insensitivity in this package is "lowercase both sides with
// unicode.ToLower, rune by rune" everywhere — in the index and in the rule
// evaluation alike — so that the index can never disagree with the rules.
// Rule values are lowered once at compile time; facts are lowered into
// stack buffers (or compared rune by rune) while deciding.

// appendLower appends s lowercased to dst. Invalid UTF-8 bytes become
// U+FFFD, on both sides of every comparison.
func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		dst = utf8.AppendRune(dst, unicode.ToLower(r))
		i += n
	}
	return dst
}

// lower is appendLower for compile time, where allocating is fine.
func lower(s string) string { return string(appendLower(nil, s)) }

// nextLower returns the lowercased rune at s[i:] and its width.
func nextLower(s string, i int) (rune, int) {
	c := s[i]
	if c < utf8.RuneSelf {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		return rune(c), 1
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	return unicode.ToLower(r), n
}

// hasPrefixLower reports whether s, lowercased, starts with low (already
// lowercase), and how many bytes of s that prefix spans.
func hasPrefixLower(s, low string) (int, bool) {
	i, j := 0, 0
	for j < len(low) {
		if i >= len(s) {
			return 0, false
		}
		if c, l := s[i], low[j]; c < utf8.RuneSelf && l < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != l {
				return 0, false
			}
			i++
			j++
			continue
		}
		r, n := nextLower(s, i)
		lr, ln := utf8.DecodeRuneInString(low[j:])
		if r != lr {
			return 0, false
		}
		i += n
		j += ln
	}
	return i, true
}

// equalLower reports whether s lowercased equals low.
func equalLower(s, low string) bool {
	n, ok := hasPrefixLower(s, low)
	return ok && n == len(s)
}

// indexLower returns the byte offset in s of the first occurrence of low
// (lowercase) in s lowercased, the length of that occurrence in s, or -1.
func indexLower(s, low string) (int, int) {
	if low == "" {
		return 0, 0
	}
	first := low[0]
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			// An ASCII byte only starts a match when it lowers to the
			// tag's first byte: skip the others without a call.
			if c != first && c|0x20 != first {
				i++
				continue
			}
		}
		if n, ok := hasPrefixLower(s[i:], low); ok {
			return i, n
		}
		_, w := utf8.DecodeRuneInString(s[i:])
		i += w
	}
	return -1, 0
}

// globMatch matches s (lowercased) against a lowercased pattern in which
// '*' stands for any run of characters and '?' for one character. No
// character classes, no escapes: addresses don't need them.
func globMatch(pattern string, s []byte) bool {
	p, i := 0, 0
	starP, starI := -1, 0
	for i < len(s) {
		if p < len(pattern) {
			switch pattern[p] {
			case '*':
				starP, starI = p, i
				p++
				continue
			case '?':
				_, n := utf8.DecodeRune(s[i:])
				p++
				i += n
				continue
			default:
				pr, pn := utf8.DecodeRuneInString(pattern[p:])
				sr, sn := utf8.DecodeRune(s[i:])
				if pr == sr {
					p += pn
					i += sn
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last '*' swallow one more character and retry.
		_, n := utf8.DecodeRune(s[starI:])
		starI += n
		p, i = starP+1, starI
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// domainOf returns the part of a (lowercased) address after the last '@',
// without a trailing dot; nil when there is no '@'.
func domainOf(addr []byte) []byte {
	at := -1
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == '@' {
			at = i
			break
		}
	}
	if at < 0 {
		return nil
	}
	d := addr[at+1:]
	for len(d) > 0 && d[len(d)-1] == '.' {
		d = d[:len(d)-1]
	}
	return d
}

// StripTag removes the first occurrence of tag (case-insensitive) from
// subject and tidies the spaces around it: "[secure] Offer" → "Offer",
// "Re: [SECURE]  Offer" → "Re: Offer". The pipeline calls it when a
// Decision says StripSubjectTag.
func StripTag(subject, tag string) string {
	low := lower(tag)
	i, n := indexLower(subject, low)
	if i < 0 || low == "" {
		return subject
	}
	before := strings.TrimRight(subject[:i], " \t")
	after := strings.TrimLeft(subject[i+n:], " \t")
	switch {
	case before == "":
		return after
	case after == "":
		return before
	default:
		return before + " " + after
	}
}

// appendLowerBounded is appendLower that gives up (ok false) once the
// result would exceed limit bytes. With cap(dst) >= limit+utf8.UTFMax it
// never reallocates, which keeps Decide's buffers on the stack.
func appendLowerBounded(dst []byte, s string, limit int) ([]byte, bool) {
	// Fast path: addresses and header names are nearly always ASCII.
	if len(dst)+len(s) <= limit {
		i := 0
		for ; i < len(s); i++ {
			c := s[i]
			if c >= utf8.RuneSelf {
				break
			}
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
		}
		if i == len(s) {
			return dst, true
		}
		s = s[i:]
	}
	for i := 0; i < len(s); {
		if len(dst) > limit {
			return dst, false
		}
		r, n := nextLower(s, i)
		if r < utf8.RuneSelf {
			dst = append(dst, byte(r))
		} else {
			dst = utf8.AppendRune(dst, r)
		}
		i += n
	}
	return dst, len(dst) <= limit
}
