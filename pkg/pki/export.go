package pki

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"software.sslmate.com/src/go-pkcs12"
)

// P12Profile selects the PKCS#12 encryption.
type P12Profile string

// PKCS#12 profiles offered by `cert export --p12`.
const (
	// P12Legacy is PBE-SHA1-3DES with a SHA-1 MAC: what gpgsm 2.2,
	// Windows before Server 2019 and every Outlook import. The default,
	// because a file that does not import is no use.
	P12Legacy P12Profile = "legacy"
	// P12Modern is PBES2 AES-256-CBC with PBKDF2-SHA256 and a SHA-256 MAC
	// (OpenSSL 3's default): Thunderbird and current Windows read it.
	P12Modern P12Profile = "modern"
)

// ExportPKCS12 packs the key, its certificate and the chain (issuing CA,
// root) into a password-protected PKCS#12 file.
func ExportPKCS12(key crypto.Signer, leaf *x509.Certificate, chain []*x509.Certificate, password string, profile P12Profile) ([]byte, error) {
	if password == "" {
		return nil, errors.New("refusing to export a private key without a password")
	}
	if !publicKeyMatches(key, leaf) {
		return nil, errors.New("private key does not match the certificate")
	}
	enc := pkcs12.LegacyDES
	switch profile {
	case P12Legacy, "":
	case P12Modern:
		enc = pkcs12.Modern2023
	default:
		return nil, fmt.Errorf("unknown PKCS#12 profile %q (use legacy or modern)", profile)
	}
	der, err := enc.Encode(key, leaf, chain, password)
	if err != nil {
		return nil, fmt.Errorf("encoding PKCS#12: %w", err)
	}
	return der, nil
}

func publicKeyMatches(key crypto.Signer, cert *x509.Certificate) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}
