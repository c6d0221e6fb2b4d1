package policy

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
)

// domainSet is a set of domains, each either exact ("example.com") or a
// subdomain wildcard ("*.example.com", which matches a.example.com and
// a.b.example.com but not example.com itself: list both to mean both).
type domainSet struct {
	exact  map[string]struct{}
	suffix map[string]struct{} // "example.com" for "*.example.com"
	n      int
}

func (s *domainSet) empty() bool { return s.n == 0 }

// add records a domain already checked by parseDomain.
func (s *domainSet) add(d string, wildcard bool) {
	m := &s.exact
	if wildcard {
		m = &s.suffix
	}
	if *m == nil {
		*m = make(map[string]struct{})
	}
	(*m)[d] = struct{}{}
	s.n++
}

// contains reports whether the lowercased domain d is in the set.
func (s *domainSet) contains(d []byte) bool {
	if len(d) == 0 {
		return false
	}
	if _, ok := s.exact[string(d)]; ok {
		return true
	}
	if s.suffix == nil {
		return false
	}
	for i := 0; i < len(d); i++ {
		if d[i] == '.' {
			if _, ok := s.suffix[string(d[i+1:])]; ok {
				return true
			}
		}
	}
	return false
}

// parseDomain checks one domain entry and returns it lowercased, without a
// trailing dot, and whether it was a "*." wildcard.
func parseDomain(s string) (d string, wildcard bool, err error) {
	d = strings.TrimSuffix(lower(strings.TrimSpace(s)), ".")
	if d == "" {
		return "", false, errors.New("empty domain")
	}
	if d == "*" {
		return "", false, errors.New(`"*" would match every domain: leave the condition out instead`)
	}
	if rest, ok := strings.CutPrefix(d, "*."); ok {
		d, wildcard = rest, true
	}
	if strings.ContainsAny(d, "@") {
		return "", false, fmt.Errorf("%q is an address, not a domain (use recipient/sender for addresses)", s)
	}
	if strings.ContainsAny(d, "*?") {
		return "", false, fmt.Errorf("%q: a wildcard is only allowed as a leading \"*.\"", s)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" {
			return "", false, fmt.Errorf("%q has an empty label", s)
		}
		for _, r := range label {
			if r <= ' ' || r == 0x7f || strings.ContainsRune(`,;:/\<>()[]"'`, r) {
				return "", false, fmt.Errorf("%q contains %q, which a domain cannot contain", s, r)
			}
		}
	}
	return d, wildcard, nil
}

// loadDomainFile reads one domain per line into set; blank lines and
// lines starting with '#' are ignored. Errors name the file and the line.
func loadDomainFile(path string, set *domainSet) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot read domain file %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		d, wild, err := parseDomain(line)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
		set.add(d, wild)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading domain file %s: %w", path, err)
	}
	return nil
}
