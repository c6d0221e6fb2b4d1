// Package capability answers, for a sender and a recipient, how the
// gateway would protect a message between them now: S/MIME, PDF mail, a
// signed plain copy, a hold, or nothing. The Outlook add-in asks it
// before the writer sends (GET /api/v1/recipients/{address}/capability,
// POST /api/v1/capability).
//
// It decides nothing itself: the certificate comes from the directory
// lookup the pipeline uses (same instance, same cache), the verdict from
// gateway.Pipeline.Route (the code Process runs), the signing question
// from the pipeline's signer (without signing or issuing), the PDF
// password from pdfmail.Passwords.Preview (without generating one). The
// answer is for the plainest message from the sender to the recipient
// (gateway.FactsFor): rules on the subject, other header fields, size or
// meeting requests see a message that has none of them.
package capability

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/pdfmail"
	"github.com/sealgate/sealgate/pkg/smime"
)

// Methods in an Answer: how the recipient's copy would leave.
const (
	MethodSMIME   = "smime"   // encrypted to the recipient's certificate
	MethodPDF     = "pdf"     // password-protected PDF mail
	MethodSigned  = "signed"  // unencrypted, signed by the sender
	MethodHold    = "hold"    // not delivered: held for an admin or bounced (Action says which)
	MethodNone    = "none"    // unencrypted and unsigned (or internal, passed untouched)
	MethodUnknown = "unknown" // a certificate lookup could not answer now (key server down or slow)
)

// Actions in an Answer: what the queue would do with the copy.
const (
	ActionDeliver = "deliver"
	ActionPass    = "pass" // internal recipient: relayed untouched
	ActionHold    = "hold"
	ActionBounce  = "bounce"
	ActionDefer   = "defer" // kept queued and tried again
)

// PDF password states.
const (
	PasswordPreset    = "preset"    // set by an admin for the recipient
	PasswordPortal    = "portal"    // chosen (or to be chosen) by the recipient in the portal
	PasswordGenerated = "generated" // generated and sent to the sender
	PasswordSubject   = "subject"   // taken from the sender's subject tag
	PasswordNone      = "none"      // no password would be found
	PasswordUnknown   = "unknown"   // the store could not be read
)

// Answer is the capability of one recipient, as the API returns it. It
// never carries a password, a key or the certificate itself.
type Answer struct {
	Recipient string `json:"recipient"`
	Method    string `json:"method"`
	Action    string `json:"action"`
	Rule      string `json:"rule"`
	Reason    string `json:"reason,omitempty"`
	SMIME     SMIME  `json:"smime"`
	PDF       PDF    `json:"pdf"`
	TLS       TLS    `json:"tls"`
}

// SMIME is what the gateway knows of the recipient's certificate.
type SMIME struct {
	// Available: a valid certificate was found; null when the lookup
	// could not answer (a falsy value in the add-in: never "available").
	Available *bool      `json:"available"`
	Source    string     `json:"source,omitempty"`
	NotAfter  *time.Time `json:"not_after,omitempty"`
	// Algorithms is what the encryptor would use for this recipient
	// alone (content encryption, key management); an envelope shared
	// with other recipients uses what all of them support.
	Algorithms []string `json:"algorithms"`
}

// PDF is the recipient's PDF password state.
type PDF struct {
	Password string `json:"password"`
}

// TLS is the transport towards the recipient. Verdict stays "unknown"
// until direct (MX) delivery with TLS verdicts exists; Required is the
// rule's demand on the next hop.
type TLS struct {
	Required bool   `json:"required"`
	Verdict  string `json:"verdict"`
}

// Cert is a certificate lookup's outcome, as the pipeline's finder saw it.
type Cert struct {
	Found bool
	// Recipient is what the pipeline would hand the encryptor.
	Recipient smime.Recipient
	Source    string
}

// Finder looks a recipient's certificate up through the pipeline's
// directory. An error means the lookup could not answer (as for the
// pipeline's CertFinder).
type Finder interface {
	Find(ctx context.Context, email string) (Cert, error)
}

// Router is the pipeline's per-recipient verdict (*gateway.Pipeline).
type Router interface {
	Route(ctx context.Context, facts *gateway.MessageFacts, rcpt string, cert any, lookErr error) gateway.Route
}

// SignProbe says whether the pipeline's signer would sign as sender: nil
// if so, an error wrapping gateway.ErrNoSenderKey when the sender is not a
// user with a key, another error when that cannot be told now. It must
// not sign, issue or change anything.
type SignProbe interface {
	CanSign(ctx context.Context, sender string) error
}

