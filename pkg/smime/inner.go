package smime

import (
	"crypto"
	"crypto/x509"
	"fmt"

	"github.com/sealgate/sealgate/pkg/smime/cms"
)

// DecryptEntity opens an S/MIME envelope like Decrypt but returns only
// the entity inside, exactly as the sender put it there (content headers
// and body, or a bare body some clients send), without the carrier's
// headers: callers that merge headers themselves (the inbound gateway)
// use it.
func DecryptEntity(msg []byte, cert *x509.Certificate, key crypto.PrivateKey) ([]byte, error) {
	_, inner, err := openEnvelope(msg, cert, key)
	return inner, err
}

// SignedEntity returns the content of a signed message (the first part
// of multipart/signed, or the content of opaque signed-data) without
// checking the signature: SignerInfo or Verify do that. The inbound
// gateway unwraps a layer whose signature failed with it, so the mail is
// still delivered (with the failure said).
func SignedEntity(msg []byte) ([]byte, error) {
	_, content, der, err := signedParts(msg)
	if err != nil {
		return nil, err
	}
	if content != nil {
		return content, nil
	}
	sd, err := cms.ParseSignedData(der)
	if err != nil {
		return nil, fmt.Errorf("smime: signed content: %w", err)
	}
	if !sd.HasContent {
		return nil, fmt.Errorf("%w: opaque signed-data without content", ErrMalformed)
	}
	return sd.Content, nil
}
