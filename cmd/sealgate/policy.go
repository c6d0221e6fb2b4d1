package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/policy"
)

func init() {
	register(newPolicyCmd)
	configChecks = append(configChecks, policyConfigCheck)
}

// policyConfigCheck reports what pkg/policy finds wrong with the rules
// (unreachable or shadowed rules, contradictory actions, unreadable domain
// files) to `config check` and every command that loads the config.
func policyConfigCheck(cfg *config.Config) []config.Problem {
	_, err := policy.FromConfig(cfg)
	if err == nil {
		return nil
	}
	var ce *config.Errors
	if errors.As(err, &ce) {
		return ce.Problems
	}
	return []config.Problem{{Key: "policy", Line: cfg.Line("policy"), Message: err.Error()}}
}

// lookupRecipientCert tells `policy explain` whether the gateway would find
// a valid certificate for the recipient, and where. It is a variable so
// tests can inject the answer; recipients.go sets it to the real directory
// lookup (cache, store, own users, key servers, every validation check).
var lookupRecipientCert func(ctx context.Context, cfg *config.Config, email string) (found bool, source string, err error)

// lookupSenderGroups returns the sender's groups for rules with
// sender_group, from where serve takes them: the static user list, or the
// directory of [users.ldap] (every group under group_base_dn containing
// the sender, nested groups resolved, by cn and by DN).
var lookupSenderGroups = func(ctx context.Context, cfg *config.Config, email string) (groups []string, source string, err error) {
	if cfg.Users.Source == "ldap" {
		_, dir, err := newUserSource(cfg)
		if err != nil {
			return nil, "", err
		}
		members, err := dir.GroupMemberships(ctx)
		if err != nil {
			return nil, "", err
		}
		source = "users.ldap " + cfg.Users.LDAP.URL
		if groups = members[strings.ToLower(email)]; groups == nil {
			source += ": in no group"
		}
		return groups, source, nil
	}
	for _, u := range cfg.Users.Static {
		if strings.EqualFold(u.Email, email) {
			return u.Groups, "users.static", nil
		}
		for _, alias := range u.Aliases {
			if strings.EqualFold(alias, email) {
				return u.Groups, "users.static", nil
			}
		}
	}
	return nil, "not a configured user", nil
}

// explainTimeout bounds the certificate and group lookups.
const explainTimeout = 30 * time.Second

type policyExplainFlags struct {
	from, to, subject string
	message           string
	headers, groups   []string
	size              int64
	calendar          bool
}

func newPolicyCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "inspect the policy rules",
		Args:  cobra.NoArgs,
	}
	var fl policyExplainFlags
	explain := &cobra.Command{
		Use:   "explain --from A --to B [--header 'K: V']... [--subject S] [--message FILE]",
		Short: "the decision for one recipient, the rule that made it, and why every other rule did not",
		Long: "Decides for one message and recipient exactly as the gateway would, with the\n" +
			"recipient's certificate status looked up, and lists every rule with the first\n" +
			"condition that did not hold. The sender's groups come from the user directory\n" +
			"(or --group). With --message the facts come from a real message (headers,\n" +
			"meeting-request structure); --from/--header/--subject override them.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return a.policyExplain(cmd.Context(), fl) },
	}
	f := explain.Flags()
	f.StringVar(&fl.from, "from", "", "sender address (required)")
	f.StringVar(&fl.to, "to", "", "recipient address (required)")
	f.StringArrayVar(&fl.headers, "header", nil, `header field of the message, "Name: value" (repeatable)`)
	f.StringVar(&fl.subject, "subject", "", "subject of the message")
	f.StringArrayVar(&fl.groups, "group", nil, "sender's group, instead of looking the sender up (repeatable)")
	f.Int64Var(&fl.size, "size", 0, "message size in bytes")
	f.BoolVar(&fl.calendar, "calendar", false, "the message is a meeting request (text/calendar)")
	f.StringVar(&fl.message, "message", "", "a message file (- for stdin) to take the facts from; the other flags override it")
	cmd.AddCommand(explain)
	return cmd
}

// explainResult is the JSON of `policy explain`: the keys INTERFACE.md
// promises first, then the details.
type explainResult struct {
	Rule      string `json:"rule"`
	Sign      bool   `json:"sign"`
	Encrypt   string `json:"encrypt"`
	Method    string `json:"method"`
	OnFailure string `json:"on_failure"`
	TLS       string `json:"tls"`

	Action            string             `json:"action"`
	SignMode          string             `json:"sign_mode"`
	Fallback          string             `json:"fallback,omitempty"`
	StripSubjectTag   bool               `json:"strip_subject_tag"`
	Subject           string             `json:"subject,omitempty"` // as it would go out
	CalendarExempt    bool               `json:"calendar_exempt"`
	Certificate       bool               `json:"certificate"`
	CertificateSource string             `json:"certificate_source"`
	From              string             `json:"from"`
	To                string             `json:"to"`
	SenderGroups      []string           `json:"sender_groups"`
	GroupsSource      string             `json:"sender_groups_source"`
	RuleLine          int                `json:"rule_line,omitempty"`
	Why               string             `json:"why"`
	Trace             []policy.RuleTrace `json:"trace"`
	Summary           string             `json:"summary"`
}

