package policy

import (
	"fmt"
	"strings"

	"github.com/sealgate/sealgate/pkg/config"
)

// Options tell Compile how to report and where to find files.
type Options struct {
	// Line returns the line of a config key path such as
	// "policy.rules[1].encrypt" (0 if unknown); nil means no lines.
	// (*config.Config).Line fits.
	Line func(key string) int
	// Path resolves recipient_domain_file relative to the config file;
	// nil uses the path as written. (*config.Config).Path fits.
	Path func(p string) string
	// File names the config file in the returned *config.Errors.
	File string
}

// Defaults for action keys a rule leaves out (the same that config.Load
// fills in), and the actions of the implicit default rule that decides when
// no configured rule matches (a policy without a catch-all rule): sign,
// encrypt with S/MIME or else PDF, hold what fails, TLS when offered. Mail
// no rule foresaw is thus never sent in clear.
const (
	DefaultSign      = SignAlways
	DefaultEncrypt   = EncryptSMIMEOrPDF
	DefaultOnFailure = FailHold
	DefaultTLS       = TLSOpportunistic
)

// addrKind says how an address pattern can be indexed.
type addrKind uint8

const (
	addrExact  addrKind = iota // alice@example.org
	addrDomain                 // *@example.org
	addrSuffix                 // *@*.example.org
	addrGlob                   // anything else with * or ?
)

// addrPattern is a compiled sender/recipient entry.
type addrPattern struct {
	kind    addrKind
	pattern string // lowercase; for addrDomain/addrSuffix just the domain
	full    string // lowercase pattern as written, for globMatch
}

func (a *addrPattern) match(addr []byte) bool {
	return globMatch(a.full, addr)
}

func parseAddrPattern(s string) (addrPattern, error) {
	low := lower(strings.TrimSpace(s))
	if low == "" {
		return addrPattern{}, fmt.Errorf("empty address")
	}
	if strings.ContainsAny(low, " \t\r\n<>,;") {
		return addrPattern{}, fmt.Errorf("%q is not an address or address glob (write it bare: alice@example.org, *@example.org)", s)
	}
	at := strings.LastIndexByte(low, '@')
	if at < 0 {
		return addrPattern{}, fmt.Errorf("%q has no '@' (for a domain write \"*@%s\" or use the _domain condition)", s, low)
	}
	p := addrPattern{kind: addrGlob, full: low}
	local, dom := low[:at], low[at+1:]
	switch {
	case !strings.ContainsAny(low, "*?"):
		p.kind, p.pattern = addrExact, low
	case local == "*" && !strings.ContainsAny(dom, "*?"):
		p.kind, p.pattern = addrDomain, dom
	case local == "*" && strings.HasPrefix(dom, "*.") && !strings.ContainsAny(dom[2:], "*?"):
		p.kind, p.pattern = addrSuffix, dom[2:]
	}
	return p, nil
}

// rule is one compiled [[policy.rules]] entry.
type rule struct {
	name  string
	index int
	line  int

	sender          []addrPattern
	senderDomain    domainSet
	senderGroup     []string // lowercase
	recipient       []addrPattern
	recipientDomain domainSet // recipient_domain and recipient_domain_file together
	header          []headerEquals
	headerMatch     []headerMatches
	subjectTag      string // lowercase
	minSize         int64
	maxSize         int64

	// The configured text of each condition, for explanations.
	cfg config.PolicyRule
	// kinds has bit c set for each condition kind c the rule sets.
	kinds uint16

	sign            SignMode
	encrypt         Encrypt
	onFailure       Failure
	tls             TLSMode
	tlsFallback     TLSFallback
	stripSubjectTag bool
	encryptCalendar bool
}

// catchAll reports whether the rule has no conditions. It looks at the
// configuration, not the compiled entries, so that a rule whose only
// condition was malformed is not mistaken for a catch-all.
func (r *rule) catchAll() bool {
	pr := &r.cfg
	return len(pr.Sender) == 0 && len(pr.SenderDomain) == 0 && len(pr.SenderGroup) == 0 &&
		len(pr.Recipient) == 0 && len(pr.RecipientDomain) == 0 && pr.RecipientDomainFile == "" &&
		len(pr.Header) == 0 && len(pr.HeaderMatch) == 0 && pr.SubjectTag == "" && pr.MinSize == 0 && pr.MaxSize == 0
}

// Policy is a compiled policy section: rules checked, lowered, indexed.
// It is immutable and safe for concurrent use.
type Policy struct {
	internal domainSet
	rules    []rule
	idx      ruleIndex
	implicit rule
}

