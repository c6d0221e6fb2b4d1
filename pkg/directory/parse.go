package directory

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/smallstep/pkcs7"
)

// ParseCertificates reads the certificates in data, which may be PEM
// (CERTIFICATE and PKCS7 blocks, several of them), a DER certificate, or a
// DER PKCS #7 SignedData such as a certs-only .p7c or an LDAP
// userSMIMECertificate value. Data from directories and mail is outside
// input: anything else is an error, never a panic.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	if bytes.Contains(data, []byte("-----BEGIN ")) {
		return parsePEM(data)
	}
	if c, err := x509.ParseCertificate(data); err == nil {
		return []*x509.Certificate{c}, nil
	}
	if certs, err := parsePKCS7(data); err == nil {
		return certs, nil
	}
	return nil, errors.New("neither PEM, a DER certificate nor DER PKCS #7")
}

func parsePEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for n := 1; ; n++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PEM block %d (%s): %w", n, b.Type, err)
			}
			out = append(out, c)
		case "PKCS7", "CMS":
			certs, err := parsePKCS7(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PEM block %d (%s): %w", n, b.Type, err)
			}
			out = append(out, certs...)
		default:
			// Keys and CRLs next to certificates are not ours to read.
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no CERTIFICATE or PKCS7 block in the PEM data")
	}
	return out, nil
}

// parsePKCS7 reads the certificates of a PKCS #7 SignedData (RFC 2315 /
// RFC 5652); its content and signatures are not looked at here.
func parsePKCS7(der []byte) (certs []*x509.Certificate, err error) {
	// The library is not hardened against every malformed input.
	defer func() {
		if r := recover(); r != nil {
			certs, err = nil, fmt.Errorf("malformed PKCS #7: %v", r)
		}
	}()
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, fmt.Errorf("PKCS #7: %w", err)
	}
	if len(p7.Certificates) == 0 {
		return nil, errors.New("PKCS #7 without certificates")
	}
	return p7.Certificates, nil
}

// oidSMIMECapabilities is the signed attribute of RFC 8551 §2.5.2.
var oidSMIMECapabilities = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 15}

// parseSMIMEBlob reads an LDAP userSMIMECertificate value: a PKCS #7
// SignedData carrying certificates. Outlook publishes it signed by the
// user, with the SMIMECapabilities attribute; when that signature verifies,
// the signer and its capabilities are returned too. An unsigned (certs-only)
// or unverifiable blob still yields its certificates.
func parseSMIMEBlob(der []byte) (certs []*x509.Certificate, signer *x509.Certificate, caps []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			certs, signer, caps, err = nil, nil, nil, fmt.Errorf("malformed PKCS #7: %v", r)
		}
	}()
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("PKCS #7: %w", err)
	}
	if len(p7.Certificates) == 0 {
		return nil, nil, nil, errors.New("PKCS #7 without certificates")
	}
	if len(p7.Signers) != 1 || p7.Verify() != nil {
		return p7.Certificates, nil, nil, nil
	}
	var raw asn1.RawValue
	if err := p7.UnmarshalSignedAttribute(oidSMIMECapabilities, &raw); err != nil {
		return p7.Certificates, nil, nil, nil
	}
	return p7.Certificates, p7.GetOnlySigner(), raw.FullBytes, nil
}

// pemBlockBytes returns the bytes of the first PEM block of type typ.
func pemBlockBytes(data []byte, typ string) []byte {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil
		}
		if b.Type == typ {
			return b.Bytes
		}
	}
}
