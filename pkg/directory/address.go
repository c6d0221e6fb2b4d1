package directory

import (
	"github.com/sealgate/sealgate/pkg/message"

	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// NormalizeAddress returns email in the form the directory compares,
// caches and asks its sources for: surrounding space and angle brackets
// removed, the domain lowercased and in its ASCII (IDNA, A-label) form,
// and the ASCII letters of the local part lowercased.
//
// RFC 5280 §7.5 would compare the local part exactly, but no mail system
// treats John.Doe@ and john.doe@ as two mailboxes (Exchange, AD and LDAP's
// caseIgnoreIA5Match do not), and an exact comparison turned a certificate
// for John.Doe@example.net into "no certificate" for john.doe@example.net,
// so the mail left as a signed plain copy. Only ASCII letters are folded:
// Unicode case folding maps distinct characters together (the Kelvin sign
// K to k, ſ to s), which would let a certificate for one mailbox match
// another. A non-ASCII local part is kept byte for byte; it cannot match a
// certificate anyway, whose addresses are ASCII (see certAddresses).
func NormalizeAddress(email string) (string, error) {
	e := strings.TrimSpace(email)
	if !utf8.ValidString(e) {
		return "", fmt.Errorf("directory: %q is not valid UTF-8", email)
	}
	e = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(e, "<"), ">"))
	at := strings.LastIndexByte(e, '@')
	if at <= 0 || at == len(e)-1 {
		return "", fmt.Errorf("directory: %q is not an email address (want local@domain)", email)
	}
	local, domain := e[:at], e[at+1:]
	if strings.ContainsAny(local, " \t\r\n<>") {
		return "", fmt.Errorf("directory: %q is not an email address (bad local part)", email)
	}
	ascii, err := idna.Lookup.ToASCII(strings.TrimSuffix(domain, "."))
	if err != nil {
		return "", fmt.Errorf("directory: domain of %q: %w", email, err)
	}
	for _, label := range strings.Split(ascii, ".") {
		if label == "" {
			return "", fmt.Errorf("directory: %q has an empty domain label", email)
		}
	}
	return message.LowerASCII(local) + "@" + strings.ToLower(ascii), nil
}

// oidEmailAddress is PKCS #9 emailAddress, used in the subject by old
// certificates that have no rfc822Name SAN.
var oidEmailAddress = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}

// certAddresses lists the addresses a certificate is issued to: its
// rfc822Name SANs, or, only when it has none, the subject's emailAddress
// (RFC 8550 §3 tolerates that for old certificates). Both are IA5String,
// ASCII only; a subject emailAddress smuggling other characters in a
// UTF8String is skipped, so that only A-label domains in the certificate
// match (a U-label could pass through IDNA mapping as another domain).
// Internationalized local parts (RFC 8398 SmtpUTF8Mailbox) are not
// supported: such a recipient has no certificate we can match.
func certAddresses(c *x509.Certificate) (addrs []string, fromSubject bool) {
	if len(c.EmailAddresses) > 0 {
		return c.EmailAddresses, false
	}
	for _, n := range c.Subject.Names {
		if n.Type.Equal(oidEmailAddress) {
			if s, ok := n.Value.(string); ok && message.IsASCII(s) {
				addrs = append(addrs, s)
			}
		}
	}
	return addrs, true
}

// CertAddresses returns the normalized addresses a certificate is issued
// to (see certAddresses); unparsable ones are skipped.
func CertAddresses(c *x509.Certificate) []string {
	raw, _ := certAddresses(c)
	var out []string
	for _, a := range raw {
		if n, err := NormalizeAddress(a); err == nil {
			out = append(out, n)
		}
	}
	return out
}
