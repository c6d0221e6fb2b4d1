package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/pkg/message"
	"github.com/sealgate/sealgate/pkg/policy"
	"github.com/sealgate/sealgate/pkg/smime"
)

// Action is what policy says happens to a message for one recipient.
type Action int

// Actions. The zero value holds: a zero Decision never lets mail out.
const (
	ActionHold    Action = iota // keep it queued for an admin
	ActionDeliver               // sign/encrypt per Method and relay
	ActionPass                  // relay untouched (internal mail)
	ActionBounce                // return it to the sender
)

// Method is how a recipient's copy is protected.
type Method int

// Methods.
const (
	MethodNone  Method = iota // unencrypted (perhaps signed)
	MethodSMIME               // S/MIME envelope to the recipient's certificate
	MethodPDF                 // password-protected PDF
)

// SignMode says whether the gateway signs.
type SignMode int

// Sign modes; the zero value is the strict one.
const (
	SignAlways SignMode = iota // sign or fail (OnFailure)
	SignIfKey                  // sign when the sender has a key
	SignNever
)

// Decision is the policy outcome for one recipient, in the gateway's
// words (cmd/sealgate adapts pkg/policy to it).
type Decision struct {
	Rule     string
	Action   Action
	Sign     SignMode
	Method   Method
	Fallback Method // tried when Method fails; MethodNone: none
	// MustEncrypt says the rule never allows unencrypted delivery; any
	// failure to encrypt then holds or bounces.
	MustEncrypt bool
	// Bounce: on failure bounce instead of hold.
	Bounce bool
	// RequireTLS: the copy may travel to the next hop only over TLS.
	RequireTLS bool
	// TLS is the rule's TLS mode, for direct delivery to MX hosts.
	TLS policy.TLSMode
	// StripSubjectTag is the policy tag to remove from the outgoing
	// subject ("" keeps the subject as it is).
	StripSubjectTag string
	// TLSFallback is what happens when the recipient's servers cannot
	// meet TLS (see Pipeline.TLSVerdicts).
	TLSFallback policy.TLSFallback
}

// MessageFacts are what the policy may look at, read once per message
// from the one parse of it (pkg/message).
type MessageFacts struct {
	Message *message.Message
	Sender  string // header From address, lower case
	Subject string // decoded (RFC 2047): a tag inside an encoded word counts
	Header  []byte // raw top-level header section
	Size    int64
	// Policy is what pkg/policy reads from the message: the header fields
	// decoded, and whether it is a meeting request. The decider adds the
	// sender's groups.
	Policy policy.Facts
}

// Decider decides per recipient; hasCert says a valid certificate exists.
type Decider interface {
	Decide(ctx context.Context, m *MessageFacts, rcpt string, hasCert bool) Decision
}

// CertFinder finds a recipient's validated certificate. found=false with
// a nil error means there is none; an error means the lookup itself failed
// (directory down) and nothing can be concluded.
type CertFinder interface {
	Find(ctx context.Context, email string) (cert any, found bool, err error)
}

// Signer signs msg as sender. It must refuse (ErrNoSenderKey) unless
// sender is a known user of the organisation with a usable key: the
// gateway must not sign for forged senders. The result must be a new
// buffer that the caller owns (the pipeline prepends its loop guard in
// place instead of copying a large message once more).
type Signer interface {
	Sign(ctx context.Context, sender string, msg []byte) ([]byte, error)
}

// ErrNoSenderKey means the sender is not ours or has no key.
var ErrNoSenderKey = errors.New("sender has no signing key (not a known user of the organisation)")

// Encrypter builds one S/MIME envelope for all certs (from CertFinder),
// in a new buffer that the caller owns (see Signer).
type Encrypter interface {
	Encrypt(ctx context.Context, msg []byte, certs []any) ([]byte, error)
}

// PDFSealer packs msg into a carrier mail with a password-protected PDF
// for one recipient.
type PDFSealer interface {
	SealPDF(ctx context.Context, sender, rcpt, subject string, msg []byte) (PDFResult, error)
}

