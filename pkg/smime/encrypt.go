package smime

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	"github.com/sealgate/sealgate/pkg/smime/cms"
)

// Recipient is a certificate to encrypt to and what its owner's client
// advertised it can decrypt (nil: unknown, the safe default is used).
type Recipient struct {
	Cert         *x509.Certificate
	Capabilities Capabilities
	// UseSKI identifies the recipient by subject key identifier.
	UseSKI bool
}

// Choice is an algorithm preference for EncryptOptions.
type Choice int

// Choices: Auto decides from the recipients' capabilities.
const (
	Auto Choice = iota
	Force
	Never
)

// EncryptOptions tune Encrypt; nil picks from capabilities.
type EncryptOptions struct {
	// GCM: Auto uses AES-256-GCM (authEnveloped-data) only when every
	// recipient advertised it; Force always; Never: AES-256-CBC.
	GCM Choice
	// OAEP: same rule for RSAES-OAEP key transport (RSA recipients).
	OAEP Choice
	// Rand defaults to crypto/rand.
	Rand io.Reader
}

// Algorithms reports what Encrypt will use for these recipients.
func Algorithms(recipients []Recipient, opts *EncryptOptions) (gcm, oaep bool) {
	if opts == nil {
		opts = &EncryptOptions{}
	}
	allGCM, allOAEP := true, true
	for _, r := range recipients {
		allGCM = allGCM && r.Capabilities.GCM()
		if _, ok := r.Cert.PublicKey.(*rsa.PublicKey); ok {
			allOAEP = allOAEP && r.Capabilities.OAEP()
		}
	}
	gcm = opts.GCM == Force || opts.GCM == Auto && allGCM && len(recipients) > 0
	oaep = opts.OAEP == Force || opts.OAEP == Auto && allOAEP && len(recipients) > 0
	return gcm, oaep
}

// Encrypt returns msg as application/pkcs7-mime, one envelope for all
// recipients: AES-256-CBC with RSA PKCS#1 v1.5 key transport by default
// (what every client reads), AES-256-GCM and RSA-OAEP when all
// recipients advertised them, ECDH (RFC 5753) for EC certificates.
// Transport headers stay outside, content headers go inside; a header
// section with a line that is not a field is refused with ErrMalformed
// rather than left outside in the clear.
func Encrypt(msg []byte, recipients []Recipient, opts *EncryptOptions) ([]byte, error) {
	if opts == nil {
		opts = &EncryptOptions{}
	}
	if len(recipients) == 0 {
		return nil, errors.New("smime: encrypt: no recipients")
	}
	if k := Classify(msg); k == KindEnveloped || k == KindAuthEnveloped {
		return nil, ErrAlreadyEncrypted
	}
	gcm, oaep := Algorithms(recipients, opts)
	cfg := cms.EnvelopeConfig{Rand: opts.Rand}
	if gcm {
		cfg.Cipher = cms.AES256GCM
	}
	for i, r := range recipients {
		if r.Cert == nil {
			return nil, fmt.Errorf("smime: encrypt: recipient %d has no certificate", i+1)
		}
		switch r.Cert.PublicKey.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey:
		default:
			return nil, fmt.Errorf("%w: recipient %d (%s): key type %T", ErrUnsupported, i+1, r.Cert.Subject, r.Cert.PublicKey)
		}
		cfg.Recipients = append(cfg.Recipients, cms.Recipient{Cert: r.Cert, UseSKI: r.UseSKI, OAEP: oaep})
	}

	fields, body := splitMessage(msg)
	if err := checkFields(fields); err != nil {
		return nil, fmt.Errorf("smime: encrypt: %w", err)
	}
	outer, content := partition(fields)
	var head []byte
	if headerValue(content, "content-type") == "" {
		head = append(head, "Content-Type: text/plain; charset=us-ascii\r\n"...)
	}
	head = appendFields(head, content)
	head = append(head, '\r', '\n')
	if hasBareLF(body) {
		body = appendCRLF(make([]byte, 0, len(body)+len(body)/16), body)
	}
	smimeType := "enveloped-data"
	if gcm {
		smimeType = "authEnveloped-data"
	}
	derBound := cms.EncryptedSizeBound(len(head)+len(body), len(recipients))
	var buf bytes.Buffer
	buf.Grow(4096 + base64Size(derBound))
	buf.Write(appendFields(nil, outer))
	fmt.Fprintf(&buf, "MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=%s; name=\"smime.p7m\"\r\n"+
		"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7m\"\r\n"+
		"Content-Description: S/MIME Encrypted Message\r\n\r\n", smimeType)
	lw := &lineWriter{buf: &buf}
	enc := base64.NewEncoder(base64.StdEncoding, lw)
	if err := cms.Encrypt(enc, cfg, head, body); err != nil {
		return nil, fmt.Errorf("smime: encrypt: %w", err)
	}
	enc.Close()
	lw.finish()
	return buf.Bytes(), nil
}

// Choice of algorithms for one envelope, in words, for `directory lookup`
// and the capability API.
type AlgorithmChoice struct {
	Content      string `json:"content"`       // "AES-256-GCM" or "AES-256-CBC"
	KeyTransport string `json:"key_transport"` // "RSAES-OAEP", "RSA PKCS#1 v1.5" or "ECDH (RFC 5753)"
	Why          string `json:"why"`
}

// DescribeAlgorithms says what Encrypt with nil options would use for one
// recipient, and why: the strong algorithms only when the recipient
// announced them in a signature we verified (harvested SMIMECapabilities),
// since a client that reads only CBC and PKCS#1 v1.5 (gpgsm, NSS) could
// not open anything else.
func DescribeAlgorithms(r Recipient) AlgorithmChoice {
	gcm, oaep := Algorithms([]Recipient{r}, nil)
	c := AlgorithmChoice{Content: "AES-256-CBC", KeyTransport: "RSA PKCS#1 v1.5"}
	if gcm {
		c.Content = "AES-256-GCM"
	}
	switch r.Cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		c.KeyTransport = "ECDH (RFC 5753)"
	default:
		if oaep {
			c.KeyTransport = "RSAES-OAEP"
		}
	}
	_, ec := r.Cert.PublicKey.(*ecdsa.PublicKey)
	switch {
	case len(r.Capabilities) == 0:
		c.Why = "no capabilities known (none harvested from a verified signature): the algorithms every client reads"
	case gcm && (oaep || ec):
		c.Why = "the recipient announced them in a verified signature"
	default:
		c.Why = "the recipient's announced capabilities lack AES-GCM or RSA-OAEP: the algorithms every client reads where they do"
	}
	return c
}
