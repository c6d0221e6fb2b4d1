package policy

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// RuleTrace is how one rule fared in Explain.
type RuleTrace struct {
	Rule  string `json:"rule"`
	Index int    `json:"index"`
	Line  int    `json:"line,omitempty"`
	// Result is "matched", "no match" (Condition and Reason say why),
	// or "not reached" (an earlier rule decided, or the recipient is internal).
	Result string `json:"result"`
	// Condition is the config key of the first condition that failed.
	Condition string `json:"condition,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// Trace results.
const (
	ResultMatched    = "matched"
	ResultNoMatch    = "no match"
	ResultNotReached = "not reached"
)

// Explanation is a Decision with the reasons behind it.
type Explanation struct {
	Decision Decision
	// Why says in one sentence which rule decided and why.
	Why   string
	Trace []RuleTrace
}

// Explain decides like Decide but evaluates every rule without the index
// and records, for each rule that did not match, the first condition that
// failed. For admins and auditors, not for the mail path.
func (p *Policy) Explain(f Facts, r Recipient) Explanation {
	c := prepare(&f, r.Address, make([]byte, 0, addrBuf+utf8.UTFMax), make([]byte, 0, addrBuf+utf8.UTFMax))
	var e Explanation
	decided := false
	if p.internal.contains(c.rDom) {
		e.Decision = internalDecision()
		e.Why = fmt.Sprintf("recipient domain %q is in policy.internal_domains: passed through untouched", c.rDom)
		decided = true
	}
	for i := range p.rules {
		rl := &p.rules[i]
		t := RuleTrace{Rule: rl.name, Index: rl.index, Line: rl.line}
		switch {
		case decided:
			t.Result = ResultNotReached
		default:
			if k := rl.eval(&c, f.Headers); k != condNone {
				t.Result, t.Condition, t.Reason = ResultNoMatch, condKeys[k], rl.explainFailure(k, &c)
				break
			}
			t.Result = ResultMatched
			e.Decision = rl.decision(f.Calendar, r.HasCert)
			e.Why = fmt.Sprintf("rule %q%s matched: %s", rl.name, lineSuffix(rl.line), rl.describeConditions())
			decided = true
		}
		e.Trace = append(e.Trace, t)
	}
	if !decided {
		e.Decision = p.implicit.decision(f.Calendar, r.HasCert)
		e.Why = "no rule matched: the implicit default decided (sign always, encrypt smime-or-pdf, on_failure hold, tls opportunistic)"
	}
	return e
}

// describeConditions lists what the rule tested, for Why.
func (r *rule) describeConditions() string {
	var parts []string
	add := func(key string, vals []string) {
		if len(vals) > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", key, quoteList(vals, 5)))
		}
	}
	add("sender", r.cfg.Sender)
	add("sender_domain", r.cfg.SenderDomain)
	add("sender_group", r.cfg.SenderGroup)
	add("recipient", r.cfg.Recipient)
	add("recipient_domain", r.cfg.RecipientDomain)
	if r.cfg.RecipientDomainFile != "" {
		parts = append(parts, fmt.Sprintf("recipient_domain_file %q", r.cfg.RecipientDomainFile))
	}
	add("header", r.cfg.Header)
	add("header_match", r.cfg.HeaderMatch)
	if r.cfg.SubjectTag != "" {
		parts = append(parts, fmt.Sprintf("subject_tag %q", r.cfg.SubjectTag))
	}
	if r.minSize > 0 {
		parts = append(parts, fmt.Sprintf("min_size %d", r.minSize))
	}
	if r.maxSize > 0 {
		parts = append(parts, fmt.Sprintf("max_size %d", r.maxSize))
	}
	if len(parts) == 0 {
		return "it has no conditions (catch-all)"
	}
	return strings.Join(parts, ", ")
}

// explainFailure says why condition k failed, without secrets (rules and
// headers hold none; the subject is the admin's own input).
func (r *rule) explainFailure(k cond, c *evalCtx) string {
	switch k {
	case condSender:
		return fmt.Sprintf("sender %q is not one of %s", c.sAddr, quoteList(r.cfg.Sender, 5))
	case condSenderDomain:
		return fmt.Sprintf("sender domain %q is not in %s", c.sDom, quoteList(r.cfg.SenderDomain, 5))
	case condSenderGroup:
		if len(c.groups) == 0 {
			return fmt.Sprintf("the sender is in no group; the rule wants one of %s", quoteList(r.cfg.SenderGroup, 5))
		}
		return fmt.Sprintf("sender groups %s include none of %s", quoteList(c.groups, 5), quoteList(r.cfg.SenderGroup, 5))
	case condRecipient:
		return fmt.Sprintf("recipient %q is not one of %s", c.rAddr, quoteList(r.cfg.Recipient, 5))
	case condRecipientDomain:
		var where []string
		if len(r.cfg.RecipientDomain) > 0 {
			where = append(where, quoteList(r.cfg.RecipientDomain, 5))
		}
		if r.cfg.RecipientDomainFile != "" {
			where = append(where, fmt.Sprintf("domain file %q", r.cfg.RecipientDomainFile))
		}
		return fmt.Sprintf("recipient domain %q is not in %s", c.rDom, strings.Join(where, " nor in "))
	case condHeader:
		return fmt.Sprintf("the message has no header %s", quoteList(r.cfg.Header, 5))
	case condHeaderMatch:
		return fmt.Sprintf("no header of the message matches %s", quoteList(r.cfg.HeaderMatch, 5))
	case condSubjectTag:
		return fmt.Sprintf("subject %q does not contain %q", c.subject, r.cfg.SubjectTag)
	case condMinSize:
		return fmt.Sprintf("size %d is below min_size %d", c.size, r.minSize)
	case condMaxSize:
		return fmt.Sprintf("size %d is above max_size %d", c.size, r.maxSize)
	}
	return ""
}

// quoteList renders up to max values quoted, then how many more.
func quoteList(vals []string, max int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, v := range vals {
		if i == max {
			fmt.Fprintf(&b, " … %d more", len(vals)-max)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", v)
	}
	b.WriteByte(']')
	return b.String()
}
