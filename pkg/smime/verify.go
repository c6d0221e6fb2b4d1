package smime

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/sealgate/sealgate/pkg/smime/cms"
)

// VerifyOptions say what to trust.
type VerifyOptions struct {
	// Roots are the trust anchors; nil means the system roots.
	Roots *x509.CertPool
	// Intermediates add to the certificates carried in the message.
	Intermediates *x509.CertPool
	// CurrentTime for validity checks; zero means now.
	CurrentTime time.Time
	// From is the address the signer must have; empty means the From
	// header of the message.
	From string
	// SkipFromCheck disables the signer/From comparison (for tools that
	// only want the signature checked).
	SkipFromCheck bool
}

// Verified describes a good signature.
type Verified struct {
	Signer *x509.Certificate
	// Chains are the verified paths to a root, signer first.
	Chains [][]*x509.Certificate
	// Certificates are all certificates the message carried.
	Certificates []*x509.Certificate
	SigningTime  time.Time
	// Capabilities is the signer's SMIMECapabilities DER, nil if absent.
	Capabilities []byte
	// Content is the signed MIME entity (content headers and body).
	Content []byte
	// Message is the message without the signature layer: transport
	// headers and Content. It may itself be S/MIME (nested).
	Message []byte
}

// signedParts finds the signed content and the CMS signature of a
// multipart/signed or opaque signed-data message. The message is first
// brought to CRLF so that a copy saved with bare LF still verifies.
func signedParts(msg []byte) (outer []field, content, der []byte, err error) {
	if hasBareLF(msg) {
		msg = appendCRLF(nil, msg)
	}
	fields, body := splitMessage(msg)
	outer, _ = partition(fields)
	switch Classify(msg) {
	case KindSigned:
		_, params := mediaType(fields)
		boundary := params["boundary"]
		if boundary == "" {
			return nil, nil, nil, fmt.Errorf("%w: multipart/signed without boundary", ErrMalformed)
		}
		content, sigPart, ok := splitSigned(body, boundary)
		if !ok {
			return nil, nil, nil, fmt.Errorf("%w: multipart/signed needs exactly two parts", ErrMalformed)
		}
		sf, sb := splitMessage(sigPart)
		der, err := cmsBody(sf, sb)
		if err != nil {
			return nil, nil, nil, err
		}
		return outer, content, der, nil
	case KindOpaqueSigned:
		der, err := cmsBody(fields, body)
		if err != nil {
			return nil, nil, nil, err
		}
		return outer, nil, der, nil
	}
	return nil, nil, nil, ErrNotSigned
}

// splitSigned returns the exact bytes of the first body part (the signed
// content, without the CRLF that belongs to the next delimiter) and the
// second part.
func splitSigned(body []byte, boundary string) (first, second []byte, ok bool) {
	delim := []byte("--" + boundary)
	var starts []int // offsets just after each delimiter line
	var lineAt []int // offsets of each delimiter line
	pos := 0
	for {
		i := bytes.Index(body[pos:], delim)
		if i < 0 {
			break
		}
		at := pos + i
		pos = at + len(delim)
		if at != 0 && body[at-1] != '\n' {
			continue
		}
		if bytes.HasPrefix(body[pos:], []byte("--")) {
			lineAt = append(lineAt, at)
			break
		}
		if rest := bytes.TrimLeft(body[pos:], " \t"); len(rest) > 0 && rest[0] != '\r' && rest[0] != '\n' {
			continue // a longer boundary that merely starts like ours
		}
		lineAt = append(lineAt, at)
		nl := bytes.IndexByte(body[pos:], '\n')
		if nl < 0 {
			return nil, nil, false
		}
		starts = append(starts, pos+nl+1)
	}
	if len(starts) != 2 || len(lineAt) != 3 {
		return nil, nil, false
	}
	end := func(at int) int {
		return at - 2 // the CRLF before the delimiter
	}
	if lineAt[1] < 2 || lineAt[2] < 2 || end(lineAt[1]) < starts[0] || end(lineAt[2]) < starts[1] {
		return nil, nil, false
	}
	return body[starts[0]:end(lineAt[1])], body[starts[1]:end(lineAt[2])], true
}

