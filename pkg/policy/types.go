package policy

import "fmt"

// SignMode is a rule's sign action.
type SignMode uint8

const (
	// SignAlways signs every message; a sender without a usable key is
	// held (or bounced when the rule's on_failure says bounce), never sent
	// unsigned. It is the zero value because unsigned mail is the unsafe side.
	SignAlways SignMode = iota
	// SignIfKey signs when the sender has a usable key and sends unsigned
	// otherwise.
	SignIfKey
	// SignNever never signs.
	SignNever
)

// Encrypt is a rule's encrypt action: what the rule demands, before the
// recipient's certificate status turns it into a Method.
type Encrypt uint8

const (
	// EncryptNone sends without encryption (signed according to the sign action).
	EncryptNone Encrypt = iota
	// EncryptSMIME encrypts with S/MIME when the recipient has a valid
	// certificate and otherwise sends signed only: opportunistic, and the
	// explicit allowance of unencrypted delivery.
	EncryptSMIME
	// EncryptSMIMEOrPDF encrypts with S/MIME when possible, else as PDF mail.
	EncryptSMIMEOrPDF
	// EncryptPDF always sends PDF mail.
	EncryptPDF
	// EncryptSMIMERequired encrypts with S/MIME; without a certificate the
	// rule's on_failure (hold or bounce) applies. Never plain, never PDF.
	EncryptSMIMERequired
)

// Method is what is done to the message for one recipient.
type Method uint8

const (
	// MethodNone leaves the body unencrypted (it may still be signed).
	MethodNone Method = iota
	// MethodSMIME encrypts to the recipient's certificate.
	MethodSMIME
	// MethodPDF packs the message into a password-protected PDF.
	MethodPDF
)

// Failure is what happens when the decided method cannot be carried out at
// delivery time (or, for smime-required, when there is no certificate).
type Failure uint8

const (
	// FailHold keeps the message in the queue for an admin (or a later
	// certificate). Zero value: failing closed is the default.
	FailHold Failure = iota
	// FailBounce returns the message to the sender with a reason.
	FailBounce
	// FailPlain sends it unencrypted; only allowed where a rule says so
	// explicitly and the encrypt action is not smime-required.
	FailPlain
)

// TLSMode is the outbound TLS requirement for the recipient.
type TLSMode uint8

const (
	// TLSOpportunistic uses STARTTLS when offered.
	TLSOpportunistic TLSMode = iota
	// TLSRequired delivers only over TLS.
	TLSRequired
	// TLSNone never starts TLS.
	TLSNone
	// TLSVerified delivers only over TLS whose server certificate is
	// verified: DANE, an MTA-STS policy in enforce mode, or a PKIX chain
	// valid for the MX host's name (relay.mode "mx"; towards a smart host
	// the smart host's certificate is verified).
	TLSVerified
	// TLSDANE delivers only over TLS that DANE (RFC 7672) verifies: the
	// recipient's MX hosts publish DNSSEC-signed TLSA records.
	TLSDANE
)

// AtLeast reports whether t is as strict as min. None < opportunistic
// < required < verified < dane.
func (t TLSMode) AtLeast(min TLSMode) bool { return tlsRank[t] >= tlsRank[min] }

var tlsRank = [...]uint8{TLSNone: 0, TLSOpportunistic: 1, TLSRequired: 2, TLSVerified: 3, TLSDANE: 4}

// TLSFallback is what happens to a recipient whose servers cannot give the
// TLS the rule asks for (policy rule key tls_fallback).
type TLSFallback uint8

const (
	// TLSFallbackHold keeps the message queued (zero value: fail closed).
	TLSFallbackHold TLSFallback = iota
	// TLSFallbackPDF sends PDF mail over whatever TLS the servers have:
	// the content is protected end to end, so the channel matters less.
	TLSFallbackPDF
	// TLSFallbackBounce returns the message to the sender with the reason.
	TLSFallbackBounce
)

// Action is the outcome for one recipient.
type Action uint8

const (
	// ActionHold keeps the message queued (zero value: a zero Decision
	// never lets mail out).
	ActionHold Action = iota
	// ActionDeliver processes (sign/encrypt per Method) and relays.
	ActionDeliver
	// ActionBounce rejects the message back to the sender.
	ActionBounce
	// ActionPass relays the message untouched (internal recipient).
	ActionPass
)

var (
	signNames     = [...]string{SignAlways: "always", SignIfKey: "if-key", SignNever: "never"}
	encryptNames  = [...]string{EncryptNone: "none", EncryptSMIME: "smime", EncryptSMIMEOrPDF: "smime-or-pdf", EncryptPDF: "pdf", EncryptSMIMERequired: "smime-required"}
	methodNames   = [...]string{MethodNone: "none", MethodSMIME: "smime", MethodPDF: "pdf"}
	failureNames  = [...]string{FailHold: "hold", FailBounce: "bounce", FailPlain: "plain"}
	tlsNames      = [...]string{TLSOpportunistic: "opportunistic", TLSRequired: "required", TLSNone: "none", TLSVerified: "verified", TLSDANE: "dane"}
	fallbackNames = [...]string{TLSFallbackHold: "hold", TLSFallbackPDF: "pdf", TLSFallbackBounce: "bounce"}
	actionNames   = [...]string{ActionHold: "hold", ActionDeliver: "deliver", ActionBounce: "bounce", ActionPass: "pass"}
)

