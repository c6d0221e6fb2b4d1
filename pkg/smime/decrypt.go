package smime

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/sealgate/sealgate/pkg/smime/cms"
)

// cmsBody returns the DER carried by an application/pkcs7-mime or
// pkcs7-signature entity, decoding base64 of any line length.
func cmsBody(fields []field, body []byte) ([]byte, error) {
	cte := strings.ToLower(headerValue(fields, "content-transfer-encoding"))
	switch cte {
	case "base64":
		der, err := decodeBase64Body(body)
		if err != nil {
			return nil, fmt.Errorf("%w: base64: %v", ErrMalformed, err)
		}
		return der, nil
	case "", "binary", "8bit", "7bit":
		return body, nil
	}
	return nil, fmt.Errorf("%w: transfer encoding %q for CMS", ErrUnsupported, cte)
}

// rebuild puts the outer headers of the carrier in front of an inner
// entity (headers and body), which is how the message looked before
// signing or encryption.
func rebuild(outer []field, inner []byte) []byte {
	out := appendFields(make([]byte, 0, len(inner)+1024), outer)
	out = append(out, "MIME-Version: 1.0\r\n"...)
	return append(out, inner...)
}

// Decrypt opens an S/MIME envelope (enveloped-data or authEnveloped-data)
// with the private key of cert and returns the message inside, with the
// carrier's transport headers in front. key is a crypto.Decrypter for
// RSA (an HSM fits) or an EC private key (*ecdsa.PrivateKey,
// *ecdh.PrivateKey, or any type with an ECDH method).
func Decrypt(msg []byte, cert *x509.Certificate, key crypto.PrivateKey) ([]byte, error) {
	fields, inner, err := openEnvelope(msg, cert, key)
	if err != nil {
		return nil, err
	}
	outer, _ := partition(fields)
	return rebuild(outer, inner), nil
}

// openEnvelope decrypts msg's envelope and returns the carrier's header
// fields and the entity inside.
func openEnvelope(msg []byte, cert *x509.Certificate, key crypto.PrivateKey) ([]field, []byte, error) {
	k := Classify(msg)
	if k != KindEnveloped && k != KindAuthEnveloped {
		return nil, nil, ErrNotEncrypted
	}
	fields, body := splitMessage(msg)
	der, err := cmsBody(fields, body)
	if err != nil {
		return nil, nil, err
	}
	env, err := cms.ParseEnvelope(der)
	if err != nil {
		return nil, nil, fmt.Errorf("smime: decrypt: %w", err)
	}
	inner, err := env.Decrypt(cert, key)
	if err != nil {
		return nil, nil, fmt.Errorf("smime: decrypt: %w", err)
	}
	return fields, inner, nil
}
