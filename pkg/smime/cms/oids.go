// Package cms writes and reads the parts of the Cryptographic Message
// Syntax (RFC 5652) that S/MIME 4.0 needs: SignedData, EnvelopedData and
// AuthEnvelopedData (RFC 5083/5084) with RSA PKCS#1 v1.5 and OAEP (RFC
// 8017/4055) key transport and ECDH key agreement (RFC 5753). It is
// written directly against the RFCs with cryptobyte so that it has no
// package-global state (safe for concurrent use) and supports what the
// available Go PKCS#7 libraries lack.
package cms

import "encoding/asn1"

// Object identifiers used in CMS and S/MIME.
var (
	OIDData              = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	OIDSignedData        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	OIDEnvelopedData     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}
	OIDAuthEnvelopedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 23}
	OIDAttrContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	OIDAttrMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	OIDAttrSigningTime   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}
	OIDAttrSMIMECaps     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 15}
	OIDAttrEncrypKeyPref = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 11}
	OIDSHA1              = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	OIDSHA256            = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	OIDSHA384            = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	OIDSHA512            = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	OIDRSAEncryption     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	OIDSHA1WithRSA       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	OIDSHA256WithRSA     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	OIDSHA384WithRSA     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	OIDSHA512WithRSA     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	OIDRSAPSS            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	OIDRSAOAEP           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}
	OIDMGF1              = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	OIDECPublicKey       = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	OIDECDSAWithSHA256   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	OIDECDSAWithSHA384   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	OIDECDSAWithSHA512   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	OIDAES128CBC         = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	OIDAES192CBC         = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	OIDAES256CBC         = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	OIDAES128GCM         = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 6}
	OIDAES192GCM         = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 26}
	OIDAES256GCM         = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}
	OIDAES128Wrap        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 5}
	OIDAES192Wrap        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 25}
	OIDAES256Wrap        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 45}
	OIDDESEDE3CBC        = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
	OIDECDHSHA1KDF       = asn1.ObjectIdentifier{1, 3, 133, 16, 840, 63, 0, 2}
	OIDECDHSHA224KDF     = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 0}
	OIDECDHSHA256KDF     = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 1}
	OIDECDHSHA384KDF     = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 2}
	OIDECDHSHA512KDF     = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 3}
	OIDAttrEmailAddress  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
	OIDSubjectKeyID      = asn1.ObjectIdentifier{2, 5, 29, 14}
	OIDPreferSignedData  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 15, 1}
)