func (a *app) policyExplain(ctx context.Context, fl policyExplainFlags) error {
	if ctx == nil {
		ctx = context.Background()
	}
	facts, err := a.explainFacts(fl)
	if err != nil {
		return err
	}
	from := facts.Sender
	to, err := parseAddressFlag("--to", fl.to)
	if err != nil {
		return err
	}
	if !fl.hasHeader("To") {
		facts.Headers = append(facts.Headers, policy.Header{Name: "To", Value: to})
	}

	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	pol, err := policy.FromConfig(cfg)
	if err != nil {
		var ce *config.Errors
		if errors.As(err, &ce) {
			return asUsage(fmt.Errorf("invalid policy (fix these, `sealgate config check` lists the rest):\n%w", err))
		}
		return asUsage(err)
	}

	ctx, cancel := context.WithTimeout(ctx, explainTimeout)
	defer cancel()
	res := explainResult{From: from, To: to, GroupsSource: "--group"}
	if len(fl.groups) > 0 {
		facts.SenderGroups = fl.groups
	} else {
		facts.SenderGroups, res.GroupsSource, err = lookupSenderGroups(ctx, cfg, from)
		if err != nil {
			return fmt.Errorf("looking up the groups of %s: %w", from, err)
		}
	}
	recipient := policy.Recipient{Address: to}
	if pol.Decide(facts, recipient).Action == policy.ActionPass {
		res.CertificateSource = "not looked up: internal recipient"
	} else {
		recipient.HasCert, res.CertificateSource, err = lookupRecipientCert(ctx, cfg, to)
		if err != nil {
			return fmt.Errorf("looking up the certificate of %s (the gateway would retry later): %w", to, err)
		}
	}

	e := pol.Explain(facts, recipient)
	d := e.Decision
	res.Rule, res.Sign, res.Encrypt, res.Method = d.Rule, d.Signs(), d.Encrypt.String(), d.Method.String()
	res.OnFailure, res.TLS, res.Action, res.SignMode = d.OnFailure.String(), d.TLS.String(), d.Action.String(), d.Sign.String()
	if d.Fallback != policy.MethodNone {
		res.Fallback = d.Fallback.String()
	}
	res.StripSubjectTag, res.CalendarExempt = d.StripSubjectTag, d.CalendarExempt
	if d.StripSubjectTag {
		res.Subject = policy.StripTag(facts.Subject, d.SubjectTag)
	}
	res.Certificate = recipient.HasCert
	if res.SenderGroups = facts.SenderGroups; res.SenderGroups == nil {
		res.SenderGroups = []string{}
	}
	res.Why, res.Trace = e.Why, e.Trace
	for _, t := range e.Trace {
		if t.Result == policy.ResultMatched {
			res.RuleLine = t.Line
		}
	}
	res.Summary = summarize(d, recipient.HasCert)
	return a.print(res, func(w io.Writer) error { return printExplain(w, &res) })
}

// explainFacts builds the message facts from --message (a whole message,
// as the gateway would read it) and the flags, which override it.
func (a *app) explainFacts(fl policyExplainFlags) (policy.Facts, error) {
	var facts policy.Facts
	if fl.message != "" {
		var raw []byte
		var err error
		if fl.message == "-" {
			raw, err = io.ReadAll(a.stdin)
		} else {
			raw, err = os.ReadFile(fl.message)
		}
		if err != nil {
			return facts, asUsage(fmt.Errorf("--message: %w", err))
		}
		if facts, err = policy.ReadFacts(bytes.NewReader(raw), int64(len(raw))); err != nil {
			return facts, asUsage(fmt.Errorf("--message %s: %w", fl.message, err))
		}
	}
	if fl.from != "" || facts.Sender == "" {
		from, err := parseAddressFlag("--from", fl.from)
		if err != nil {
			return facts, err
		}
		facts.Sender = from
		facts.Headers = dropHeader(facts.Headers, "From")
		facts.Headers = append(facts.Headers, policy.Header{Name: "From", Value: from})
	}
	if fl.size < 0 {
		return facts, usageErrorf("--size must not be negative")
	}
	if fl.size > 0 {
		facts.Size = fl.size
	}
	facts.Calendar = facts.Calendar || fl.calendar
	for _, h := range fl.headers {
		name, value, err := policy.ParseHeaderCondition(h)
		if err != nil {
			return facts, usageErrorf("--header: %w", err)
		}
		facts.Headers = dropHeader(facts.Headers, name)
		facts.Headers = append(facts.Headers, policy.Header{Name: name, Value: value})
		if strings.EqualFold(name, "Subject") {
			facts.Subject = value
		}
	}
	if fl.subject != "" {
		facts.Subject = fl.subject
		facts.Headers = dropHeader(facts.Headers, "Subject")
		facts.Headers = append(facts.Headers, policy.Header{Name: "Subject", Value: fl.subject})
	}
	return facts, nil
}