// Verify checks the S/MIME signature of msg (multipart/signed or opaque
// signed-data): the signature over the content, the signer's chain to
// opts.Roots at opts.CurrentTime, the emailProtection usage, and that the
// signer's certificate carries the From address. Failures are the typed
// errors of this package (ErrBadSignature, ErrUntrusted, ErrExpired,
// ErrKeyUsage, ErrSignerMismatch...). Every signer must verify.
func Verify(msg []byte, opts VerifyOptions) (*Verified, error) {
	outer, content, der, err := signedParts(msg)
	if err != nil {
		return nil, err
	}
	sd, err := cms.ParseSignedData(der)
	if err != nil {
		return nil, fmt.Errorf("smime: verify: %w", err)
	}
	if content == nil {
		if !sd.HasContent {
			return nil, fmt.Errorf("%w: opaque signed-data without content", ErrMalformed)
		}
		content = sd.Content
	}
	if len(sd.Signers) == 0 {
		return nil, fmt.Errorf("%w: no signers", ErrNotSigned)
	}
	v := &Verified{Certificates: sd.Certificates, Content: content, Message: rebuild(outer, content)}
	inter := x509.NewCertPool()
	if opts.Intermediates != nil {
		inter = opts.Intermediates.Clone()
	}
	for _, c := range sd.Certificates {
		inter.AddCert(c)
	}
	now := opts.CurrentTime
	if now.IsZero() {
		now = time.Now()
	}
	for i := range sd.Signers {
		si := &sd.Signers[i]
		cert, err := sd.VerifySigner(si, content)
		if err != nil {
			who := ""
			if cert != nil {
				who = " (" + signerName(cert) + ")"
			}
			return nil, fmt.Errorf("smime: verify: signer %d%s: %w", i+1, who, err)
		}
		chains, err := cert.Verify(x509.VerifyOptions{
			Roots:         opts.Roots,
			Intermediates: inter,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		})
		if err != nil {
			return nil, fmt.Errorf("smime: verify: signer %s: %w", signerName(cert), classifyChainError(err))
		}
		if i == 0 {
			v.Signer, v.Chains, v.SigningTime = cert, chains, si.SigningTime()
			if a, ok := si.Attr(cms.OIDAttrSMIMECaps); ok {
				v.Capabilities = a.Value()
			}
		}
	}
	if !opts.SkipFromCheck {
		from := opts.From
		if from == "" {
			h := headerValue(outer, "from")
			if h == "" {
				return nil, fmt.Errorf("%w: message has no From header", ErrSignerMismatch)
			}
			a, err := mail.ParseAddress(h)
			if err != nil {
				return nil, fmt.Errorf("%w: From header %q: %v", ErrSignerMismatch, h, err)
			}
			from = a.Address
		}
		if !CertHasAddress(v.Signer, from) {
			return nil, fmt.Errorf("%w: From is %s, certificate has %s", ErrSignerMismatch, from, strings.Join(CertAddresses(v.Signer), ", "))
		}
	}
	return v, nil
}

func signerName(c *x509.Certificate) string {
	if a := CertAddresses(c); len(a) > 0 {
		return a[0]
	}
	return c.Subject.String()
}

func classifyChainError(err error) error {
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) {
		switch inv.Reason {
		case x509.Expired:
			return fmt.Errorf("%w: %v", ErrExpired, err)
		case x509.IncompatibleUsage:
			return fmt.Errorf("%w: %v", ErrKeyUsage, err)
		}
	}
	return fmt.Errorf("%w: %v", ErrUntrusted, err)
}

// CertAddresses returns the e-mail addresses of a certificate: the
// rfc822Name SANs, and the subject emailAddress attribute for older CAs.
func CertAddresses(c *x509.Certificate) []string {
	out := append([]string(nil), c.EmailAddresses...)
	for _, n := range c.Subject.Names {
		if n.Type.Equal(cms.OIDAttrEmailAddress) {
			if s, ok := n.Value.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// CertHasAddress compares addr to the certificate's addresses, the domain
// case-insensitively and, as all mail systems do in practice, the local
// part too.
func CertHasAddress(c *x509.Certificate, addr string) bool {
	for _, a := range CertAddresses(c) {
		if strings.EqualFold(a, addr) {
			return true
		}
	}
	return false
}

// SignerInfo extracts the signer's certificate, the other certificates
// of the message and the signer's SMIMECapabilities DER (nil if absent)
// from a signed message, after checking that the signature itself is
// intact (not the trust: the caller validates the chain). The directory
// harvests recipients' certificates with it.
func SignerInfo(msg []byte) (cert *x509.Certificate, chain []*x509.Certificate, capabilities []byte, err error) {
	_, content, der, err := signedParts(msg)
	if err != nil {
		return nil, nil, nil, err
	}
	sd, err := cms.ParseSignedData(der)
	if err != nil {
		return nil, nil, nil, err
	}
	if content == nil {
		content = sd.Content
	}
	if len(sd.Signers) == 0 {
		return nil, nil, nil, ErrNotSigned
	}
	si := &sd.Signers[0]
	cert, err = sd.VerifySigner(si, content)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, c := range sd.Certificates {
		if c != cert {
			chain = append(chain, c)
		}
	}
	if a, ok := si.Attr(cms.OIDAttrSMIMECaps); ok {
		capabilities = a.Value()
	}
	return cert, chain, capabilities, nil
}