// PDFResult is a sealed PDF mail, or a pending password.
type PDFResult struct {
	Carrier []byte
	// Notice is a password notice to the sender, sent only once the
	// carrier has left (its Queued marks the password announced).
	Notice  *ExtraMessage
	Pending bool // the recipient's password is not chosen yet
	// Warnings say what the PDF shows differently from the message (a
	// character no font has, as a code point): the delivered event's
	// reason. Never message text.
	Warnings []string
}

// Pipeline is the Processor that applies policy: sign, encrypt, seal, hold.
type Pipeline struct {
	Hostname  string
	Decider   Decider
	Finder    CertFinder
	Signer    Signer
	Encrypter Encrypter
	PDF       PDFSealer // nil: PDF impossible (fails closed per policy)
	// CleanSubject removes the PDF password tag from a subject; StripTag
	// removes a policy subject tag. Both are applied to every copy that
	// leaves except internal pass-through (see outgoingSubject).
	CleanSubject func(subject string) string
	StripTag     func(subject, tag string) string
	// SubjectPassword returns the PDF password written into a subject
	// ("" if none): no copy that leaves may carry it in any header field.
	SubjectPassword func(subject string) string
	// Authorize checks the spooled account against From and Sender, as
	// the admission did at DATA (AuthorizeHeaderSenders). Checked again
	// here because a refused message whose spool file could not be
	// removed is queued again by Recover; nil accepts every author.
	Authorize func(ctx context.Context, env *Envelope, h *message.Header) error
	// TLSVerdicts, when set (relay.mode = "mx"), decides recipients whose
	// rule demands TLS (required, verified, dane) before anything is
	// processed: the domain's verdict meets the rule, or tls_fallback
	// applies (PDF mail over the TLS the servers have, hold, or bounce).
	// S/MIME copies go whatever the verdict: their content is protected
	// end to end. nil: no check (smart host: the relay demands TLS).
	TLSVerdicts TLSVerdicts
}

type rcptPlan struct {
	rcpt    string
	d       Decision
	cert    any
	lookErr error
	// tls is the TLS check's outcome, tlsWhy its reason (tlsDefer,
	// tlsFail; tlsFallPDF: the note in the delivered event).
	tls    tlsOutcome
	tlsWhy string
	// protected: the sender's client encrypted the message already.
	protected bool
}