// dropHeader removes every field named name: a flag replaces what the
// message said.
func dropHeader(hs []policy.Header, name string) []policy.Header {
	out := hs[:0]
	for _, h := range hs {
		if !strings.EqualFold(h.Name, name) {
			out = append(out, h)
		}
	}
	return out
}

// hasHeader reports whether --message or --header gave a field named name.
func (fl policyExplainFlags) hasHeader(name string) bool {
	for _, h := range fl.headers {
		if n, _, ok := strings.Cut(h, ":"); ok && strings.EqualFold(strings.TrimSpace(n), name) {
			return true
		}
	}
	return fl.message != ""
}

// parseAddressFlag accepts "alice@example.org" or "Alice <alice@example.org>".
func parseAddressFlag(flag, v string) (string, error) {
	if strings.TrimSpace(v) == "" {
		return "", usageErrorf("%s is required: an address such as alice@example.org", flag)
	}
	addr, err := mail.ParseAddress(v)
	if err != nil {
		return "", usageErrorf("%s %q is not an email address: %w", flag, v, err)
	}
	return addr.Address, nil
}

// summarize says in words what happens to the message for this recipient.
func summarize(d policy.Decision, hasCert bool) string {
	switch d.Action {
	case policy.ActionPass:
		return "passed through untouched (internal recipient)"
	case policy.ActionHold:
		return fmt.Sprintf("held: encrypt %s needs a certificate and the recipient has none (on_failure %s)", d.Encrypt, d.OnFailure)
	case policy.ActionBounce:
		return fmt.Sprintf("bounced: encrypt %s needs a certificate and the recipient has none (on_failure %s)", d.Encrypt, d.OnFailure)
	}
	var parts []string
	switch d.Method {
	case policy.MethodSMIME:
		parts = append(parts, "encrypted with S/MIME")
		if d.Fallback == policy.MethodPDF {
			parts[0] += " (PDF mail if that fails)"
		}
	case policy.MethodPDF:
		parts = append(parts, "sent as password-protected PDF mail")
	default:
		switch {
		case d.CalendarExempt:
			parts = append(parts, "not encrypted (meeting request exemption)")
		case d.Encrypt == policy.EncryptSMIME && !hasCert:
			parts = append(parts, "not encrypted (no certificate; encrypt smime allows that)")
		default:
			parts = append(parts, "not encrypted")
		}
	}
	switch d.Sign {
	case policy.SignAlways:
		parts = append(parts, "signed (held if the sender has no usable key)")
	case policy.SignIfKey:
		parts = append(parts, "signed if the sender has a key")
	default:
		parts = append(parts, "not signed")
	}
	if d.StripSubjectTag {
		parts = append(parts, fmt.Sprintf("%q removed from the subject", d.SubjectTag))
	}
	parts = append(parts, "TLS "+d.TLS.String())
	return strings.Join(parts, ", ")
}

func printExplain(w io.Writer, r *explainResult) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s → %s: %s\n", r.From, r.To, r.Summary)
	row := func(k, v string) { fmt.Fprintf(&b, "  %-12s %s\n", k, v) }
	rule := r.Rule
	if r.RuleLine > 0 {
		rule += fmt.Sprintf(" (line %d)", r.RuleLine)
	}
	row("rule", rule)
	row("action", r.Action)
	row("sign", r.SignMode)
	row("encrypt", r.Encrypt)
	method := r.Method
	if r.Fallback != "" {
		method += ", then " + r.Fallback
	}
	row("method", method)
	row("on_failure", r.OnFailure)
	row("tls", r.TLS)
	cert := "none"
	if r.Certificate {
		cert = "found"
	}
	row("certificate", fmt.Sprintf("%s (%s)", cert, r.CertificateSource))
	groups := strings.Join(r.SenderGroups, ", ")
	if groups == "" {
		groups = "none"
	}
	row("groups", fmt.Sprintf("%s (%s)", groups, r.GroupsSource))
	if r.StripSubjectTag {
		row("subject", fmt.Sprintf("%q", r.Subject))
	}
	row("why", r.Why)
	if len(r.Trace) > 0 {
		b.WriteString("rules:\n")
	}
	for _, t := range r.Trace {
		mark := "-"
		if t.Result == policy.ResultMatched {
			mark = "+"
		}
		line := ""
		if t.Line > 0 {
			line = fmt.Sprintf(" (line %d)", t.Line)
		}
		fmt.Fprintf(&b, "  %s %s%s: %s", mark, t.Rule, line, t.Result)
		if t.Condition != "" {
			fmt.Fprintf(&b, ": %s: %s", t.Condition, t.Reason)
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}
