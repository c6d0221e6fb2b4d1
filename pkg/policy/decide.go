package policy

import (
	"math/bits"
	"strings"
	"unicode/utf8"
)

// cond names a condition kind, in the order rules are evaluated (the
// order in which Explain reports the first failing one).
type cond uint8

const (
	condNone cond = iota // all conditions hold
	condSender
	condSenderDomain
	condSenderGroup
	condRecipient
	condRecipientDomain
	condHeader
	condHeaderMatch
	condSubjectTag
	condMinSize
	condMaxSize
)

// condKeys are the config keys of the conditions.
var condKeys = [...]string{
	condSender: "sender", condSenderDomain: "sender_domain", condSenderGroup: "sender_group",
	condRecipient: "recipient", condRecipientDomain: "recipient_domain", condHeader: "header",
	condHeaderMatch: "header_match", condSubjectTag: "subject_tag", condMinSize: "min_size",
	condMaxSize: "max_size",
}

// addrBuf bounds the stack buffers for lowered addresses (RFC 5321:
// 64-byte local part, 255-byte domain); longer ones are lowered on the heap.
const addrBuf = 320

// stackWords is how many rules' bitsets (64 rules a word) Decide keeps on
// the stack; policies with more than 512 rules allocate two small slices.
const stackWords = 8

// evalCtx is a message and recipient prepared once for all rules:
// addresses and domains lowercased. The header fields travel beside it as
// their own argument: regexp matching makes them escape, and escape
// analysis would drag everything else reachable from the context (the
// stack buffers) to the heap with them.
type evalCtx struct {
	sAddr, sDom []byte
	rAddr, rDom []byte
	groups      []string
	subject     string
	size        int64
}

// eval checks the rule's conditions in order and returns the first that
// fails, or condNone when the rule matches. Lists are alternatives: one
// matching entry satisfies the condition.
func (r *rule) eval(c *evalCtx, headers []Header) cond {
	if len(r.sender) > 0 && !anyAddr(r.sender, c.sAddr) {
		return condSender
	}
	if !r.senderDomain.empty() && !r.senderDomain.contains(c.sDom) {
		return condSenderDomain
	}
	if len(r.senderGroup) > 0 && !anyGroup(r.senderGroup, c.groups) {
		return condSenderGroup
	}
	if len(r.recipient) > 0 && !anyAddr(r.recipient, c.rAddr) {
		return condRecipient
	}
	if !r.recipientDomain.empty() && !r.recipientDomain.contains(c.rDom) {
		return condRecipientDomain
	}
	if len(r.header) > 0 && !anyHeaderEquals(r.header, headers) {
		return condHeader
	}
	if len(r.headerMatch) > 0 && !anyHeaderMatches(r.headerMatch, headers) {
		return condHeaderMatch
	}
	if r.subjectTag != "" {
		if i, _ := indexLower(c.subject, r.subjectTag); i < 0 {
			return condSubjectTag
		}
	}
	if r.minSize > 0 && c.size < r.minSize {
		return condMinSize
	}
	if r.maxSize > 0 && c.size > r.maxSize {
		return condMaxSize
	}
	return condNone
}

func anyAddr(ps []addrPattern, addr []byte) bool {
	for i := range ps {
		if ps[i].match(addr) {
			return true
		}
	}
	return false
}

func anyGroup(want []string, have []string) bool {
	for _, h := range have {
		h = strings.TrimSpace(h)
		for _, w := range want {
			if equalLower(h, w) {
				return true
			}
		}
	}
	return false
}

func anyHeaderEquals(want []headerEquals, have []Header) bool {
	for i := range want {
		for _, h := range have {
			if nameIs(h.Name, want[i].name) && equalLower(strings.TrimSpace(h.Value), want[i].value) {
				return true
			}
		}
	}
	return false
}

func anyHeaderMatches(want []headerMatches, have []Header) bool {
	for i := range want {
		for _, h := range have {
			if nameIs(h.Name, want[i].name) && want[i].re.MatchString(strings.TrimSpace(h.Value)) {
				return true
			}
		}
	}
	return false
}

// nameIs reports whether the header name lowers to want (a lowercase
// ASCII name, as ParseHeaderCondition guarantees). The first byte rules
// out nearly every field of a message before the full comparison.
func nameIs(name, want string) bool {
	if name == "" {
		return false
	}
	if c := name[0]; c < utf8.RuneSelf {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[0] {
			return false
		}
	}
	return equalLower(name, want)
}

// decision turns the matching rule's actions into the Decision for this
// recipient.
func (r *rule) decision(calendar, hasCert bool) Decision {
	d := Decision{
		Rule: r.name, RuleIndex: r.index, Action: ActionDeliver,
		Sign: r.sign, Encrypt: r.encrypt, OnFailure: r.onFailure, TLS: r.tls, TLSFallback: r.tlsFallback,
		StripSubjectTag: r.stripSubjectTag, SubjectTag: r.cfg.SubjectTag,
	}
	switch r.encrypt {
	case EncryptSMIME:
		if hasCert {
			d.Method = MethodSMIME
		}
	case EncryptSMIMEOrPDF:
		if hasCert {
			d.Method, d.Fallback = MethodSMIME, MethodPDF
		} else {
			d.Method = MethodPDF
		}
	case EncryptPDF:
		d.Method = MethodPDF
	case EncryptSMIMERequired:
		if hasCert {
			d.Method = MethodSMIME
		} else {
			d.Action = ActionHold
			if r.onFailure == FailBounce {
				d.Action = ActionBounce
			}
		}
	}
	// Meeting requests stay readable for calendar software unless the
	// rule insists (encrypt_calendar) or requires S/MIME outright.
	if calendar && !r.encryptCalendar && r.encrypt != EncryptSMIMERequired && r.encrypt != EncryptNone {
		d.Method, d.Fallback, d.CalendarExempt = MethodNone, MethodNone, true
	}
	return d
}

