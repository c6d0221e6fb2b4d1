package directory

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/sealgate/sealgate/pkg/store"
)

// VerifiedSignature is what a verified S/MIME signature tells the
// harvester.
type VerifiedSignature struct {
	Signer *x509.Certificate
	// Certificates are all certificates the signature carried (chain).
	Certificates []*x509.Certificate
	// Capabilities is the signer's DER SMIMECapabilities signed attribute
	// (RFC 8551 §2.5.2), nil when absent.
	Capabilities []byte
}

// SignatureVerifier checks the signature of a signed message (pkg/smime
// does the work; cmd wires it). It must verify that the signature is
// intact and made with Signer's key; whether Signer is trusted is the
// lookup's business, checked every time the certificate is used.
type SignatureVerifier interface {
	VerifySignature(ctx context.Context, msg []byte) (VerifiedSignature, error)
}

// LooksLikeMessage reports whether data is an RFC 5322 message (a .eml)
// rather than certificate data: a header block with a Content-Type field.
func LooksLikeMessage(data []byte) bool {
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		return false
	}
	head := data
	if i := bytes.Index(data, []byte("\n\n")); i >= 0 {
		head = data[:i]
	} else if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		head = data[:i]
	}
	for _, line := range bytes.Split(head, []byte("\n")) {
		if len(line) > 13 && bytes.EqualFold(line[:13], []byte("content-type:")) {
			return true
		}
	}
	return false
}

// Harvest verifies a signed message and stores its signer's certificate
// (with the capabilities it announced) and the CA certificates it carried,
// so that the next lookup of the signer's address finds them. A message
// whose signature does not verify stores nothing.
func Harvest(ctx context.Context, w RecipientWriter, msg []byte, v SignatureVerifier) ([]Stored, error) {
	if v == nil {
		return nil, errors.New("harvest: no signature verifier")
	}
	vs, err := v.VerifySignature(ctx, msg)
	if err != nil {
		return nil, fmt.Errorf("signature does not verify, nothing harvested: %w", err)
	}
	if vs.Signer == nil {
		return nil, errors.New("signature verified but names no signer certificate")
	}
	if vs.Signer.IsCA {
		return nil, errors.New("the signer certificate is a CA certificate: not harvested")
	}
	_, cas := splitCerts(vs.Certificates)
	return storeCertificates(ctx, w, append([]*x509.Certificate{vs.Signer}, cas...), store.SourceHarvest, vs.Capabilities)
}
