package policy

import "unicode/utf8"

// The index narrows down which rules can possibly match before any rule is
// evaluated, so that Decide stays fast with hundreds of rules (partner
// domains, one rule each). For every condition kind it maps the values
// rules test for (an address, a domain, a group, a header) to the set of
// rules testing for it, as a bitset over rule positions. Rules without
// that condition, or with an entry the index cannot express (a glob such
// as "a*@x.org", a size, a regexp), are in the kind's "free" set and always
// stay candidates. The candidates are the intersection over all kinds; each
// is then evaluated in full, in rule order, so the index can only save
// work, never change the answer (the tests check Decide against Explain,
// which evaluates every rule).

type bitset []uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

func (b bitset) set(i int) { b[i/64] |= 1 << (uint(i) % 64) }

// dimension indexes one condition kind.
type dimension struct {
	used bool
	free bitset
	// key: exact addresses, group names, "name\x00value" headers or
	// header names, depending on the kind.
	key map[string]bitset
	// domain / suffix: exact domains and "*." wildcard domains.
	domain map[string]bitset
	suffix map[string]bitset
}

func (d *dimension) add(m *map[string]bitset, k string, i, n int) {
	if *m == nil {
		*m = make(map[string]bitset)
	}
	b, ok := (*m)[k]
	if !ok {
		b = newBitset(n)
		(*m)[k] = b
	}
	b.set(i)
	d.used = true
}

// orKey ORs into dst the rules indexed under k in m.
func orKey(dst bitset, m map[string]bitset, k []byte) {
	if b, ok := m[string(k)]; ok {
		for w := range dst {
			dst[w] |= b[w]
		}
	}
}

// orDomain ORs into dst the rules whose domain entries match d.
func (d *dimension) orDomain(dst bitset, dom []byte) {
	if len(dom) == 0 {
		return
	}
	orKey(dst, d.domain, dom)
	if d.suffix == nil {
		return
	}
	for i := 0; i < len(dom); i++ {
		if dom[i] == '.' {
			orKey(dst, d.suffix, dom[i+1:])
		}
	}
}

// headerBuf bounds the stack buffer for "name\x00value" keys: header
// entries longer than this are left to full evaluation.
const headerBuf = 512

type ruleIndex struct {
	n     int
	words int
	all   bitset

	sender, senderDomain, senderGroup dimension
	recipient, recipientDomain        dimension
	header, headerMatch               dimension
	// headerNames are the (lowercase) names some indexed header entry
	// tests; headerFilter is a one-hash Bloom filter over them (length,
	// first and last byte) that skips most of a message's fields before
	// any lowering or map lookup.
	headerNames  map[string]struct{}
	headerFilter [4]uint64
}

// headerFilterBit hashes a header name for headerFilter: length, first
// and last byte, ASCII letters case-folded. Names with non-ASCII bytes are
// not hashed (ok false): they may lower to ASCII of another length, as the
// Kelvin sign lowers to 'k'.
func headerFilterBit(name string) (b uint8, ok bool) {
	if len(name) == 0 {
		return 0, false
	}
	for i := 0; i < len(name); i++ {
		if name[i] >= utf8.RuneSelf {
			return 0, false
		}
	}
	first, last := name[0]|0x20, name[len(name)-1]|0x20
	return uint8(len(name)*31 + int(first)*7 + int(last)), true
}

// mayHaveHeader reports whether name could be an indexed header name.
func (ix *ruleIndex) mayHaveHeader(name string) bool {
	b, ok := headerFilterBit(name)
	if !ok {
		return len(name) > 0
	}
	return ix.headerFilter[b/64]&(1<<(b%64)) != 0
}

func buildIndex(rules []rule) ruleIndex {
	n := len(rules)
	ix := ruleIndex{n: n, words: (n + 63) / 64, all: newBitset(n)}
	for _, d := range []*dimension{&ix.sender, &ix.senderDomain, &ix.senderGroup, &ix.recipient, &ix.recipientDomain, &ix.header, &ix.headerMatch} {
		d.free = newBitset(n)
	}
	ix.headerNames = map[string]struct{}{}
	noteName := func(name string) {
		ix.headerNames[name] = struct{}{}
		b, _ := headerFilterBit(name) // rule header names are ASCII
		ix.headerFilter[b/64] |= 1 << (b % 64)
	}
	addrs := func(d *dimension, ps []addrPattern, i int) {
		if len(ps) == 0 {
			d.free.set(i)
			return
		}
		for _, p := range ps {
			if p.kind == addrGlob {
				d.free.set(i)
				return
			}
		}
		for _, p := range ps {
			switch p.kind {
			case addrExact:
				d.add(&d.key, p.pattern, i, n)
			case addrDomain:
				d.add(&d.domain, p.pattern, i, n)
			case addrSuffix:
				d.add(&d.suffix, p.pattern, i, n)
			}
		}
	}
	domains := func(d *dimension, s *domainSet, i int) {
		if s.empty() {
			d.free.set(i)
			return
		}
		for k := range s.exact {
			d.add(&d.domain, k, i, n)
		}
		for k := range s.suffix {
			d.add(&d.suffix, k, i, n)
		}
	}
	for i := range rules {
		r := &rules[i]
		ix.all.set(i)
		addrs(&ix.sender, r.sender, i)
		domains(&ix.senderDomain, &r.senderDomain, i)
		addrs(&ix.recipient, r.recipient, i)
		domains(&ix.recipientDomain, &r.recipientDomain, i)

		if len(r.senderGroup) == 0 {
			ix.senderGroup.free.set(i)
		}
		for _, g := range r.senderGroup {
			ix.senderGroup.add(&ix.senderGroup.key, g, i, n)
		}

		long := false
		for _, h := range r.header {
			if len(h.name)+1+len(h.value) > headerBuf {
				long = true
			}
		}
		if len(r.header) == 0 || long {
			ix.header.free.set(i)
		} else {
			for _, h := range r.header {
				ix.header.add(&ix.header.key, h.name+"\x00"+h.value, i, n)
				noteName(h.name)
			}
		}

		long = false
		for _, h := range r.headerMatch {
			if len(h.name) > headerBuf {
				long = true
			}
		}
		if len(r.headerMatch) == 0 || long {
			ix.headerMatch.free.set(i)
		} else {
			for _, h := range r.headerMatch {
				ix.headerMatch.add(&ix.headerMatch.key, h.name, i, n)
				noteName(h.name)
			}
		}
	}
	return ix
}