// Process implements Processor.
//
// The message is parsed once (pkg/message) and every decision reads that
// one value. A message that cannot be read unambiguously is an error, and
// the queue holds it: no rule is decided on a header that another reader
// would see differently (the listener refuses such messages at DATA; this
// covers what was spooled before).
func (p *Pipeline) Process(ctx context.Context, env *Envelope, rcpts []string, msg []byte) (*Plan, error) {
	plan := &Plan{Held: map[string]string{}, Bounced: map[string]string{}, Deferred: map[string]string{}}
	m, err := message.Parse(msg)
	if err != nil {
		return nil, fmt.Errorf("the message cannot be read unambiguously: %w", err)
	}
	plan.MessageID = m.Get("Message-Id")
	if p.Authorize != nil {
		if err := p.Authorize(ctx, env, m.Header); err != nil {
			var se *smtp.SMTPError
			if errors.As(err, &se) && se.Code < 500 {
				for _, r := range rcpts {
					plan.Deferred[r] = "the sender could not be checked: " + se.Message
				}
				return plan, nil
			}
			return nil, fmt.Errorf("the sender is not authorized: %w", err)
		}
	}
	facts := &MessageFacts{Message: m, Sender: m.From.Lower(), Subject: m.Subject, Header: msg[:m.End],
		Size: int64(len(msg)), Policy: policy.FactsOf(m)}
	// Proof, not labels: "already encrypted" is a body that parses as a
	// CMS envelope with recipients, whatever the Content-Type claims.
	kind := smime.Prove(m.MediaType, m.Params, m.TransferEncoding, m.Body())
	alreadyEncrypted := kind == smime.KindEnveloped || kind == smime.KindAuthEnveloped
	alreadySigned := kind == smime.KindSigned || kind == smime.KindOpaqueSigned

	fail := func(rp rcptPlan, why string) {
		if rp.d.Bounce {
			plan.Bounced[rp.rcpt] = "5.7.1 " + why
		} else {
			plan.Held[rp.rcpt] = why
		}
	}

	var plans []rcptPlan
	for _, r := range rcpts {
		rp := rcptPlan{rcpt: r}
		if p.Finder != nil && !alreadyEncrypted {
			rp.cert, _, rp.lookErr = p.find(ctx, r)
		}
		// An envelope the sender's client made satisfies a rule that
		// demands S/MIME: the policy decides as for a certificate holder.
		rp.d = p.Decider.Decide(ctx, facts, r, rp.cert != nil || alreadyEncrypted)
		plans = append(plans, rp)
	}
	// The recipient servers' TLS, checked before anything is processed
	// (one answer per domain, cached across messages by TLSVerdicts).
	if p.TLSVerdicts != nil {
		verdicts := map[string]tlsAnswer{}
		for i := range plans {
			rp := &plans[i]
			rp.protected = alreadyEncrypted
			rp.tls, rp.tlsWhy, _ = p.tlsGate(ctx, rp, verdicts)
			switch rp.tls {
			case tlsFallPDF:
				pdfFallback(rp)
			case tlsRelax:
				relaxTLS(rp)
			}
		}
	}
	plan.Decided = make(map[string]Verdict, len(plans))
	for _, rp := range plans {
		plan.Decided[rp.rcpt] = verdictOf(rp.d, alreadyEncrypted)
	}

	// The original message goes to internal pass-through recipients and,
	// with its original subject, to the PDF sealer (which reads the
	// password tag from it); every other copy leaves with its text fields
	// cleaned (Subject, Thread-Topic, X- fields: see outgoing).
	orig := msg
	msg, leak := p.outgoing(m, msg, plans)

	// signed is the message signed once for every recipient that wants it.
	var signed []byte
	var signErr error
	signOnce := func() ([]byte, error) {
		if signed == nil && signErr == nil {
			signed, signErr = p.Signer.Sign(ctx, facts.Sender, msg)
		}
		return signed, signErr
	}
	// signFor says whether rp's copy goes out signed, signing (once for
	// all) when it should be. A signed group exists only after signing
	// succeeded, so the groups below take signed as it is.
	signFor := func(rp rcptPlan) (isSigned bool, err error) {
		if alreadySigned || rp.d.Sign == SignNever {
			return alreadySigned, nil
		}
		_, err = signOnce()
		if isSigned, err = SignVerdict(rp.d.Sign, err); err != nil {
			return false, fmt.Errorf("signing as %q failed: %w", facts.Sender, err)
		}
		return isSigned, nil
	}

	var smimeGroups, plainGroups groups
	var passthrough, asIs []string
	var pdfs []rcptPlan

	for _, rp := range plans {
		switch rp.d.Action {
		case ActionPass:
			passthrough = append(passthrough, rp.rcpt)
			continue
		case ActionHold:
			plan.Held[rp.rcpt] = "policy rule " + rp.d.Rule + " holds this message"
			continue
		case ActionBounce:
			plan.Bounced[rp.rcpt] = "5.7.1 policy rule " + rp.d.Rule + " does not allow this message"
			continue
		}
		switch rp.tls {
		case tlsDefer:
			plan.Deferred[rp.rcpt] = rp.tlsWhy
			continue
		case tlsFail:
			fail(rp, rp.tlsWhy)
			continue
		}
		if leak != "" {
			fail(rp, leak)
			continue
		}
		if alreadyEncrypted {
			// The sender's client encrypted it already: relayed as it is,
			// but with the cleaned outer header like every copy that leaves.
			asIs = append(asIs, rp.rcpt)
			continue
		}
		// The rest is Route's verdict (shared with the capability API):
		// a failed lookup, the method, the last line of defence.
		switch route := p.encryptRoute(ctx, facts, rp); route.Kind {
		case RouteFail:
			fail(rp, route.Why)
			continue
		case RouteDefer:
			plan.Deferred[rp.rcpt] = route.Why
			continue
		case RoutePDF:
			pdfs = append(pdfs, rp)
			continue
		}
		isSigned, err := signFor(rp)
		if err != nil {
			fail(rp, err.Error())
			continue
		}
		if rp.d.Method == MethodSMIME {
			// A recipient the header does not name (a Bcc) gets an
			// envelope of its own: the recipient infos of a shared one
			// would show every other recipient who they are.
			bcc := ""
			if !m.IsVisible(rp.rcpt) {
				bcc = message.LowerASCII(rp.rcpt)
			}
			smimeGroups.add(groupKey{signed: isSigned, bcc: bcc, relaxed: rp.tls == tlsRelax}, rp)
		} else {
			plainGroups.add(groupKey{signed: isSigned, relaxed: rp.tls == tlsRelax}, rp)
		}
	}

	if len(asIs) > 0 {
		plan.Parcels = append(plan.Parcels, Parcel{Rcpts: asIs, Data: p.mark(msg), Method: "passthrough", Signed: alreadySigned, Rule: rulesOf(plans, asIs)})
	}
	if len(passthrough) > 0 {
		plan.Parcels = append(plan.Parcels, Parcel{Rcpts: passthrough, Data: p.mark(orig), Method: "passthrough", Signed: alreadySigned, Rule: rulesOf(plans, passthrough)})
	}
	for _, g := range smimeGroups.list {
		src := msg
		if g.signed && !alreadySigned {
			src = signed
		}
		enc, err := p.Encrypter.Encrypt(ctx, src, g.certs)
		if err != nil {
			for _, rp := range g.plans {
				if rp.d.Fallback == MethodPDF {
					pdfs = append(pdfs, rp)
				} else {
					fail(rp, "S/MIME encryption failed: "+err.Error())
				}
			}
			continue
		}
		plan.Parcels = append(plan.Parcels, Parcel{Rcpts: g.rcpts, Data: p.markOwned(enc), Method: "smime", Signed: g.signed, Rule: rulesOf(plans, g.rcpts)})
	}
	for _, g := range plainGroups.list {
		var data []byte
		if g.signed && !alreadySigned {
			// The signed copy is the pipeline's own and this is its last
			// use (the S/MIME groups are done, PDFs sign their carriers).
			data = p.markOwned(signed)
		} else {
			data = p.mark(msg) // msg may be the caller's: copied
		}
		method := "plain"
		if g.signed {
			method = "signed"
		}
		plan.Parcels = append(plan.Parcels, Parcel{Rcpts: g.rcpts, Data: data, Method: method, Signed: g.signed, Rule: rulesOf(plans, g.rcpts)})
	}
	// The PDF sealer finds the password from the original subject
	// (facts.Subject) and seals the message with the cleaned one, like
	// every copy that leaves: with pdf.attach_original the whole message
	// goes into the PDF, and the password must not be written inside the
	// document it opens.
	for _, rp := range pdfs {
		if p.PDF == nil {
			fail(rp, "PDF mail is not available")
			continue
		}
		res, err := p.PDF.SealPDF(ctx, facts.Sender, rp.rcpt, facts.Subject, msg)
		if err != nil {
			fail(rp, "PDF sealing failed: "+err.Error())
			continue
		}
		if res.Pending {
			plan.Deferred[rp.rcpt] = "waiting for the recipient to choose a PDF password"
			continue
		}
		carrier, isSigned := res.Carrier, false
		if rp.d.Sign != SignNever {
			s, err := p.Signer.Sign(ctx, facts.Sender, carrier)
			if isSigned, err = SignVerdict(rp.d.Sign, err); err != nil {
				fail(rp, fmt.Sprintf("signing as %q failed: %v", facts.Sender, err))
				continue
			}
			if isSigned {
				carrier = s
			}
		}
		parcel := Parcel{Rcpts: []string{rp.rcpt}, Data: p.mark(carrier), Method: "pdf", Signed: isSigned, Rule: rp.d.Rule}
		var why []string
		if rp.tls == tlsFallPDF {
			why = append(why, rp.tlsWhy)
		}
		parcel.Reason = strings.Join(append(why, res.Warnings...), "; ")
		if res.Notice != nil {
			// The password notice goes to our own sender once this copy
			// has left (the queue sends After only then); signed when the
			// sender has a key, so that it cannot be mistaken for phishing.
			n := *res.Notice
			if signed, err := p.Signer.Sign(ctx, facts.Sender, n.Data); err == nil {
				n.Data = signed
			}
			parcel.After = append(parcel.After, n)
		}
		plan.Parcels = append(plan.Parcels, parcel)
	}
	tlsNeeded := map[string]Decision{}
	for _, rp := range plans {
		tlsNeeded[rp.rcpt] = rp.d
	}
	for i := range plan.Parcels {
		seen := false
		for _, r := range plan.Parcels[i].Rcpts {
			d, ok := tlsNeeded[r]
			if !ok {
				continue
			}
			if d.RequireTLS {
				plan.Parcels[i].RequireTLS = true
			}
			// A copy shared by recipients of different rules travels
			// under the strictest rule's TLS (fail closed).
			if !seen || d.TLS.AtLeast(plan.Parcels[i].TLS) {
				plan.Parcels[i].TLS, seen = d.TLS, true
			}
		}
	}
	return plan, nil
}

