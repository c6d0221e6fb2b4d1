package smime

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sealgate/sealgate/pkg/smime/cms"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// SignOptions tune Sign; the zero value (or nil) signs with SHA-256 and
// RSA PKCS#1 v1.5 or ECDSA, whichever the key is.
type SignOptions struct {
	// Hash is SHA-256 (default), SHA-384 or SHA-512.
	Hash crypto.Hash
	// PSS signs with RSASSA-PSS instead of PKCS#1 v1.5 (RSA keys only).
	PSS bool
	// SigningTime defaults to now; set for reproducible output.
	SigningTime time.Time
	// Capabilities advertised in the signature; nil means
	// DefaultCapabilities.
	Capabilities Capabilities
	// Boundary of the multipart/signed; random when empty.
	Boundary string
	// Rand defaults to crypto/rand.
	Rand io.Reader
}

// Sign returns msg signed as multipart/signed (RFC 8551 §3.5.3) with a
// detached SHA-256 signature by signer, whose certificate is chain[0];
// the rest of chain (intermediates) is included, self-signed roots are
// left out. Transport headers (From, To, Subject, Date, ...) stay
// outside; the content headers and the canonicalised body are signed.
// Messages that are already S/MIME must be passed through instead (see
// IsSMIME): Sign refuses signed ones with ErrAlreadySigned. A boundary
// given in opts that occurs in msg is refused with ErrBoundaryCollision,
// a header section with a line that is not a field with ErrMalformed.
func Sign(msg []byte, signer crypto.Signer, chain []*x509.Certificate, opts *SignOptions) ([]byte, error) {
	if opts == nil {
		opts = &SignOptions{}
	}
	if len(chain) == 0 || chain[0] == nil {
		return nil, errors.New("smime: sign: the signer certificate is required (chain[0])")
	}
	if k := Classify(msg); k == KindSigned || k == KindOpaqueSigned {
		return nil, fmt.Errorf("smime: sign: %w (%s): pass it through", ErrAlreadySigned, k)
	}
	h := opts.Hash
	if h == 0 {
		h = crypto.SHA256
	}
	micalg := map[crypto.Hash]string{crypto.SHA256: "sha-256", crypto.SHA384: "sha-384", crypto.SHA512: "sha-512"}[h]
	if micalg == "" {
		return nil, fmt.Errorf("%w: digest %v (use SHA-256, SHA-384 or SHA-512)", ErrUnsupported, h)
	}
	rnd := opts.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	boundary := opts.Boundary
	if boundary == "" {
		var rb [18]byte
		if _, err := io.ReadFull(rnd, rb[:]); err != nil {
			return nil, err
		}
		boundary = "----sealgate-signed-" + hex.EncodeToString(rb[:])
	}
	if bytes.Contains(msg, []byte(boundary)) {
		return nil, fmt.Errorf("smime: sign: %w (%q): choose another boundary or leave it empty for a random one", ErrBoundaryCollision, boundary)
	}
	fields, body := splitMessage(msg)
	if err := checkFields(fields); err != nil {
		return nil, fmt.Errorf("smime: sign: %w", err)
	}
	outer, content := partition(fields)

	// One buffer for the whole result: the signed entity is written into
	// it directly and hashed in place, so a large message is copied once.
	out := make([]byte, 0, len(msg)+len(msg)/32+8<<10)
	out = appendFields(out, outer)
	out = append(out, "MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\";\r\n\tmicalg="...)
	out = append(out, micalg...)
	out = append(out, "; boundary=\""...)
	out = append(out, boundary...)
	out = append(out, "\"\r\n\r\nThis is a cryptographically signed message in MIME format.\r\n\r\n--"...)
	out = append(out, boundary...)
	out = append(out, "\r\n"...)
	start := len(out)
	out = appendCanonicalEntity(out, content, body, 0)
	// The CRLF before the next delimiter belongs to the delimiter; a body
	// ending in CRLF keeps it (RFC 8551 §3.1.1 signs it as part of the
	// content).
	signed := out[start:]
	hh := h.New()
	hh.Write(signed)
	digest := hh.Sum(nil)

	cert := chain[0]
	var certs []*x509.Certificate
	for _, c := range chain[1:] {
		if isSelfSigned(c) {
			continue
		}
		certs = append(certs, c)
	}
	caps := opts.Capabilities
	if caps == nil {
		caps = DefaultCapabilities()
	}
	der, err := cms.SignDetached(digest, cms.SignerConfig{
		Signer:      signer,
		Cert:        cert,
		Certs:       certs,
		Hash:        h,
		PSS:         opts.PSS,
		SigningTime: opts.SigningTime,
		Rand:        rnd,
		ExtraAttrs: []cms.Attribute{
			{Type: cms.OIDAttrSMIMECaps, Values: [][]byte{caps.Marshal()}},
			{Type: cms.OIDAttrEncrypKeyPref, Values: [][]byte{encryptionKeyPreference(cert)}},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("smime: sign: %w", err)
	}
	out = append(out, "\r\n--"...)
	out = append(out, boundary...)
	out = append(out, "\r\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n"+
		"Content-Transfer-Encoding: base64\r\n"+
		"Content-Disposition: attachment; filename=\"smime.p7s\"\r\n"+
		"Content-Description: S/MIME Cryptographic Signature\r\n\r\n"...)
	out = appendBase64Lines(out, der)
	out = append(out, "\r\n--"...)
	out = append(out, boundary...)
	out = append(out, "--\r\n"...)
	return out, nil
}

// encryptionKeyPreference encodes SMIMEEncryptionKeyPreference naming the
// signing certificate, telling peers to encrypt to it (RFC 8551 §2.5.3).
func encryptionKeyPreference(cert *x509.Certificate) []byte {
	ias := cryptobyte.String(cms.IssuerAndSerial(cert))
	var inner cryptobyte.String
	ias.ReadASN1(&inner, cbasn1.SEQUENCE)
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { b.AddBytes(inner) })
	return b.BytesOrPanic()
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}
