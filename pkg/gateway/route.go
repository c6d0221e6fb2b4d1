package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sealgate/sealgate/pkg/message"
	"github.com/sealgate/sealgate/pkg/policy"
)

// RouteKind is where the pipeline sends one recipient's copy, judged from
// the policy decision and the certificate lookup alone.
type RouteKind int

// Route kinds. The zero value is not a route: a zero Route never lets mail
// out.
const (
	_           RouteKind = iota
	RoutePass             // relayed untouched (internal recipient)
	RouteHold             // the policy holds it
	RouteBounce           // the policy bounces it
	// RouteFail: the copy cannot be protected as the rule demands; held,
	// or bounced when Decision.Bounce.
	RouteFail
	RouteDefer // looked up again later (opportunistic S/MIME, lookup failed)
	RoutePDF   // password-protected PDF mail
	RouteSMIME // S/MIME envelope to the found certificate
	RoutePlain // unencrypted, signed per Decision.Sign
)

// Route is the pipeline's verdict for one recipient before anything is
// signed, encrypted or sealed.
type Route struct {
	Decision Decision
	Kind     RouteKind
	// Why says why a RouteFail or RouteDefer (or a policy hold/bounce)
	// is what it is; empty otherwise.
	Why string
	// Undecided is set when the kind comes from a certificate lookup
	// that could not give an answer (a key server down or slow): with an
	// answer, the route could have been another.
	Undecided bool
	// TLS is the recipient domain's TLS check verdict when the rule
	// demands TLS and the pipeline checks it (relay.mode = "mx"); nil
	// otherwise. TLSUndecided: the check could not answer (Kind is
	// RouteDefer).
	TLS          *TLSVerdict
	TLSUndecided bool
}

// Route decides one recipient of a message with facts as Process does:
// the policy decision with the certificate status, then what the pipeline
// makes of it. cert is what the Finder found (nil: none); lookErr is the
// Finder's error (the lookup could not answer). The message-specific
// parts of Process (a password left in a header, an envelope the sender
// made, signing and sealing themselves) come on top: see Process.
func (p *Pipeline) Route(ctx context.Context, facts *MessageFacts, rcpt string, cert any, lookErr error) Route {
	d := p.Decider.Decide(ctx, facts, rcpt, cert != nil)
	switch d.Action {
	case ActionPass:
		return Route{Decision: d, Kind: RoutePass}
	case ActionHold:
		return Route{Decision: d, Kind: RouteHold, Why: "policy rule " + d.Rule + " holds this message"}
	case ActionBounce:
		return Route{Decision: d, Kind: RouteBounce, Why: "5.7.1 policy rule " + d.Rule + " does not allow this message"}
	}
	rp := rcptPlan{rcpt: rcpt, d: d, cert: cert, lookErr: lookErr}
	out, why, v := p.tlsGate(ctx, &rp, nil)
	switch out {
	case tlsDefer:
		return Route{Decision: rp.d, Kind: RouteDefer, Why: why, TLSUndecided: true}
	case tlsFail:
		return Route{Decision: rp.d, Kind: RouteFail, Why: why, TLS: v}
	case tlsFallPDF:
		pdfFallback(&rp)
	case tlsRelax:
		relaxTLS(&rp)
	}
	r := p.encryptRoute(ctx, facts, rp)
	r.TLS = v
	return r
}

// encryptRoute is the part of Route that Process applies to a delivered
// recipient after the message-wide checks.
func (p *Pipeline) encryptRoute(ctx context.Context, facts *MessageFacts, rp rcptPlan) Route {
	r := Route{Decision: rp.d}
	switch {
	case rp.lookErr != nil && (rp.d.MustEncrypt || rp.d.Method == MethodSMIME):
		// Without knowing whether a certificate exists, encrypting to
		// the right key cannot be promised.
		r.Kind, r.Why, r.Undecided = RouteFail, "certificate lookup failed: "+rp.lookErr.Error(), true
	case rp.lookErr != nil && p.Decider.Decide(ctx, facts, rp.rcpt, true).Method == MethodSMIME:
		// Opportunistic S/MIME: had the lookup found a certificate, this
		// copy would be encrypted. A plain copy now could be one the rule
		// would have encrypted, so wait and look again; the queue retries
		// and bounces once retry_for is over.
		r.Kind, r.Why, r.Undecided = RouteDefer, "certificate lookup failed, will look again: "+rp.lookErr.Error(), true
	case rp.d.Method == MethodPDF:
		r.Kind = RoutePDF
	case rp.d.Method == MethodSMIME && rp.cert == nil:
		r.Kind, r.Why = RouteFail, "no certificate for S/MIME"
	case rp.d.Method == MethodSMIME:
		r.Kind = RouteSMIME
	case rp.d.MustEncrypt:
		// The last line of defence: whatever a decider says, a rule that
		// demands encryption never yields a plain copy.
		r.Kind, r.Why = RouteFail, "policy rule "+rp.d.Rule+" demands encryption but no encryption method applies"
	default:
		r.Kind = RoutePlain
	}
	return r
}

// SignVerdict is what a signing attempt under mode means for a copy: sent
// signed, sent unsigned (SignIfKey and the sender has no key), or failed
// (held or bounced). signErr is the Signer's error, nil when it signed;
// mode SignNever never asks the signer.
func SignVerdict(mode SignMode, signErr error) (signed bool, err error) {
	switch {
	case mode == SignNever:
		return false, nil
	case signErr == nil:
		return true, nil
	case mode == SignIfKey && errors.Is(signErr, ErrNoSenderKey):
		return false, nil
	}
	return false, signErr
}

// FactsFor are the facts of the plainest message from sender to rcpt (a
// From and a To field, nothing else): what the policy sees of a message
// whose other header fields, subject, size and parts match no rule. The
// capability API answers with them.
func FactsFor(sender, rcpt string) (*MessageFacts, error) {
	if strings.ContainsAny(sender+rcpt, "\r\n\x00") {
		// One address must not become two fields.
		return nil, fmt.Errorf("gateway: facts for %q to %q: %w", sender, rcpt, message.ErrMalformed)
	}
	raw := []byte("From: " + sender + "\r\nTo: " + rcpt + "\r\n\r\n")
	m, err := message.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("gateway: facts for %q to %q: %w", sender, rcpt, err)
	}
	return &MessageFacts{Message: m, Sender: m.From.Lower(), Subject: m.Subject, Header: raw[:m.End],
		Size: int64(len(raw)), Policy: policy.FactsOf(m)}, nil
}
