package inbound

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/sealgate/sealgate/pkg/smime"
)

// Key is one of a user's certificates with its private key.
type Key struct {
	Cert *x509.Certificate
	Key  crypto.PrivateKey
}

// KeySource finds the decryption keys of an internal recipient: every
// key the user ever had (newest first), expired or superseded ones
// included, because mail encrypted to an old certificate keeps arriving.
// It returns no keys and no error for an address that is not ours; an
// error means the keys could not be read now (the message is retried).
type KeySource interface {
	DecryptionKeys(ctx context.Context, rcpt string) ([]Key, error)
}

// SignerCheck judges a signer whose signature is intact: the chain to
// the trust store, revocation, key usage and that the certificate carries
// from (the message's From address). nil means trusted; the error text is
// the reason written into the header.
type SignerCheck interface {
	CheckSigner(ctx context.Context, signer *x509.Certificate, certs []*x509.Certificate, from string) error
}

// Harvester stores the signer of a signed layer whose signature passed
// (certificate, chain and SMIMECapabilities).
type Harvester interface {
	HarvestSigned(ctx context.Context, signed []byte) error
}

// Outcome is the overall result of opening a message, worst first.
type Outcome string

const (
	Undecryptable Outcome = "undecryptable" // an envelope no key of the recipient opens: delivered as it came
	SignatureFail Outcome = "fail"          // some signature is bad, untrusted, revoked or not the From's
	SignaturePass Outcome = "pass"          // every signature passed
	Decrypted     Outcome = "decrypted"     // decrypted, not signed
	Plain         Outcome = "none"          // neither signed nor encrypted
)

// Signature is the check of one signed layer.
type Signature struct {
	Pass   bool
	Signer string // the signer certificate's first address ("" when unknown)
	Reason string
}

// Result is a message opened for one recipient.
type Result struct {
	Data       []byte // the message to deliver
	Outcome    Outcome
	Decrypted  int    // envelopes opened
	Reason     string // why not decrypted (Undecryptable)
	Signatures []Signature
}

// DefaultMaxLayers bounds the nested sign/encrypt layers opened.
const DefaultMaxLayers = 6

// Opener opens inbound mail. Safe for concurrent use when its parts are.
type Opener struct {
	// AuthServID names this gateway in Authentication-Results (its
	// hostname); headers from outside claiming it are removed.
	AuthServID string
	Keys       KeySource
	Signers    SignerCheck
	Harvest    Harvester // optional
	// MaxLayers bounds the nesting; 0 means DefaultMaxLayers.
	MaxLayers int
	// Markers are put in front of the Subject per outcome (optional).
	Markers map[Outcome]string
	Log     *slog.Logger
}

func (o *Opener) log() *slog.Logger {
	if o.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Log
}

// Open decrypts and checks msg for rcpt. It never fails on what the
// message contains (a message that cannot be opened comes back as it
// came, with the reason); an error means a temporary problem (keys not
// readable) and the message should be retried.
func (o *Opener) Open(ctx context.Context, msg []byte, rcpt string) (*Result, error) {
	maxLayers := o.MaxLayers
	if maxLayers <= 0 {
		maxLayers = DefaultMaxLayers
	}
	res := &Result{}
	cur := msg
	var keys []Key
	keysRead := false
	for layer := 0; ; layer++ {
		kind := smime.Classify(cur)
		if kind == smime.KindNone || kind == smime.KindCertsOnly {
			break
		}
		if layer >= maxLayers {
			return o.asItCame(msg, res, fmt.Sprintf("more than %d nested S/MIME layers", maxLayers)), nil
		}
		switch kind {
		case smime.KindEnveloped, smime.KindAuthEnveloped:
			if !keysRead {
				var err error
				if keys, err = o.Keys.DecryptionKeys(ctx, rcpt); err != nil {
					return nil, fmt.Errorf("inbound: keys of %s: %w", rcpt, err)
				}
				keysRead = true
			}
			inner, err := decryptAny(cur, keys)
			if err != nil {
				reason := err.Error()
				if len(keys) == 0 {
					reason = "no key for " + rcpt
				}
				o.log().Warn("inbound: not decrypted, delivered as it came", "rcpt", rcpt, "reason", reason)
				return o.asItCame(msg, res, reason), nil
			}
			res.Decrypted++
			cur = merge(cur, inner)
		case smime.KindSigned, smime.KindOpaqueSigned:
			inner, err := smime.SignedEntity(cur)
			if err != nil {
				res.Signatures = append(res.Signatures, Signature{Reason: "unreadable signature: " + err.Error()})
				break
			}
			sig := o.check(ctx, cur)
			res.Signatures = append(res.Signatures, sig)
			next := merge(cur, inner)
			if kind == smime.KindSigned && !isSMIME(next) {
				// The innermost clear-signed layer stays: readable
				// anyway, and the user's client can check it too.
				break
			}
			cur = next
			continue
		}
		if kind == smime.KindSigned || kind == smime.KindOpaqueSigned {
			break
		}
	}
	res.Outcome = outcomeOf(res)
	res.Data = o.finish(cur, res)
	return res, nil
}

