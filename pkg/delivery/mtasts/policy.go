// Package mtasts implements the sending side of SMTP MTA Strict Transport
// Security (RFC 8461): discovery through the _mta-sts TXT record, the
// policy fetched over HTTPS with a verified certificate, a strict parser,
// and a cache in the store (per max_age, keyed by the record's id) that
// every node shares.
//
// Everything here comes from outside — the TXT record, the HTTPS answer,
// its headers and body — and is checked before it means anything: a
// record or policy that is not exactly right is no policy.
package mtasts

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Modes of a policy.
const (
	ModeEnforce = "enforce"
	ModeTesting = "testing"
	ModeNone    = "none"
)

// MaxAge is the largest max_age RFC 8461 allows (one year).
const MaxAge = 31557600 * time.Second

// MaxPolicyBytes is the largest policy body accepted (RFC 8461 §3.3
// suggests 64 KiB).
const MaxPolicyBytes = 64 << 10

// ErrInvalid marks a TXT record or policy that does not parse.
var ErrInvalid = errors.New("mta-sts: invalid")

// Policy is a parsed policy.
type Policy struct {
	Mode   string
	MX     []string // patterns, lower case: "mx.example.test" or "*.example.test"
	MaxAge time.Duration
}

// Parse reads a policy body (RFC 8461 §3.2). It is strict: the version
// must be STSv1, mode one of enforce|testing|none, max_age a plain
// decimal of at most 10 digits no greater than 31557600, every mx a
// domain name or "*." and one, and mx present unless the mode is none.
// version, mode and max_age may appear once each; unknown fields are
// ignored as the RFC says.
func Parse(body []byte) (*Policy, error) {
	if len(body) > MaxPolicyBytes {
		return nil, fmt.Errorf("%w policy: %d bytes, more than %d", ErrInvalid, len(body), MaxPolicyBytes)
	}
	p := &Policy{}
	seen := map[string]bool{}
	for i, line := range strings.Split(string(body), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok || !fieldName(key) {
			return nil, fmt.Errorf("%w policy: line %d is not a field", ErrInvalid, i+1)
		}
		value = strings.Trim(value, " \t")
		for _, c := range []byte(value) {
			if (c < 0x21 || c > 0x7e) && c != ' ' && c != '\t' {
				return nil, fmt.Errorf("%w policy: line %d has a control or non-ASCII byte", ErrInvalid, i+1)
			}
		}
		if key != "mx" {
			if seen[key] && (key == "version" || key == "mode" || key == "max_age") {
				return nil, fmt.Errorf("%w policy: %s given twice", ErrInvalid, key)
			}
			seen[key] = true
		}
		switch key {
		case "version":
			if value != "STSv1" {
				return nil, fmt.Errorf("%w policy: version %q", ErrInvalid, value)
			}
		case "mode":
			switch value {
			case ModeEnforce, ModeTesting, ModeNone:
				p.Mode = value
			default:
				return nil, fmt.Errorf("%w policy: mode %q", ErrInvalid, value)
			}
		case "max_age":
			if value == "" || len(value) > 10 || strings.Trim(value, "0123456789") != "" {
				return nil, fmt.Errorf("%w policy: max_age %q", ErrInvalid, value)
			}
			n, err := strconv.ParseUint(value, 10, 64)
			if err != nil || n > uint64(MaxAge/time.Second) {
				return nil, fmt.Errorf("%w policy: max_age %q", ErrInvalid, value)
			}
			p.MaxAge = time.Duration(n) * time.Second
		case "mx":
			pat := strings.ToLower(strings.TrimSuffix(value, "."))
			if !mxPattern(pat) {
				return nil, fmt.Errorf("%w policy: mx %q", ErrInvalid, value)
			}
			p.MX = append(p.MX, pat)
		}
	}
	switch {
	case !seen["version"]:
		return nil, fmt.Errorf("%w policy: no version", ErrInvalid)
	case p.Mode == "":
		return nil, fmt.Errorf("%w policy: no mode", ErrInvalid)
	case !seen["max_age"]:
		return nil, fmt.Errorf("%w policy: no max_age", ErrInvalid)
	case len(p.MX) == 0 && p.Mode != ModeNone:
		return nil, fmt.Errorf("%w policy: mode %s without mx", ErrInvalid, p.Mode)
	}
	return p, nil
}

// Match says whether host (an MX host name) is one the policy names:
// equal to a pattern, or one label more than a "*." pattern (RFC 8461
// §4.1: "*.example.test" matches "mx.example.test", not
// "a.mx.example.test" nor "example.test").
func (p *Policy) Match(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "" {
		return false
	}
	for _, pat := range p.MX {
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			label, parent, found := strings.Cut(h, ".")
			if found && label != "" && parent == rest {
				return true
			}
			continue
		}
		if h == pat {
			return true
		}
	}
	return false
}

// fieldName: 1*32(ALPHA / DIGIT / "_" / "-" / ".").
func fieldName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range []byte(s) {
		if !alnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func alnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// mxPattern: a domain name of at least two labels, optionally "*." first.
func mxPattern(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !alnum(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

// ParseTXT finds the policy id in the TXT records at _mta-sts.DOMAIN
// (RFC 8461 §3.1): records not starting with "v=STSv1" are ignored; there
// must be exactly one that does, with an id of 1 to 32 letters and
// digits. Anything else is ErrInvalid, which means no policy.
func ParseTXT(records []string) (id string, err error) {
	var found []string
	for _, r := range records {
		if strings.HasPrefix(r, "v=STSv1") {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		return "", fmt.Errorf("%w TXT: %d STSv1 records, want exactly one", ErrInvalid, len(found))
	}
	fields := strings.Split(found[0], ";")
	if strings.TrimSpace(fields[0]) != "v=STSv1" {
		return "", fmt.Errorf("%w TXT: version field %q", ErrInvalid, fields[0])
	}
	for _, f := range fields[1:] {
		f = strings.Trim(f, " \t")
		if f == "" {
			continue
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return "", fmt.Errorf("%w TXT: field %q", ErrInvalid, f)
		}
		if k != "id" {
			continue // extensions are ignored
		}
		if id != "" || v == "" || len(v) > 32 || strings.IndexFunc(v, func(r rune) bool { return r > 0x7f || !alnum(byte(r)) }) >= 0 {
			return "", fmt.Errorf("%w TXT: id %q", ErrInvalid, v)
		}
		id = v
	}
	if id == "" {
		return "", fmt.Errorf("%w TXT: no id", ErrInvalid)
	}
	return id, nil
}