func enumString(names []string, v uint8, kind string) string {
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", kind, v)
}

func parseEnum[T ~uint8](names []string, s string) (T, bool) {
	for i, n := range names {
		if n == s {
			return T(i), true
		}
	}
	return 0, false
}

func (m SignMode) String() string { return enumString(signNames[:], uint8(m), "SignMode") }
func (e Encrypt) String() string  { return enumString(encryptNames[:], uint8(e), "Encrypt") }
func (m Method) String() string   { return enumString(methodNames[:], uint8(m), "Method") }
func (f Failure) String() string  { return enumString(failureNames[:], uint8(f), "Failure") }
func (t TLSMode) String() string  { return enumString(tlsNames[:], uint8(t), "TLSMode") }
func (f TLSFallback) String() string {
	return enumString(fallbackNames[:], uint8(f), "TLSFallback")
}
func (a Action) String() string { return enumString(actionNames[:], uint8(a), "Action") }

// MarshalText makes the enums appear by name in JSON.
func (m SignMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// MarshalText makes the enums appear by name in JSON.
func (e Encrypt) MarshalText() ([]byte, error) { return []byte(e.String()), nil }

// MarshalText makes the enums appear by name in JSON.
func (m Method) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// MarshalText makes the enums appear by name in JSON.
func (f Failure) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// MarshalText makes the enums appear by name in JSON.
func (t TLSMode) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// MarshalText makes the enums appear by name in JSON.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// Header is one header field of the message, as the gateway read it:
// name as written, value unfolded and RFC 2047-decoded.
type Header struct {
	Name  string
	Value string
}

// Facts are what the policy may look at about a message. They are the same
// for every recipient of the message.
type Facts struct {
	// Sender is the address the gateway signs as (the From address of
	// the message, which must be one of our users to be signed).
	Sender string
	// SenderGroups are the sender's directory groups.
	SenderGroups []string
	// Headers are the top-level header fields of the message.
	Headers []Header
	// Subject is the decoded subject.
	Subject string
	// Size is the message size in bytes.
	Size int64
	// Calendar says the message is a meeting request (its content, or
	// its first alternative, is text/calendar).
	Calendar bool
}

// Recipient is one envelope recipient and what the directory knows.
type Recipient struct {
	Address string
	// HasCert says a valid certificate (chain, expiry, revocation, EKU,
	// address all checked) was found for the recipient.
	HasCert bool
}

// Decision is the policy's answer for one (message, recipient).
type Decision struct {
	// Rule is the name of the rule that decided: a configured rule,
	// RuleInternal, or RuleImplicitDefault.
	Rule string
	// RuleIndex is the rule's position in policy.rules, or -1.
	RuleIndex int
	// Action says whether the message is delivered, passed untouched,
	// held or bounced for this recipient.
	Action Action
	// Sign is the rule's sign action. See SignFailure for a sender
	// without a usable key.
	Sign SignMode
	// Encrypt is the rule's encrypt action.
	Encrypt Encrypt
	// Method is what is done for this recipient, given its certificate
	// status. MethodNone when Action is not ActionDeliver.
	Method Method
	// Fallback is tried when Method fails at delivery time
	// (smime-or-pdf: PDF after a failed S/MIME encryption); MethodNone
	// when there is none, then OnFailure applies.
	Fallback Method
	// OnFailure applies when Method (and Fallback) cannot be carried out.
	OnFailure Failure
	// TLS is the outbound TLS requirement.
	TLS TLSMode
	// TLSFallback applies when the recipient's servers cannot meet TLS.
	TLSFallback TLSFallback
	// StripSubjectTag asks to remove SubjectTag from the outgoing subject
	// (see StripTag).
	StripSubjectTag bool
	SubjectTag      string
	// CalendarExempt says encryption was skipped because the message is
	// a meeting request and the rule did not set encrypt_calendar.
	CalendarExempt bool
}

// Names of the decisions that no configured rule made.
const (
	RuleInternal        = "internal"
	RuleImplicitDefault = "implicit-default"
)

// Signs reports whether the message is signed (when the sender has a
// usable key) once it goes out: not when passed through untouched or
// bounced. A held message is signed when released.
func (d Decision) Signs() bool {
	return d.Action != ActionPass && d.Action != ActionBounce && d.Sign != SignNever
}

// SignFailure is what to do when the sender has no usable key: sign
// "always" holds (or bounces, when on_failure is bounce) and ok is false;
// otherwise ok is true and the message goes out unsigned.
func (d Decision) SignFailure() (a Action, ok bool) {
	if d.Action != ActionDeliver || d.Sign != SignAlways {
		return d.Action, true
	}
	if d.OnFailure == FailBounce {
		return ActionBounce, false
	}
	return ActionHold, false
}

// WantsCertificate reports whether the recipient's certificate status can
// change this decision, so that the pipeline may skip a directory lookup
// (LDAP round trips to partners) when it cannot: internal recipients,
// encrypt none or pdf, exempt meeting requests. Decide first with
// HasCert false; if this says true, look up and decide again.
func (d Decision) WantsCertificate() bool {
	if d.Action == ActionPass || d.CalendarExempt {
		return false
	}
	switch d.Encrypt {
	case EncryptSMIME, EncryptSMIMEOrPDF, EncryptSMIMERequired:
		return true
	}
	return false
}
