package policy

import (
	"slices"
	"strings"
)

// maxShadowCheck bounds the pairwise search for shadowed rules (it is
// quadratic); larger policies still get the catch-all check.
const maxShadowCheck = 2000

// shadows reports whether rule a matches every message and recipient that
// rule b matches, so that b, placed after a, can never decide. It only
// says yes when that follows from the rules' text (each condition a sets,
// b sets too, with alternatives that imply one of a's); a false "no" just
// leaves a redundant rule unreported, a false "yes" would reject a valid
// policy, so every case here is provable.
func shadows(a, b *rule) bool {
	// Cheap tests first: a policy of 200 partner rules compares 20,000 pairs.
	return a.kinds&^b.kinds == 0 &&
		(a.subjectTag == "" || strings.Contains(b.subjectTag, a.subjectTag)) &&
		(a.minSize == 0 || b.minSize >= a.minSize) &&
		(a.maxSize == 0 || (b.maxSize != 0 && b.maxSize <= a.maxSize)) &&
		covers(a.senderGroup, b.senderGroup, sameString) &&
		covers(a.header, b.header, sameHeader) &&
		covers(a.headerMatch, b.headerMatch, sameMatch) &&
		coversAddrs(a.sender, b.sender) &&
		coversAddrs(a.recipient, b.recipient) &&
		coversDomains(&a.senderDomain, &b.senderDomain) &&
		coversDomains(&a.recipientDomain, &b.recipientDomain)
}

// conditionKinds is the set of condition kinds a rule sets, one bit per cond.
func (r *rule) conditionKinds() uint16 {
	var k uint16
	set := func(c cond, on bool) {
		if on {
			k |= 1 << c
		}
	}
	set(condSender, len(r.sender) > 0)
	set(condSenderDomain, !r.senderDomain.empty())
	set(condSenderGroup, len(r.senderGroup) > 0)
	set(condRecipient, len(r.recipient) > 0)
	set(condRecipientDomain, !r.recipientDomain.empty())
	set(condHeader, len(r.header) > 0)
	set(condHeaderMatch, len(r.headerMatch) > 0)
	set(condSubjectTag, r.subjectTag != "")
	set(condMinSize, r.minSize > 0)
	set(condMaxSize, r.maxSize > 0)
	return k
}

// coversAddrs: every address b's entry can match is matched by one of a's.
func coversAddrs(a, b []addrPattern) bool {
	if len(a) == 0 {
		return true
	}
	if len(b) == 0 {
		return false
	}
	for _, pb := range b {
		ok := false
		for _, pa := range a {
			if pa.full == pb.full || (pb.kind == addrExact && globMatch(pa.full, []byte(pb.full))) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// coversDomains: every domain in b is in a; a "*.x" entry of b is covered
// by a "*.x" or "*.<parent of x>" entry of a.
func coversDomains(a, b *domainSet) bool {
	if a.empty() {
		return true
	}
	if b.empty() {
		return false
	}
	for d := range b.exact {
		if !a.contains([]byte(d)) {
			return false
		}
	}
	for s := range b.suffix {
		if _, ok := a.suffix[s]; ok {
			continue
		}
		if !a.containsSuffixOf(s) {
			return false
		}
	}
	return true
}

// containsSuffixOf reports whether a "*.p" entry covers all subdomains of
// s, i.e. s is p or a subdomain of p.
func (s *domainSet) containsSuffixOf(d string) bool {
	for i := 0; i < len(d); i++ {
		if d[i] == '.' {
			if _, ok := s.suffix[d[i+1:]]; ok {
				return true
			}
		}
	}
	return false
}

// covers reports whether condition list a (any-of) matches whenever b
// does: a is empty (no condition), or every entry of b is also in a. The
// test is syntactic, so it may miss a covering pattern but never claims
// one that does not cover.
func covers[T any](a, b []T, same func(x, y T) bool) bool {
	if len(a) == 0 {
		return true
	}
	if len(b) == 0 {
		return false
	}
	for _, x := range b {
		if !slices.ContainsFunc(a, func(y T) bool { return same(x, y) }) {
			return false
		}
	}
	return true
}

func sameString(x, y string) bool { return x == y }

func sameHeader(x, y headerEquals) bool { return x.name == y.name && x.value == y.value }

func sameMatch(x, y headerMatches) bool { return x.name == y.name && x.re.String() == y.re.String() }