// Passwords previews a recipient's PDF password (the pipeline's
// pdfmail.Passwords with the sender's user status).
type Passwords interface {
	PreviewPassword(ctx context.Context, sender, rcpt string) (pdfmail.Preview, error)
}

// Service answers capability questions. Safe for concurrent use.
type Service struct {
	Router Router
	Finder Finder
	Signer SignProbe
	// PDF is nil when PDF mail is unavailable (the pipeline holds PDF
	// recipients then).
	PDF Passwords
	// Parallel bounds the lookups running at once for one batch
	// (default 16).
	Parallel int
	Log      *slog.Logger
}

// MaxBatch is the most recipients one POST may ask about.
const MaxBatch = 100

// Answer answers for sender and each of rcpts, in order. The addresses
// must have passed CheckAddress. A lookup that outlives ctx answers
// "unknown" for its recipient.
//
// The certificate lookups run in parallel (a key server may be slow; the
// directory's cache answers the others at once); the rest runs in turn,
// so that the store reads (PDF passwords) share one connection instead
// of opening one each.
func (s *Service) Answer(ctx context.Context, sender string, rcpts []string) []Answer {
	certs := make([]Cert, len(rcpts))
	errs := make([]error, len(rcpts))
	par := s.Parallel
	if par <= 0 {
		par = 16
	}
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i, r := range rcpts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			certs[i], errs[i] = s.Finder.Find(ctx, r)
		}()
	}
	wg.Wait()
	// The signer is asked at most once: the sender is the same for every
	// answer.
	var signOnce sync.Once
	var signErr error
	canSign := func() error {
		signOnce.Do(func() { signErr = s.Signer.CanSign(ctx, sender) })
		return signErr
	}
	out := make([]Answer, len(rcpts))
	for i, r := range rcpts {
		out[i] = s.one(ctx, sender, r, certs[i], errs[i], canSign)
	}
	return out
}

func (s *Service) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Service) one(ctx context.Context, sender, rcpt string, c Cert, lookErr error, canSign func() error) Answer {
	a := Answer{Recipient: rcpt, SMIME: SMIME{Algorithms: []string{}}, PDF: PDF{Password: PasswordNone}, TLS: TLS{Verdict: "unknown"}}
	facts, err := gateway.FactsFor(sender, rcpt)
	if err != nil {
		// CheckAddress let through what the message parser refuses: no
		// answer rather than a guess.
		a.Method, a.Action, a.Reason = MethodUnknown, ActionHold, "the addresses cannot be read as a message header"
		return a
	}
	var cert any
	switch {
	case lookErr != nil:
		s.logger().Debug("capability: certificate lookup undecided", "recipient", rcpt, "err", lookErr)
	case c.Found:
		cert = c.Recipient
		yes := true
		a.SMIME.Available, a.SMIME.Source = &yes, c.Source
		na := c.Recipient.Cert.NotAfter.UTC()
		a.SMIME.NotAfter = &na
		a.SMIME.Algorithms = Algorithms(c.Recipient)
	default:
		no := false
		a.SMIME.Available = &no
	}
	route := s.Router.Route(ctx, facts, rcpt, cert, lookErr)
	d := route.Decision
	a.Rule, a.TLS.Required = d.Rule, d.RequireTLS
	if route.TLS != nil {
		// The recipient domain's TLS check, where the rule demands TLS
		// under direct delivery.
		a.TLS.Verdict = route.TLS.Verdict
	}
	fail := func(reason string) {
		a.Method, a.Action, a.Reason = MethodHold, ActionHold, reason
		if d.Bounce {
			a.Action = ActionBounce
		}
	}
	switch route.Kind {
	case gateway.RoutePass:
		a.Method, a.Action, a.Reason = MethodNone, ActionPass, "internal recipient: passed through untouched"
		return a
	case gateway.RouteHold:
		a.Method, a.Action, a.Reason = MethodHold, ActionHold, "policy rule "+d.Rule+" holds this message"
		return a
	case gateway.RouteBounce:
		a.Method, a.Action, a.Reason = MethodHold, ActionBounce, "policy rule "+d.Rule+" does not allow this message"
		return a
	}
	if route.TLSUndecided {
		// The recipient domain's TLS check could not answer: the
		// pipeline defers such a recipient until it can.
		a.Method, a.Action, a.Reason, a.TLS.Verdict = MethodUnknown, ActionDefer, route.Why, "unknown"
		return a
	}
	subjectHint := s.pdfState(ctx, &a, sender, rcpt)
	switch route.Kind {
	case gateway.RouteFail, gateway.RouteDefer:
		if route.Undecided {
			// The pipeline would hold or defer it until the lookup
			// answers; which method it then gets is not known.
			a.Method, a.Action = MethodUnknown, ActionDefer
			if route.Kind == gateway.RouteFail {
				a.Action = ActionHold
				if d.Bounce {
					a.Action = ActionBounce
				}
			}
			a.Reason = "the certificate lookup could not answer now (a key server is unavailable or slow)"
			return a
		}
		fail(failReason(d))
		return a
	case gateway.RoutePDF:
		switch {
		case s.PDF == nil:
			fail("PDF mail is not available (see the pdf settings)")
			return a
		case a.PDF.Password == PasswordUnknown:
			a.Method, a.Action, a.Reason = MethodUnknown, ActionHold, "the PDF password state could not be read"
			return a
		case a.PDF.Password == PasswordNone && subjectHint:
			fail("no PDF password is stored for the recipient: write one into the subject ([pw:…]), or it is held")
			return a
		case a.PDF.Password == PasswordNone:
			fail("no PDF password would be found for the recipient (pdf.password)")
			return a
		}
		a.Method, a.Action = MethodPDF, ActionDeliver
	case gateway.RouteSMIME:
		a.Method, a.Action = MethodSMIME, ActionDeliver
	case gateway.RoutePlain:
		a.Method, a.Action = MethodNone, ActionDeliver
	default:
		fail("no route")
		return a
	}
	// Signing: the copy (the PDF's carrier) is signed per the rule's mode.
	if d.Sign != gateway.SignNever {
		signed, err := gateway.SignVerdict(d.Sign, canSign())
		switch {
		case err != nil && !errors.Is(err, gateway.ErrNoSenderKey):
			a.Method, a.Action, a.Reason = MethodUnknown, ActionHold, "the sender's signing key cannot be checked now"
			return a
		case err != nil:
			fail("the rule signs always and the sender is not a user with a signing key")
			return a
		case signed && a.Method == MethodNone:
			a.Method = MethodSigned
		}
	}
	return a
}

