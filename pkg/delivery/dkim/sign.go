// Package dkim signs the messages sealgate sends with DKIM (RFC 6376,
// Ed25519 per RFC 8463), after sealgate's own processing: what leaves is a
// signed, S/MIME-encrypted or PDF-carrier message that sealgate composed,
// so a DKIM signature added before the gateway no longer verifies and only
// one added here can.
//
// The signing domain (d=) is the domain of the message's one From address,
// and only when that domain is configured: sealgate never signs for a
// domain it was not told to, nor a message whose author is ambiguous.
package dkim

import (
	"crypto"
	"errors"
	"fmt"
	"strings"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	"golang.org/x/net/idna"

	"github.com/sealgate/sealgate/pkg/message"
)

// SignedFields are the header fields the signature covers. Each is listed
// once more than it occurs in the message ("oversigned"), so a field of
// that name added after signing (a second From, a second Subject) breaks
// the signature instead of showing beside the signed one.
var SignedFields = []string{
	"From", "To", "Cc", "Subject", "Date", "Message-ID", "MIME-Version",
	"Content-Type", "Content-Transfer-Encoding", "In-Reply-To", "References",
}

// Config says how to sign.
type Config struct {
	Selector string
	// Domains are the signing domains; a message is signed only when its
	// From domain is one of them (exactly, case-insensitive; a subdomain
	// only when listed itself).
	Domains []string
	Key     crypto.Signer
}

// Signer signs messages. It is safe for concurrent use.
type Signer struct {
	selector string
	domains  map[string]bool // A-labels, lower case
	key      crypto.Signer
}

// New checks cfg and returns its Signer.
func New(cfg Config) (*Signer, error) {
	if !ValidSelector(cfg.Selector) {
		return nil, fmt.Errorf("dkim: selector %q is not a DNS name", cfg.Selector)
	}
	if cfg.Key == nil {
		return nil, errors.New("dkim: no key")
	}
	if _, err := RecordValue(cfg.Key); err != nil {
		return nil, err
	}
	if len(cfg.Domains) == 0 {
		return nil, errors.New("dkim: no signing domain")
	}
	s := &Signer{selector: cfg.Selector, domains: map[string]bool{}, key: cfg.Key}
	for _, d := range cfg.Domains {
		a, err := NormalizeDomain(d)
		if err != nil {
			return nil, fmt.Errorf("dkim: domain %q: %w", d, err)
		}
		s.domains[a] = true
	}
	return s, nil
}

// ValidSelector says whether s can be a selector (RFC 6376 3.1: labels of
// letters, digits, hyphens; underscores are let through for admins who
// use them).
func ValidSelector(s string) bool { return validLabel(s) }

// NormalizeDomain returns a domain as DKIM's d= names it: the A-label
// form in lower case, without a final dot.
func NormalizeDomain(d string) (string, error) {
	a, err := idna.Lookup.ToASCII(strings.TrimSuffix(strings.TrimSpace(d), "."))
	if err != nil {
		return "", fmt.Errorf("not a domain name: %w", err)
	}
	if a == "" || !validLabel(a) {
		return "", errors.New("not a domain name")
	}
	return strings.ToLower(a), nil
}

// validLabel accepts a dot-separated DNS name of letters, digits, hyphens
// and underscores (selectors may hold dots, RFC 6376 3.1).
func validLabel(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Result says what Sign did.
type Result struct {
	Signed bool
	Domain string // d= when signed; the From domain (if any) when not
	// Reason says why the message was left unsigned (never quotes the
	// header: a reason may go into logs).
	Reason string
}

// Sign returns raw (CRLF line ends) with a DKIM-Signature field put first,
// or raw itself, unsigned, when the message is not to be signed (Result
// says why). An error means signing failed for a message that should have
// been signed; the caller must not send it unsigned in its place silently.
func (s *Signer) Sign(raw []byte) ([]byte, Result, error) {
	h, err := message.ParseHeader(raw)
	if err != nil {
		// The listener refuses these at DATA; a message the gateway made
		// itself never looks like this. Sign nothing ambiguous.
		var me *message.Error
		reason := "the header does not parse"
		if errors.As(err, &me) && me.Field != "" {
			reason = fmt.Sprintf("header field %s: %s", me.Field, firstWords(me.Reason))
		}
		return raw, Result{Reason: reason}, nil
	}
	at := strings.LastIndexByte(h.From.Address, '@')
	if at < 0 {
		return raw, Result{Reason: "the From address has no domain"}, nil
	}
	domain, err := NormalizeDomain(h.From.Address[at+1:])
	if err != nil {
		return raw, Result{Reason: "the From domain is not a domain name"}, nil
	}
	if !s.domains[domain] {
		return raw, Result{Domain: domain, Reason: "the From domain is not in dkim.domains"}, nil
	}
	keys := s.headerKeys(h)
	signer, err := msgdkim.NewSigner(&msgdkim.SignOptions{
		Domain:                 domain,
		Selector:               s.selector,
		Signer:                 s.key,
		HeaderCanonicalization: msgdkim.CanonicalizationRelaxed,
		BodyCanonicalization:   msgdkim.CanonicalizationRelaxed,
		HeaderKeys:             keys,
	})
	if err != nil {
		return nil, Result{Domain: domain}, fmt.Errorf("dkim: %w", err)
	}
	if _, err := signer.Write(raw); err != nil {
		signer.Close()
		return nil, Result{Domain: domain}, fmt.Errorf("dkim: signing for %s: %w", domain, err)
	}
	if err := signer.Close(); err != nil {
		return nil, Result{Domain: domain}, fmt.Errorf("dkim: signing for %s: %w", domain, err)
	}
	sig := signer.Signature()
	out := make([]byte, 0, len(sig)+len(raw))
	out = append(out, sig...)
	out = append(out, raw...)
	return out, Result{Signed: true, Domain: domain}, nil
}

// headerKeys lists each of SignedFields once more than it occurs.
func (s *Signer) headerKeys(h *message.Header) []string {
	count := make(map[string]int, len(SignedFields))
	for _, f := range h.Fields {
		count[strings.ToLower(f.Name)]++
	}
	keys := make([]string, 0, 2*len(SignedFields))
	for _, k := range SignedFields {
		for i := 0; i <= count[strings.ToLower(k)]; i++ {
			keys = append(keys, k)
		}
	}
	return keys
}

// firstWords keeps a reason short and free of quoted header text.
func firstWords(r string) string {
	if i := strings.IndexAny(r, ":\"'"); i >= 0 {
		r = r[:i]
	}
	return strings.TrimSpace(r)
}