func isSMIME(msg []byte) bool {
	k := smime.Classify(msg)
	return k != smime.KindNone && k != smime.KindCertsOnly
}

func outcomeOf(res *Result) Outcome {
	if res.Reason != "" {
		return Undecryptable
	}
	if len(res.Signatures) > 0 {
		for _, s := range res.Signatures {
			if !s.Pass {
				return SignatureFail
			}
		}
		return SignaturePass
	}
	if res.Decrypted > 0 {
		return Decrypted
	}
	return Plain
}

// asItCame is the fail-safe answer: the original bytes with our header.
func (o *Opener) asItCame(msg []byte, res *Result, reason string) *Result {
	res.Reason = reason
	res.Decrypted = 0
	res.Signatures = nil
	res.Outcome = Undecryptable
	res.Data = o.finish(msg, res)
	return res
}

// decryptAny tries each key; the first that opens the envelope wins.
func decryptAny(msg []byte, keys []Key) ([]byte, error) {
	var errs []error
	for _, k := range keys {
		inner, err := smime.DecryptEntity(msg, k.Cert, k.Key)
		if err == nil {
			return inner, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, errors.New("no key")
	}
	// The last error is the oldest key's; all say the same in practice
	// (no matching recipient) unless the envelope is corrupt.
	return nil, fmt.Errorf("none of %d keys opens it: %w", len(keys), errs[0])
}

// check verifies one signed layer: intact (pkg/smime), then trusted
// for the From address (SignerCheck); a pass is harvested.
func (o *Opener) check(ctx context.Context, signed []byte) Signature {
	cert, certs, _, err := smime.SignerInfo(signed)
	if err != nil {
		if errors.Is(err, smime.ErrBadSignature) {
			return Signature{Reason: "bad signature: the content or the signature was altered"}
		}
		return Signature{Reason: "signature not verifiable: " + err.Error()}
	}
	sig := Signature{Signer: firstAddress(cert)}
	fields, _, _ := splitHeader(signed)
	from, err := fromAddress(fields)
	if err != nil {
		sig.Reason = err.Error()
		return sig
	}
	if err := o.Signers.CheckSigner(ctx, cert, certs, from); err != nil {
		sig.Reason = err.Error()
		return sig
	}
	sig.Pass, sig.Reason = true, "signed by "+sig.Signer
	if o.Harvest != nil {
		if err := o.Harvest.HarvestSigned(ctx, signed); err != nil {
			o.log().Warn("inbound: signer not harvested", "signer", sig.Signer, "err", err)
		}
	}
	return sig
}

func firstAddress(c *x509.Certificate) string {
	if a := smime.CertAddresses(c); len(a) > 0 {
		return a[0]
	}
	return ""
}

func fromAddress(fields []field) (string, error) {
	h := headerValue(fields, "from")
	if h == "" {
		return "", errors.New("the message has no From")
	}
	list, err := mail.ParseAddressList(h)
	if err != nil || len(list) != 1 {
		return "", errors.New("the From header is not one address")
	}
	return list[0].Address, nil
}

// merge puts the carrier's header in front of an inner entity: the
// carrier's non-content fields once, MIME-Version once, the inner's
// content fields, and the inner's other fields only when the carrier has
// none of that name (no duplicated From/To/Subject). Inner content that
// is not a MIME entity (a bare text) becomes a text/plain body.
func merge(carrier, inner []byte) []byte {
	outerFields, _, _ := splitHeader(toCRLF(carrier))
	inner = toCRLF(inner)
	var outer []field
	have := map[string]bool{}
	for _, f := range outerFields {
		if isContent(f.name) {
			continue
		}
		outer = append(outer, f)
		have[strings.ToLower(f.name)] = true
	}
	out := appendFields(make([]byte, 0, len(carrier)+len(inner)+256), outer)
	out = append(out, "MIME-Version: 1.0\r\n"...)
	fields, body, ok := splitHeader(inner)
	if !ok || !looksLikeEntity(fields) {
		charset, cte := "us-ascii", "7bit"
		if !isASCII(inner) {
			charset, cte = "utf-8", "8bit"
			if !utf8.Valid(inner) {
				charset = "unknown-8bit"
			}
		}
		out = append(out, "Content-Type: text/plain; charset="+charset+"\r\nContent-Transfer-Encoding: "+cte+"\r\n\r\n"...)
		return append(out, inner...)
	}
	var kept []field
	for _, f := range fields {
		n := strings.ToLower(f.name)
		switch {
		case n == "mime-version":
		case isContent(n):
			kept = append(kept, f)
		case !have[n]:
			kept = append(kept, f)
			have[n] = true
		}
	}
	out = appendFields(out, kept)
	out = append(out, "\r\n"...)
	return append(out, body...)
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// finish removes every Authentication-Results field that names us or the
// smime method (they came from outside or from inside the envelope and
// would forge our verdict), adds ours on top and the subject marker.
func (o *Opener) finish(msg []byte, res *Result) []byte {
	msg = toCRLF(msg)
	fields, body, ok := splitHeader(msg)
	if !ok {
		fields, body = nil, msg
	}
	var kept []field
	for _, f := range fields {
		if f.is("authentication-results") && o.forged(f) {
			continue
		}
		if f.is("subject") && o.Markers[res.Outcome] != "" {
			f = field{name: f.name, raw: []byte("Subject: " + clean(o.Markers[res.Outcome]) + " " + strings.TrimLeft(string(f.raw[len(f.name)+1:]), " \t"))}
		}
		kept = append(kept, f)
	}
	out := make([]byte, 0, len(msg)+512)
	out = append(out, o.header(res)...)
	out = appendFields(out, kept)
	out = append(out, "\r\n"...)
	return append(out, body...)
}

// forged: an Authentication-Results field whose authserv-id is ours, or
// that carries an smime result (only we may say that to our users).
func (o *Opener) forged(f field) bool {
	v := f.value()
	id := strings.TrimSpace(strings.SplitN(v, ";", 2)[0])
	if i := strings.IndexAny(id, " \t("); i >= 0 {
		id = id[:i]
	}
	if strings.EqualFold(id, o.AuthServID) {
		return true
	}
	return strings.Contains(strings.ToLower(v), "smime")
}

// header renders our Authentication-Results field (RFC 8601, method
// smime of RFC 7281: one result per signed layer).
func (o *Opener) header(res *Result) []byte {
	var parts []string
	switch {
	case res.Outcome == Undecryptable:
		parts = append(parts, "smime=permerror reason="+quote("not decrypted: "+res.Reason))
	case len(res.Signatures) == 0:
		r := "not signed"
		if res.Decrypted > 0 {
			r = "decrypted; not signed"
		}
		parts = append(parts, "smime=none reason="+quote(r))
	default:
		for _, s := range res.Signatures {
			r := "fail"
			if s.Pass {
				r = "pass"
			}
			p := "smime=" + r
			if s.Signer != "" {
				p += " body.smime-identifier=" + quote(s.Signer)
			}
			reason := s.Reason
			if res.Decrypted > 0 {
				reason = "decrypted; " + reason
			}
			parts = append(parts, p+" reason="+quote(reason))
		}
	}
	id := o.AuthServID
	if id == "" {
		id = "sealgate"
	}
	return []byte("Authentication-Results: " + clean(id) + ";\r\n\t" + strings.Join(parts, ";\r\n\t") + "\r\n")
}

// quote makes a quoted-string of outside text: no CR, LF or controls,
// quotes and backslashes escaped, bounded length.
func quote(s string) string {
	s = clean(s)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	var b bytes.Buffer
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

// clean drops control characters and non-ASCII (header field values
// stay 7-bit and on one line).
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r >= 0x7f {
			return -1
		}
		return r
	}, s)
}