// groupKey says which recipients share one copy.
type groupKey struct {
	signed bool
	bcc    string // a Bcc recipient's own envelope
	// relaxed: an S/MIME copy the TLS check let go over the servers' TLS
	// (tlsRelax). A copy travels under its strictest recipient's TLS, so
	// relaxed recipients get copies of their own.
	relaxed bool
}

type group struct {
	rcpts  []string
	certs  []any
	signed bool
	plans  []rcptPlan
}

// groups keeps groups in the order their first recipient came.
type groups struct {
	list  []*group
	index map[groupKey]*group
}

func (gs *groups) add(k groupKey, rp rcptPlan) {
	g := gs.index[k]
	if g == nil {
		if gs.index == nil {
			gs.index = map[groupKey]*group{}
		}
		g = &group{signed: k.signed}
		gs.index[k] = g
		gs.list = append(gs.list, g)
	}
	g.rcpts = append(g.rcpts, rp.rcpt)
	g.plans = append(g.plans, rp)
	if rp.cert != nil {
		g.certs = append(g.certs, rp.cert)
	}
}

func (p *Pipeline) find(ctx context.Context, r string) (cert any, found bool, err error) {
	cert, found, err = p.Finder.Find(ctx, r)
	if !found {
		cert = nil
	}
	return cert, found, err
}

