package policy

import (
	"fmt"
	"regexp"
	"strings"
)

// ParseHeaderCondition splits a header condition "Name: value" into the
// header name and the value (or pattern), both trimmed of surrounding
// white space. The name must be a valid RFC 5322 field name (printable
// ASCII without ':' or spaces); the value must not be empty.
func ParseHeaderCondition(s string) (name, value string, err error) {
	colon := strings.IndexByte(s, ':')
	if colon < 0 {
		return "", "", fmt.Errorf("%q has no ':' (write \"Name: value\")", s)
	}
	name = s[:colon]
	if name == "" {
		return "", "", fmt.Errorf("%q has no header name before ':'", s)
	}
	for _, r := range name {
		if r < 33 || r > 126 {
			return "", "", fmt.Errorf("header name %q contains %q, which a header name cannot contain (write \"Name: value\", no space before ':')", name, r)
		}
	}
	value = strings.TrimSpace(s[colon+1:])
	if value == "" {
		return "", "", fmt.Errorf("%q has no value after ':'", s)
	}
	return name, value, nil
}

// headerEquals is a compiled `header` entry: the field is present with
// this value, compared case-insensitively after trimming white space.
type headerEquals struct {
	name  string // lowercase
	value string // lowercase, trimmed
	text  string // as configured, for explanations
}

// headerMatches is a compiled `header_match` entry: a regular expression
// (RE2, case-insensitive, unanchored) matching the value of any field of
// that name.
type headerMatches struct {
	name string // lowercase
	re   *regexp.Regexp
	text string
}

// compileHeaderEquals parses a `header` entry.
func compileHeaderEquals(s string) (headerEquals, error) {
	name, value, err := ParseHeaderCondition(s)
	if err != nil {
		return headerEquals{}, err
	}
	return headerEquals{name: lower(name), value: lower(value), text: s}, nil
}

// compileHeaderMatches parses a `header_match` entry. Matching is
// case-insensitive like `header`, so that "Confidential" in a rule also
// catches a label written "CONFIDENTIAL".
func compileHeaderMatches(s string) (headerMatches, error) {
	name, pattern, err := ParseHeaderCondition(s)
	if err != nil {
		return headerMatches{}, err
	}
	if _, err := regexp.Compile(pattern); err != nil {
		return headerMatches{}, fmt.Errorf("header %s: pattern %q is not a valid regular expression: %w", name, pattern, err)
	}
	re, err := regexp.Compile("(?i)" + pattern)
	if err != nil {
		return headerMatches{}, fmt.Errorf("header %s: pattern %q: %w", name, pattern, err)
	}
	return headerMatches{name: lower(name), re: re, text: s}, nil
}