// Compile checks and compiles the policy section once, so that Decide
// does no parsing, no lowering of rule values and no file access. Every
// problem found is returned together in a *config.Errors, each with its key
// path, line, the rule's name in the message, and a hint, so that
// `config check` can list them with the file's other problems.
func Compile(cfg config.Policy, opt Options) (*Policy, error) {
	c := compiler{opt: opt}
	p := &Policy{}
	for i, d := range cfg.InternalDomains {
		dom, wild, err := parseDomain(d)
		if err != nil {
			c.problem(fmt.Sprintf("policy.internal_domains[%d]", i), "", err.Error(), "")
			continue
		}
		p.internal.add(dom, wild)
	}
	names := map[string]int{}
	catchAll := -1
	var broken []bool // rules with a malformed entry: their compiled form is incomplete
	for i := range cfg.Rules {
		before := len(c.problems)
		r := c.rule(i, cfg.Rules[i])
		broken = append(broken, len(c.problems) > before)
		if r.name != "" {
			if j, dup := names[r.name]; dup {
				c.problem(fmt.Sprintf("policy.rules[%d].name", i), r.name,
					fmt.Sprintf("the name is already used by policy.rules[%d]", j), "give every rule its own name: explanations and events refer to it")
			}
			names[r.name] = i
		}
		if catchAll >= 0 {
			ca := p.rules[catchAll]
			c.problem(fmt.Sprintf("policy.rules[%d]", i), r.name,
				fmt.Sprintf("unreachable: rule %q%s before it has no conditions and matches every message", ca.name, lineSuffix(ca.line)),
				fmt.Sprintf("move %q to the end, or give it conditions", ca.name))
		} else if r.catchAll() {
			catchAll = i
		} else if !broken[i] && len(cfg.Rules) <= maxShadowCheck {
			for j := range p.rules {
				if a := &p.rules[j]; !broken[j] && shadows(a, &r) {
					c.problem(fmt.Sprintf("policy.rules[%d]", i), r.name,
						fmt.Sprintf("unreachable: rule %q%s before it matches every message this rule matches", a.name, lineSuffix(a.line)),
						fmt.Sprintf("move %q above %q, or remove it", r.name, a.name))
					break
				}
			}
		}
		p.rules = append(p.rules, r)
	}
	if len(c.problems) > 0 {
		return nil, &config.Errors{File: opt.File, Problems: c.problems}
	}
	p.implicit = rule{name: RuleImplicitDefault, index: -1, sign: DefaultSign, encrypt: DefaultEncrypt, onFailure: DefaultOnFailure, tls: DefaultTLS}
	p.idx = buildIndex(p.rules)
	return p, nil
}

// FromConfig compiles the policy section of a loaded configuration, with
// its lines and paths.
func FromConfig(c *config.Config) (*Policy, error) {
	return Compile(c.Policy, Options{Line: c.Line, Path: c.Path, File: c.File()})
}

// HasCatchAll reports whether a configured rule matches every message,
// i.e. the implicit default never decides.
func (p *Policy) HasCatchAll() bool {
	return len(p.rules) > 0 && p.rules[len(p.rules)-1].catchAll()
}

func lineSuffix(line int) string {
	if line > 0 {
		return fmt.Sprintf(" (line %d)", line)
	}
	return ""
}

type compiler struct {
	opt      Options
	problems []config.Problem
}

// line finds the line of key, trying its parents ("a.b[0]" → "a.b" → "a")
// when the exact key has none (array elements usually have none).
func (c *compiler) line(key string) int {
	if c.opt.Line == nil {
		return 0
	}
	for key != "" {
		if l := c.opt.Line(key); l > 0 {
			return l
		}
		cut := strings.LastIndexAny(key, ".[")
		if cut <= 0 {
			break
		}
		key = key[:cut]
	}
	return 0
}

func (c *compiler) problem(key, rule, msg, hint string) {
	if rule != "" {
		msg = fmt.Sprintf("rule %q: %s", rule, msg)
	}
	c.problems = append(c.problems, config.Problem{Key: key, Line: c.line(key), Message: msg, Hint: hint})
}