func internalDecision() Decision {
	return Decision{Rule: RuleInternal, RuleIndex: -1, Action: ActionPass, Sign: SignNever,
		Encrypt: EncryptNone, Method: MethodNone, OnFailure: FailHold, TLS: TLSOpportunistic}
}

// prepare lowercases the addresses into the given buffers.
func prepare(f *Facts, recipient string, sbuf, rbuf []byte) evalCtx {
	c := evalCtx{groups: f.SenderGroups, subject: f.Subject, size: f.Size}
	var ok bool
	if c.rAddr, ok = appendLowerBounded(rbuf, strings.TrimSpace(recipient), addrBuf); !ok {
		c.rAddr = appendLower(nil, strings.TrimSpace(recipient))
	}
	c.rDom = domainOf(c.rAddr)
	if c.sAddr, ok = appendLowerBounded(sbuf, strings.TrimSpace(f.Sender), addrBuf); !ok {
		c.sAddr = appendLower(nil, strings.TrimSpace(f.Sender))
	}
	c.sDom = domainOf(c.sAddr)
	return c
}

// Decide returns what to do with the message for one recipient: internal
// recipients pass untouched; otherwise the first rule whose conditions
// all hold decides, and the implicit default when none does. It does no
// I/O and, for policies up to 512 rules, no allocation.
func (p *Policy) Decide(f Facts, r Recipient) Decision {
	var sbuf, rbuf [addrBuf + utf8.UTFMax]byte
	c := prepare(&f, r.Address, sbuf[:0], rbuf[:0])
	if p.internal.contains(c.rDom) {
		return internalDecision()
	}
	var mbuf, tbuf, hbuf [stackWords]uint64
	var mask, tmp, tmp2 bitset
	if w := p.idx.words; w <= stackWords {
		mask, tmp, tmp2 = mbuf[:w], tbuf[:w], hbuf[:w]
	} else {
		mask, tmp, tmp2 = make(bitset, w), make(bitset, w), make(bitset, w)
	}
	copy(mask, p.idx.all)
	p.idx.narrow(mask, tmp, tmp2, &c, f.Headers)
	for w, word := range mask {
		for word != 0 {
			i := w*64 + bits.TrailingZeros64(word)
			word &= word - 1
			if p.rules[i].eval(&c, f.Headers) == condNone {
				return p.rules[i].decision(f.Calendar, r.HasCert)
			}
		}
	}
	return p.implicit.decision(f.Calendar, r.HasCert)
}

// and sets dst to dst AND b.
func and(dst, b bitset) {
	for w := range dst {
		dst[w] &= b[w]
	}
}

// lazyThreshold is how many remaining candidates may test a condition
// before looking it up in the index pays off; fewer are simply evaluated.
const lazyThreshold = 4

// needing counts the candidates in mask that test d's condition.
func needing(mask bitset, d *dimension) int {
	n := 0
	for w := range mask {
		n += bits.OnesCount64(mask[w] &^ d.free[w])
	}
	return n
}

// narrow clears from mask the rules that cannot match c. The most
// selective kinds (addresses, domains) go first; groups and headers are
// looked up only when enough remaining candidates test them.
func (ix *ruleIndex) narrow(mask, tmp, tmp2 bitset, c *evalCtx, headers []Header) {
	addrDim := func(d *dimension, addr, dom []byte) {
		if !d.used || needing(mask, d) == 0 {
			return
		}
		copy(tmp, d.free)
		orKey(tmp, d.key, addr)
		d.orDomain(tmp, dom)
		and(mask, tmp)
	}
	addrDim(&ix.recipientDomain, nil, c.rDom)
	addrDim(&ix.recipient, c.rAddr, c.rDom)
	addrDim(&ix.senderDomain, nil, c.sDom)
	addrDim(&ix.sender, c.sAddr, c.sDom)

	var buf [headerBuf + utf8.UTFMax]byte
	if ix.senderGroup.used && needing(mask, &ix.senderGroup) > lazyThreshold {
		copy(tmp, ix.senderGroup.free)
		for _, g := range c.groups {
			if k, ok := appendLowerBounded(buf[:0], strings.TrimSpace(g), headerBuf); ok {
				orKey(tmp, ix.senderGroup.key, k)
			}
		}
		and(mask, tmp)
	}
	if (ix.header.used || ix.headerMatch.used) && needing(mask, &ix.header)+needing(mask, &ix.headerMatch) > lazyThreshold {
		copy(tmp, ix.header.free)
		copy(tmp2, ix.headerMatch.free)
		for i := range headers {
			h := &headers[i]
			if !ix.mayHaveHeader(h.Name) {
				continue
			}
			name, ok := appendLowerBounded(buf[:0], h.Name, headerBuf)
			if !ok {
				continue
			}
			if _, known := ix.headerNames[string(name)]; !known {
				continue
			}
			orKey(tmp2, ix.headerMatch.key, name)
			key := append(name, 0)
			if key, ok = appendLowerBounded(key, strings.TrimSpace(h.Value), headerBuf); ok {
				orKey(tmp, ix.header.key, key)
			}
		}
		and(mask, tmp)
		and(mask, tmp2)
	}
}