// mark returns a copy of msg with the loop guard field prepended.
func (p *Pipeline) mark(msg []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(msg) + 64)
	b.WriteString(p.loopField())
	b.Write(msg)
	return b.Bytes()
}

func (p *Pipeline) loopField() string { return LoopHeader + ": " + p.Hostname + "\r\n" }

// markOwned prepends the loop guard field to buf, which nobody else holds
// (a fresh S/MIME envelope or signed message), by shifting it within its
// spare capacity when there is enough (pkg/smime leaves some). The copy
// mark makes would be the largest allocation of the pipeline: 13.5 MB of
// base64 envelope for a 10 MB message, on top of the message, its signed
// form and the envelope itself (BenchmarkProcessMemory10MB).
func (p *Pipeline) markOwned(buf []byte) []byte {
	field := p.loopField()
	n := len(buf)
	if cap(buf)-n < len(field) {
		return p.mark(buf)
	}
	buf = buf[:n+len(field)]
	copy(buf[len(field):], buf[:n])
	copy(buf, field)
	return buf
}

func rulesOf(plans []rcptPlan, rcpts []string) string {
	seen := map[string]bool{}
	var out []string
	for _, rp := range plans {
		for _, r := range rcpts {
			if rp.rcpt == r && !seen[rp.d.Rule] {
				seen[rp.d.Rule] = true
				out = append(out, rp.d.Rule)
			}
		}
	}
	return strings.Join(out, ",")
}

// verdictOf names the method a decision chose, in the words of
// Parcel.Method. A rule that holds or bounces names the method it wanted
// (S/MIME for smime-required without a certificate), or none.
func verdictOf(d Decision, alreadyEncrypted bool) Verdict {
	v := Verdict{Rule: d.Rule}
	switch {
	case d.Action == ActionPass || (d.Action == ActionDeliver && alreadyEncrypted):
		v.Method = "passthrough"
	case d.Action != ActionDeliver && d.Method == MethodNone:
	case d.Method == MethodSMIME:
		v.Method = "smime"
	case d.Method == MethodPDF:
		v.Method = "pdf"
	case d.Sign == SignNever:
		v.Method = "plain"
	default:
		v.Method = "signed"
	}
	return v
}