func (c *compiler) rule(i int, pr config.PolicyRule) rule {
	key := fmt.Sprintf("policy.rules[%d]", i)
	r := rule{name: strings.TrimSpace(pr.Name), index: i, line: c.line(key), cfg: pr}
	rname := r.name
	if rname == "" {
		c.problem(key+".name", "", "the rule has no name", "add name = \"...\": explanations and events refer to it")
		r.name = fmt.Sprintf("rules[%d]", i)
	}
	sub := func(field string) string { return key + "." + field }

	addrs := func(field string, in []string) []addrPattern {
		var out []addrPattern
		for j, s := range in {
			a, err := parseAddrPattern(s)
			if err != nil {
				c.problem(fmt.Sprintf("%s[%d]", sub(field), j), rname, err.Error(), "")
				continue
			}
			out = append(out, a)
		}
		return out
	}
	domains := func(field string, in []string, set *domainSet) {
		for j, s := range in {
			d, wild, err := parseDomain(s)
			if err != nil {
				c.problem(fmt.Sprintf("%s[%d]", sub(field), j), rname, err.Error(), "")
				continue
			}
			set.add(d, wild)
		}
	}

	r.sender = addrs("sender", pr.Sender)
	domains("sender_domain", pr.SenderDomain, &r.senderDomain)
	for j, g := range pr.SenderGroup {
		if strings.TrimSpace(g) == "" {
			c.problem(fmt.Sprintf("%s[%d]", sub("sender_group"), j), rname, "empty group name", "")
			continue
		}
		r.senderGroup = append(r.senderGroup, lower(strings.TrimSpace(g)))
	}
	r.recipient = addrs("recipient", pr.Recipient)
	domains("recipient_domain", pr.RecipientDomain, &r.recipientDomain)
	if pr.RecipientDomainFile != "" {
		path := pr.RecipientDomainFile
		if c.opt.Path != nil {
			path = c.opt.Path(path)
		}
		if err := loadDomainFile(path, &r.recipientDomain); err != nil {
			c.problem(sub("recipient_domain_file"), rname, err.Error(), "one domain per line, '#' starts a comment")
		} else if r.recipientDomain.empty() {
			c.problem(sub("recipient_domain_file"), rname, fmt.Sprintf("domain file %s lists no domain, so the rule would match every recipient", path), "add domains or remove recipient_domain_file")
		}
	}
	for j, s := range pr.Header {
		h, err := compileHeaderEquals(s)
		if err != nil {
			c.problem(fmt.Sprintf("%s[%d]", sub("header"), j), rname, err.Error(), `e.g. header = ["X-Classification: Confidential"]`)
			continue
		}
		r.header = append(r.header, h)
	}
	for j, s := range pr.HeaderMatch {
		h, err := compileHeaderMatches(s)
		if err != nil {
			c.problem(fmt.Sprintf("%s[%d]", sub("header_match"), j), rname, err.Error(), `e.g. header_match = ["msip_labels: MSIP_Label_[0-9a-f-]+_Name=Confidential"]`)
			continue
		}
		r.headerMatch = append(r.headerMatch, h)
	}
	if pr.SubjectTag != "" {
		if strings.TrimSpace(pr.SubjectTag) == "" {
			c.problem(sub("subject_tag"), rname, "the tag is only white space", `e.g. subject_tag = "[secure]"`)
		}
		r.subjectTag = lower(pr.SubjectTag)
	}
	if pr.MinSize < 0 {
		c.problem(sub("min_size"), rname, "must not be negative", "a size in bytes")
	}
	if pr.MaxSize < 0 {
		c.problem(sub("max_size"), rname, "must not be negative", "a size in bytes; 0 means no limit")
	}
	if pr.MaxSize > 0 && pr.MinSize > pr.MaxSize {
		c.problem(sub("min_size"), rname, fmt.Sprintf("min_size %d is above max_size %d, so the rule can never match", pr.MinSize, pr.MaxSize), "")
	}
	r.minSize, r.maxSize = pr.MinSize, pr.MaxSize
	r.kinds = r.conditionKinds()

	// Actions.
	enum := func(field, val string, names []string, def uint8) uint8 {
		if val == "" {
			return def
		}
		v, ok := parseEnum[uint8](names, val)
		if !ok {
			c.problem(sub(field), rname, fmt.Sprintf("%q is not one of %s", val, strings.Join(names, ", ")), "")
		}
		return v
	}
	r.sign = SignMode(enum("sign", pr.Sign, signNames[:], uint8(DefaultSign)))
	r.encrypt = Encrypt(enum("encrypt", pr.Encrypt, encryptNames[:], uint8(DefaultEncrypt)))
	r.onFailure = Failure(enum("on_failure", pr.OnFailure, failureNames[:], uint8(DefaultOnFailure)))
	r.tls = TLSMode(enum("tls", pr.TLS, tlsNames[:], uint8(DefaultTLS)))
	r.tlsFallback = TLSFallback(enum("tls_fallback", pr.TLSFallback, fallbackNames[:], uint8(TLSFallbackHold)))
	r.stripSubjectTag = pr.StripSubjectTag
	r.encryptCalendar = pr.EncryptCalendar

	// Contradictions: settings that cannot mean anything together.
	if pr.TLSFallback != "" && !r.tls.AtLeast(TLSRequired) {
		c.problem(sub("tls_fallback"), rname, fmt.Sprintf("tls_fallback with tls = %q: the rule demands no TLS that could be missing", r.tls), `set tls = "required", "verified" or "dane", or remove tls_fallback`)
	}
	if pr.StripSubjectTag && pr.SubjectTag == "" {
		c.problem(sub("strip_subject_tag"), rname, "strip_subject_tag without subject_tag: there is no tag to strip", `set subject_tag (e.g. "[secure]") or remove strip_subject_tag`)
	}
	if pr.EncryptCalendar && pr.Encrypt == "none" {
		c.problem(sub("encrypt_calendar"), rname, `encrypt_calendar with encrypt = "none": the rule encrypts nothing`, "remove encrypt_calendar or choose an encrypting action")
	}
	if pr.OnFailure == "plain" {
		switch pr.Encrypt {
		case "smime-required":
			c.problem(sub("on_failure"), rname, `on_failure = "plain" contradicts encrypt = "smime-required", which must never send unencrypted`,
				`use encrypt = "smime" to allow unencrypted delivery, or on_failure = "hold" | "bounce"`)
		case "none":
			c.problem(sub("on_failure"), rname, `on_failure = "plain" with encrypt = "none": nothing is encrypted, so there is nothing to fall back from`,
				`use on_failure = "hold" | "bounce" (it also applies to sign = "always")`)
		}
	}
	return r
}
