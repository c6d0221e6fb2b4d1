// Package smime signs, verifies, encrypts and decrypts e-mail messages
// with S/MIME 4.0 (RFC 8551) so that Outlook, Thunderbird (NSS), Apple
// Mail and gpgsm accept them. It works on whole RFC 5322 messages as
// bytes: transport headers stay outside, content headers go inside the
// signature or envelope. The CMS layer is in the cms subpackage.
//
// Every function is safe for concurrent use: there is no package state.
package smime

import (
	"errors"

	"github.com/sealgate/sealgate/pkg/smime/cms"
)

// Errors returned by this package; test with errors.Is. They are wrapped
// with a detail saying which certificate or part failed.
var (
	// ErrNotSigned: the message carries no S/MIME signature.
	ErrNotSigned = errors.New("message is not S/MIME signed")
	// ErrNotEncrypted: the message is not an S/MIME envelope.
	ErrNotEncrypted = errors.New("message is not S/MIME encrypted")
	// ErrAlreadySigned: refusing to sign a signed message again (it is
	// passed through as it is).
	ErrAlreadySigned = errors.New("message is already S/MIME signed")
	// ErrBoundaryCollision: the multipart/signed boundary given in
	// SignOptions occurs in the message, so the parts could not be told
	// apart (a random boundary never collides in practice).
	ErrBoundaryCollision = errors.New("multipart/signed boundary occurs in the message")
	// ErrAlreadyEncrypted: refusing to encrypt an envelope again.
	ErrAlreadyEncrypted = errors.New("message is already S/MIME encrypted")
	// ErrBadSignature: the signed content or signature was altered, or
	// the signature was made with another key.
	ErrBadSignature = cms.ErrBadSignature
	// ErrNoSigner: the signer's certificate is not in the message.
	ErrNoSigner = cms.ErrNoSigner
	// ErrUntrusted: the signer's chain does not lead to a given root.
	ErrUntrusted = errors.New("signer certificate is not trusted")
	// ErrExpired: a certificate of the chain is outside its validity.
	ErrExpired = errors.New("signer certificate expired or not yet valid")
	// ErrKeyUsage: the certificate may not be used for e-mail protection.
	ErrKeyUsage = errors.New("signer certificate is not valid for e-mail protection")
	// ErrSignerMismatch: the signer's address is not the From address.
	ErrSignerMismatch = errors.New("signer certificate does not match the From address")
	// ErrNotRecipient: the envelope was not made for this certificate.
	ErrNotRecipient = cms.ErrNotRecipient
	// ErrDecrypt: wrong key or altered ciphertext.
	ErrDecrypt = cms.ErrDecrypt
	// ErrMalformed: the CMS or MIME structure cannot be read.
	ErrMalformed = cms.ErrMalformed
	// ErrUnsupported: an algorithm or structure we do not implement (or
	// refuse, such as SHA-1 signatures).
	ErrUnsupported = cms.ErrUnsupported
)