func failReason(d gateway.Decision) string {
	switch {
	case d.Method == gateway.MethodSMIME:
		return "policy rule " + d.Rule + " needs S/MIME and the recipient has no valid certificate"
	case d.MustEncrypt:
		return "policy rule " + d.Rule + " demands encryption and no encryption method applies"
	}
	return "the copy cannot be protected as policy rule " + d.Rule + " demands"
}

// pdfState fills a.PDF from the password preview; subject says a
// password in the subject would be taken.
func (s *Service) pdfState(ctx context.Context, a *Answer, sender, rcpt string) (subject bool) {
	if s.PDF == nil {
		return false
	}
	pv, err := s.PDF.PreviewPassword(ctx, sender, rcpt)
	if err != nil {
		s.logger().Warn("capability: PDF password state", "recipient", rcpt, "err", err)
		a.PDF.Password = PasswordUnknown
		return false
	}
	a.PDF.Password = passwordState(pv)
	return pv.Subject
}

func passwordState(pv pdfmail.Preview) string {
	switch pv.Mode {
	case "":
		return PasswordNone
	case pdfmail.ModeSubject:
		return PasswordSubject
	case pdfmail.ModePortal:
		return PasswordPortal
	case pdfmail.ModeGeneratedToSender:
		return PasswordGenerated
	}
	switch pv.Stored {
	case pdfmail.ModeGeneratedToSender:
		return PasswordGenerated
	case pdfmail.ModePortal:
		return PasswordPortal
	}
	return PasswordPreset
}

// Algorithms names what smime.Encrypt would use for r alone: the content
// cipher, then the key management (smime.Algorithms decides both).
func Algorithms(r smime.Recipient) []string {
	gcm, oaep := smime.Algorithms([]smime.Recipient{r}, nil)
	out := []string{"aes256-cbc"}
	if gcm {
		out[0] = "aes256-gcm"
	}
	switch r.Cert.PublicKey.(type) {
	case *rsa.PublicKey:
		if oaep {
			out = append(out, "rsaes-oaep-sha256")
		} else {
			out = append(out, "rsaes-pkcs1-v1_5")
		}
	case *ecdsa.PublicKey:
		out = append(out, "ecdh-x963kdf-sha256-aes256-wrap")
	default:
		return []string{} // the encryptor refuses this key type
	}
	return out
}
