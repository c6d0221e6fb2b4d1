package gateway

import (
	"context"
	"strings"

	"github.com/sealgate/sealgate/pkg/policy"
)

// TLSVerdicts gives the TLS delivery to a recipient domain's mail servers
// would get (relay.mode = "mx": pkg/delivery/tlscheck's cache, which
// probes at most once per domain per TTL). An error means the check could
// not answer (DNS down, no MX host reachable): nothing is concluded and
// the recipient waits.
type TLSVerdicts interface {
	TLSVerdict(ctx context.Context, domain string) (TLSVerdict, error)
}

// TLSVerdict is a domain's TLS check result.
type TLSVerdict struct {
	Verdict string // verified | encrypted | insecure (the weakest MX host)
	DANE    bool   // every MX host matched its DANE TLSA records
	Reason  string // why, for events and the capability API
}

// Satisfies says whether delivery with verdict v meets rule tls mode m.
func (v TLSVerdict) Satisfies(m policy.TLSMode) bool {
	switch {
	case m.AtLeast(policy.TLSDANE):
		return v.DANE && v.Verdict == "verified"
	case m.AtLeast(policy.TLSVerified):
		return v.Verdict == "verified"
	case m.AtLeast(policy.TLSRequired):
		return v.Verdict == "verified" || v.Verdict == "encrypted"
	}
	return true
}

// tlsOutcome is what the TLS check makes of one recipient.
type tlsOutcome int

const (
	tlsGo      tlsOutcome = iota // unchanged: the rule's TLS demand is met, or not asked
	tlsDefer                     // the check could not answer
	tlsFail                      // hold or bounce (tls_fallback), why says which
	tlsFallPDF                   // PDF mail over the TLS the servers have
	tlsRelax                     // an S/MIME copy: goes over the TLS the servers have
)

// tlsGate applies the recipient domain's TLS verdict to a delivered
// recipient whose rule demands TLS (tls = required, verified or dane).
// An S/MIME copy goes whatever the verdict: its content is protected end
// to end. verdicts caches answers for one message.
func (p *Pipeline) tlsGate(ctx context.Context, rp *rcptPlan, verdicts map[string]tlsAnswer) (tlsOutcome, string, *TLSVerdict) {
	d := rp.d
	if p.TLSVerdicts == nil || d.Action != ActionDeliver || !d.TLS.AtLeast(policy.TLSRequired) {
		return tlsGo, "", nil
	}
	// An S/MIME copy (or an envelope the sender made) is protected end
	// to end: it is never held, bounced or deferred for the servers' TLS.
	protected := rp.protected || (d.Method == MethodSMIME && rp.cert != nil)
	domain := rcptDomain(rp.rcpt)
	a, ok := verdicts[domain]
	if !ok {
		a.v, a.err = p.TLSVerdicts.TLSVerdict(ctx, domain)
		if verdicts != nil {
			verdicts[domain] = a
		}
	}
	if a.err != nil {
		if protected {
			// Unknown: the relay holds it to the rule per connection.
			return tlsGo, "", nil
		}
		return tlsDefer, "the TLS check of " + domain + " could not answer, will try again: " + a.err.Error(), nil
	}
	v := a.v
	if v.Satisfies(d.TLS) {
		return tlsGo, "", &v
	}
	if protected {
		return tlsRelax, "", &v
	}
	why := "the mail servers of " + domain + " do not give the TLS rule " + d.Rule + " demands (tls = " + d.TLS.String() +
		", check: " + v.Verdict
	if v.Reason != "" {
		why += ", " + v.Reason
	}
	why += ")"
	switch d.TLSFallback {
	case policy.TLSFallbackPDF:
		return tlsFallPDF, why + "; sent as PDF mail", &v
	case policy.TLSFallbackBounce:
		rp.d.Bounce = true
	default:
		rp.d.Bounce = false
	}
	return tlsFail, why, &v
}

type tlsAnswer struct {
	v   TLSVerdict
	err error
}

// pdfFallback turns rp into a PDF recipient that may travel over the TLS
// the servers have: the content is protected end to end instead.
func pdfFallback(rp *rcptPlan) {
	rp.d.Method, rp.d.Fallback, rp.d.MustEncrypt = MethodPDF, MethodNone, true
	relaxTLS(rp)
}

// relaxTLS lets rp's copy travel over whatever TLS the servers offer.
func relaxTLS(rp *rcptPlan) {
	rp.d.RequireTLS, rp.d.TLS = false, policy.TLSOpportunistic
}

func rcptDomain(rcpt string) string {
	at := strings.LastIndexByte(rcpt, '@')
	return strings.ToLower(strings.TrimSuffix(rcpt[at+1:], "."))
}
