package cms

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sort"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Errors a caller may want to tell apart (use errors.Is).
var (
	ErrUnsupported  = errors.New("unsupported CMS algorithm or structure")
	ErrBadSignature = errors.New("signature does not verify")
	ErrNoSigner     = errors.New("signer certificate not found in message")
)

var (
	tagCtx0  = cbasn1.Tag(0).ContextSpecific().Constructed()
	tagCtx1  = cbasn1.Tag(1).ContextSpecific().Constructed()
	tagCtx2  = cbasn1.Tag(2).ContextSpecific().Constructed()
	tagCtx0P = cbasn1.Tag(0).ContextSpecific()
)

// Attribute is one CMS attribute; Values holds the DER of each value.
type Attribute struct {
	Type   asn1.ObjectIdentifier
	Values [][]byte
}

// Value returns the first value's DER, or nil.
func (a Attribute) Value() []byte {
	if len(a.Values) == 0 {
		return nil
	}
	return a.Values[0]
}

// SignerConfig says who signs and how.
type SignerConfig struct {
	Signer crypto.Signer
	Cert   *x509.Certificate
	// Certs are added to the certificate set after Cert (the chain
	// without the root, as RFC 8551 recommends).
	Certs []*x509.Certificate
	// Hash defaults to SHA-256; SHA-1 is refused.
	Hash crypto.Hash
	// PSS selects RSASSA-PSS for RSA keys (salt = hash length).
	PSS         bool
	SigningTime time.Time
	// ExtraAttrs are added to the signed attributes (SMIMECapabilities,
	// encryption key preference...).
	ExtraAttrs []Attribute
	Rand       io.Reader
}

// HashOID returns the digest algorithm identifier for h.
func HashOID(h crypto.Hash) (asn1.ObjectIdentifier, error) {
	switch h {
	case crypto.SHA256:
		return OIDSHA256, nil
	case crypto.SHA384:
		return OIDSHA384, nil
	case crypto.SHA512:
		return OIDSHA512, nil
	}
	return nil, fmt.Errorf("%w: digest %v (use SHA-256, SHA-384 or SHA-512)", ErrUnsupported, h)
}

func hashFromOID(oid asn1.ObjectIdentifier) (crypto.Hash, error) {
	switch {
	case oid.Equal(OIDSHA256):
		return crypto.SHA256, nil
	case oid.Equal(OIDSHA384):
		return crypto.SHA384, nil
	case oid.Equal(OIDSHA512):
		return crypto.SHA512, nil
	case oid.Equal(OIDSHA1):
		return 0, fmt.Errorf("%w: SHA-1 digests are not accepted", ErrUnsupported)
	}
	return 0, fmt.Errorf("%w: digest algorithm %v", ErrUnsupported, oid)
}

// MarshalAttribute returns the DER of one Attribute SEQUENCE.
func MarshalAttribute(a Attribute) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(a.Type)
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
			for _, v := range sortedDER(a.Values) {
				b.AddBytes(v)
			}
		})
	})
	return b.BytesOrPanic()
}

// sortedDER orders SET OF members as DER requires.
func sortedDER(items [][]byte) [][]byte {
	s := append([][]byte(nil), items...)
	sort.Slice(s, func(i, j int) bool { return string(s[i]) < string(s[j]) })
	return s
}

// IssuerAndSerial returns the DER IssuerAndSerialNumber of cert.
func IssuerAndSerial(cert *x509.Certificate) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(cert.RawIssuer)
		b.AddASN1BigInt(cert.SerialNumber)
	})
	return b.BytesOrPanic()
}

func addAlgID(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, params []byte) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if params != nil {
			b.AddBytes(params)
		}
	})
}

var derNull = []byte{0x05, 0x00}

func algIDBytes(oid asn1.ObjectIdentifier, params []byte) []byte {
	b := cryptobyte.NewBuilder(nil)
	addAlgID(b, oid, params)
	return b.BytesOrPanic()
}

// pssParams encodes RSASSA-PSS-params for hash h (MGF1 with the same hash,
// salt = hash length), as openssl and NSS expect.
func pssParams(h crypto.Hash) []byte {
	hOID, _ := HashOID(h)
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(tagCtx0, func(b *cryptobyte.Builder) { addAlgID(b, hOID, derNull) })
		b.AddASN1(tagCtx1, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(OIDMGF1)
				addAlgID(b, hOID, derNull)
			})
		})
		b.AddASN1(tagCtx2, func(b *cryptobyte.Builder) { b.AddASN1Int64(int64(h.Size())) })
	})
	return b.BytesOrPanic()
}

// SignDetached builds a detached SignedData ContentInfo over content whose
// digest (with cfg.Hash) is digest. The caller hashes so that large
// content is hashed once, where it already lies in memory.
func SignDetached(digest []byte, cfg SignerConfig) ([]byte, error) {
	if cfg.Signer == nil || cfg.Cert == nil {
		return nil, errors.New("cms: signer key and certificate are required")
	}
	if cfg.Hash == 0 {
		cfg.Hash = crypto.SHA256
	}
	hOID, err := HashOID(cfg.Hash)
	if err != nil {
		return nil, err
	}
	if len(digest) != cfg.Hash.Size() {
		return nil, fmt.Errorf("cms: digest is %d bytes, %v needs %d", len(digest), cfg.Hash, cfg.Hash.Size())
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.SigningTime.IsZero() {
		cfg.SigningTime = time.Now()
	}
	// Signed attributes.
	ct, _ := asn1.Marshal(OIDData)
	md, _ := asn1.Marshal(digest)
	st, err := marshalTime(cfg.SigningTime)
	if err != nil {
		return nil, err
	}
	attrs := [][]byte{
		MarshalAttribute(Attribute{Type: OIDAttrContentType, Values: [][]byte{ct}}),
		MarshalAttribute(Attribute{Type: OIDAttrSigningTime, Values: [][]byte{st}}),
		MarshalAttribute(Attribute{Type: OIDAttrMessageDigest, Values: [][]byte{md}}),
	}
	for _, a := range cfg.ExtraAttrs {
		attrs = append(attrs, MarshalAttribute(a))
	}
	attrs = sortedDER(attrs)
	var attrContent []byte
	for _, a := range attrs {
		attrContent = append(attrContent, a...)
	}
	toSign := append(derHeader(0x31, len(attrContent)), attrContent...)
	h := cfg.Hash.New()
	h.Write(toSign)
	attrDigest := h.Sum(nil)

	var sigAlg []byte
	var opts crypto.SignerOpts = cfg.Hash
	switch pub := cfg.Signer.Public().(type) {
	case *rsa.PublicKey:
		if cfg.PSS {
			sigAlg = algIDBytes(OIDRSAPSS, pssParams(cfg.Hash))
			opts = &rsa.PSSOptions{SaltLength: cfg.Hash.Size(), Hash: cfg.Hash}
		} else {
			sigAlg = algIDBytes(OIDRSAEncryption, derNull)
		}
	case *ecdsa.PublicKey:
		switch cfg.Hash {
		case crypto.SHA256:
			sigAlg = algIDBytes(OIDECDSAWithSHA256, nil)
		case crypto.SHA384:
			sigAlg = algIDBytes(OIDECDSAWithSHA384, nil)
		default:
			sigAlg = algIDBytes(OIDECDSAWithSHA512, nil)
		}
	case ed25519.PublicKey:
		return nil, fmt.Errorf("%w: Ed25519 signing keys", ErrUnsupported)
	default:
		return nil, fmt.Errorf("%w: signing key type %T", ErrUnsupported, pub)
	}
	sig, err := cfg.Signer.Sign(cfg.Rand, attrDigest, opts)
	if err != nil {
		return nil, fmt.Errorf("cms: signing: %w", err)
	}

	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(OIDSignedData)
		b.AddASN1(tagCtx0, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(1)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { addAlgID(b, hOID, nil) })
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(OIDData) })
				b.AddASN1(tagCtx0, func(b *cryptobyte.Builder) {
					// SET OF in DER is sorted; order carries no meaning here.
					certs := [][]byte{cfg.Cert.Raw}
					for _, c := range cfg.Certs {
						certs = append(certs, c.Raw)
					}
					for _, c := range sortedDER(certs) {
						b.AddBytes(c)
					}
				})
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1Int64(1)
						b.AddBytes(IssuerAndSerial(cfg.Cert))
						addAlgID(b, hOID, nil)
						b.AddASN1(tagCtx0, func(b *cryptobyte.Builder) { b.AddBytes(attrContent) })
						b.AddBytes(sigAlg)
						b.AddASN1OctetString(sig)
					})
				})
			})
		})
	})
	return b.Bytes()
}

// marshalTime encodes t as UTCTime until 2049 and GeneralizedTime after,
// as RFC 5652 §11.3 requires.
func marshalTime(t time.Time) ([]byte, error) {
	t = t.UTC().Truncate(time.Second)
	if t.Year() >= 1950 && t.Year() < 2050 {
		return asn1.Marshal(t)
	}
	return asn1.MarshalWithParams(t, "generalized")
}

// SignedData is a parsed SignedData.
type SignedData struct {
	ContentType  asn1.ObjectIdentifier
	Content      []byte // encapsulated content; nil when detached
	HasContent   bool
	Certificates []*x509.Certificate
	Signers      []SignerInfo
}

// SignerInfo is one parsed signer.
type SignerInfo struct {
	Issuer         []byte // raw Name, nil if identified by SKI
	Serial         *big.Int
	SubjectKeyID   []byte
	DigestAlg      asn1.ObjectIdentifier
	SignedAttrsRaw []byte // content of the [0] element
	Attrs          []Attribute
	SigAlg         asn1.ObjectIdentifier
	SigAlgParams   []byte
	Signature      []byte
}

// Attr returns the attribute of type oid.
func (si *SignerInfo) Attr(oid asn1.ObjectIdentifier) (Attribute, bool) {
	for _, a := range si.Attrs {
		if a.Type.Equal(oid) {
			return a, true
		}
	}
	return Attribute{}, false
}

// SigningTime returns the signingTime attribute, zero if absent.
func (si *SignerInfo) SigningTime() time.Time {
	a, ok := si.Attr(OIDAttrSigningTime)
	if !ok || a.Value() == nil {
		return time.Time{}
	}
	var t time.Time
	if _, err := asn1.Unmarshal(a.Value(), &t); err != nil {
		return time.Time{}
	}
	return t
}

func malformed(what string) error { return fmt.Errorf("%w: %s", ErrMalformed, what) }

// ParseContentInfo returns the content type and the DER of the content.
func ParseContentInfo(der []byte) (asn1.ObjectIdentifier, []byte, error) {
	der, err := NormalizeBER(der)
	if err != nil {
		return nil, nil, err
	}
	s := cryptobyte.String(der)
	var ci, content cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1(&ci, cbasn1.SEQUENCE) || !ci.ReadASN1ObjectIdentifier(&oid) {
		return nil, nil, malformed("ContentInfo")
	}
	if !ci.ReadASN1(&content, tagCtx0) {
		return nil, nil, malformed("ContentInfo content")
	}
	return oid, content, nil
}

// ParseSignedData parses a ContentInfo holding SignedData.
func ParseSignedData(der []byte) (*SignedData, error) {
	oid, content, err := ParseContentInfo(der)
	if err != nil {
		return nil, err
	}
	if !oid.Equal(OIDSignedData) {
		return nil, fmt.Errorf("%w: content type %v is not signed-data", ErrUnsupported, oid)
	}
	s := cryptobyte.String(content)
	var sd, digestAlgs, eci cryptobyte.String
	var version int64
	if !s.ReadASN1(&sd, cbasn1.SEQUENCE) || !sd.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) ||
		!sd.ReadASN1(&digestAlgs, cbasn1.SET) || !sd.ReadASN1(&eci, cbasn1.SEQUENCE) {
		return nil, malformed("SignedData")
	}
	out := &SignedData{}
	if !eci.ReadASN1ObjectIdentifier(&out.ContentType) {
		return nil, malformed("EncapsulatedContentInfo")
	}
	if eci.PeekASN1Tag(tagCtx0) {
		var ec, oct cryptobyte.String
		if !eci.ReadASN1(&ec, tagCtx0) || !ec.ReadASN1(&oct, cbasn1.OCTET_STRING) {
			return nil, malformed("eContent")
		}
		out.Content, out.HasContent = []byte(oct), true
	}
	if sd.PeekASN1Tag(tagCtx0) {
		var certs cryptobyte.String
		if !sd.ReadASN1(&certs, tagCtx0) {
			return nil, malformed("certificates")
		}
		for !certs.Empty() {
			var c cryptobyte.String
			var tag cbasn1.Tag
			if !certs.ReadAnyASN1Element(&c, &tag) {
				return nil, malformed("certificate")
			}
			if tag != cbasn1.SEQUENCE {
				continue // attribute certificates and others: not ours to use
			}
			cert, err := x509.ParseCertificate(c)
			if err != nil {
				return nil, fmt.Errorf("%w: certificate: %v", ErrMalformed, err)
			}
			out.Certificates = append(out.Certificates, cert)
		}
	}
	if sd.PeekASN1Tag(tagCtx1) {
		var crls cryptobyte.String
		if !sd.ReadASN1(&crls, tagCtx1) {
			return nil, malformed("crls")
		}
	}
	var sis cryptobyte.String
	if !sd.ReadASN1(&sis, cbasn1.SET) {
		return nil, malformed("signerInfos")
	}
	for !sis.Empty() {
		var si cryptobyte.String
		if !sis.ReadASN1(&si, cbasn1.SEQUENCE) {
			return nil, malformed("SignerInfo")
		}
		info, err := parseSignerInfo(si)
		if err != nil {
			return nil, err
		}
		out.Signers = append(out.Signers, info)
	}
	return out, nil
}

func readAlgID(s *cryptobyte.String) (asn1.ObjectIdentifier, []byte, bool) {
	var alg cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) {
		return nil, nil, false
	}
	var params []byte
	if !alg.Empty() {
		params = []byte(alg)
	}
	return oid, params, true
}

func parseSignerInfo(si cryptobyte.String) (SignerInfo, error) {
	var out SignerInfo
	var version int64
	if !si.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) {
		return out, malformed("SignerInfo version")
	}
	if si.PeekASN1Tag(cbasn1.SEQUENCE) {
		var ias cryptobyte.String
		var issuer cryptobyte.String
		out.Serial = new(big.Int)
		if !si.ReadASN1(&ias, cbasn1.SEQUENCE) || !ias.ReadASN1Element(&issuer, cbasn1.SEQUENCE) || !ias.ReadASN1Integer(out.Serial) {
			return out, malformed("SignerInfo sid")
		}
		out.Issuer = issuer
	} else {
		var ski cryptobyte.String
		if !si.ReadASN1(&ski, tagCtx0P) {
			return out, malformed("SignerInfo sid")
		}
		out.SubjectKeyID = ski
	}
	var ok bool
	if out.DigestAlg, _, ok = readAlgID(&si); !ok {
		return out, malformed("SignerInfo digestAlgorithm")
	}
	if si.PeekASN1Tag(tagCtx0) {
		var attrs cryptobyte.String
		if !si.ReadASN1(&attrs, tagCtx0) {
			return out, malformed("signedAttrs")
		}
		out.SignedAttrsRaw = attrs
		for !attrs.Empty() {
			var a, vals cryptobyte.String
			var at Attribute
			if !attrs.ReadASN1(&a, cbasn1.SEQUENCE) || !a.ReadASN1ObjectIdentifier(&at.Type) || !a.ReadASN1(&vals, cbasn1.SET) {
				return out, malformed("signed attribute")
			}
			for !vals.Empty() {
				var v cryptobyte.String
				if !vals.ReadAnyASN1Element(&v, nil) {
					return out, malformed("attribute value")
				}
				at.Values = append(at.Values, v)
			}
			out.Attrs = append(out.Attrs, at)
		}
	}
	if out.SigAlg, out.SigAlgParams, ok = readAlgID(&si); !ok {
		return out, malformed("SignerInfo signatureAlgorithm")
	}
	var sig cryptobyte.String
	if !si.ReadASN1(&sig, cbasn1.OCTET_STRING) {
		return out, malformed("SignerInfo signature")
	}
	out.Signature = sig
	return out, nil
}

// FindSigner returns the certificate of si among sd's certificates.
func (sd *SignedData) FindSigner(si *SignerInfo) (*x509.Certificate, error) {
	for _, c := range sd.Certificates {
		if si.Issuer != nil && string(c.RawIssuer) == string(si.Issuer) && c.SerialNumber.Cmp(si.Serial) == 0 {
			return c, nil
		}
		if si.SubjectKeyID != nil && len(c.SubjectKeyId) > 0 && string(c.SubjectKeyId) == string(si.SubjectKeyID) {
			return c, nil
		}
	}
	return nil, ErrNoSigner
}

// VerifySigner checks si's signature over content (the detached content
// or sd.Content) and returns the signer's certificate. It checks the
// cryptography only; trust in the certificate is the caller's job.
func (sd *SignedData) VerifySigner(si *SignerInfo, content []byte) (*x509.Certificate, error) {
	cert, err := sd.FindSigner(si)
	if err != nil {
		return nil, err
	}
	h, err := hashFromOID(si.DigestAlg)
	if err != nil {
		return nil, err
	}
	hh := h.New()
	hh.Write(content)
	contentDigest := hh.Sum(nil)
	digest := contentDigest
	if si.SignedAttrsRaw != nil {
		ct, ok := si.Attr(OIDAttrContentType)
		var ctOID asn1.ObjectIdentifier
		if !ok || ct.Value() == nil {
			return nil, fmt.Errorf("%w: contentType attribute missing", ErrBadSignature)
		}
		if _, err := asn1.Unmarshal(ct.Value(), &ctOID); err != nil || !ctOID.Equal(sd.ContentType) {
			return nil, fmt.Errorf("%w: contentType attribute does not match", ErrBadSignature)
		}
		mdA, ok := si.Attr(OIDAttrMessageDigest)
		var md []byte
		if !ok || mdA.Value() == nil {
			return nil, fmt.Errorf("%w: messageDigest attribute missing", ErrBadSignature)
		}
		if _, err := asn1.Unmarshal(mdA.Value(), &md); err != nil || string(md) != string(contentDigest) {
			return nil, fmt.Errorf("%w: content digest differs (message altered)", ErrBadSignature)
		}
		hh := h.New()
		hh.Write(derHeader(0x31, len(si.SignedAttrsRaw)))
		hh.Write(si.SignedAttrsRaw)
		digest = hh.Sum(nil)
	}
	if err := verifyRaw(cert.PublicKey, si, h, digest); err != nil {
		return cert, err
	}
	return cert, nil
}

func verifyRaw(pub any, si *SignerInfo, h crypto.Hash, digest []byte) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		switch {
		case si.SigAlg.Equal(OIDRSAPSS):
			ph, salt, err := parsePSSParams(si.SigAlgParams)
			if err != nil {
				return err
			}
			if ph != h {
				return fmt.Errorf("%w: PSS hash differs from digest algorithm", ErrUnsupported)
			}
			if err := rsa.VerifyPSS(k, h, digest, si.Signature, &rsa.PSSOptions{SaltLength: salt, Hash: h}); err != nil {
				return fmt.Errorf("%w: %v", ErrBadSignature, err)
			}
			return nil
		case si.SigAlg.Equal(OIDRSAEncryption), si.SigAlg.Equal(OIDSHA256WithRSA),
			si.SigAlg.Equal(OIDSHA384WithRSA), si.SigAlg.Equal(OIDSHA512WithRSA):
			if err := rsa.VerifyPKCS1v15(k, h, digest, si.Signature); err != nil {
				return fmt.Errorf("%w: %v", ErrBadSignature, err)
			}
			return nil
		}
	case *ecdsa.PublicKey:
		switch {
		case si.SigAlg.Equal(OIDECDSAWithSHA256), si.SigAlg.Equal(OIDECDSAWithSHA384),
			si.SigAlg.Equal(OIDECDSAWithSHA512), si.SigAlg.Equal(OIDECPublicKey):
			if !ecdsa.VerifyASN1(k, digest, si.Signature) {
				return ErrBadSignature
			}
			return nil
		}
	}
	return fmt.Errorf("%w: signature algorithm %v with %T key", ErrUnsupported, si.SigAlg, pub)
}

func parsePSSParams(p []byte) (crypto.Hash, int, error) {
	// Defaults per RFC 4055 are SHA-1: refused below.
	s := cryptobyte.String(p)
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) {
		return 0, 0, malformed("RSASSA-PSS params")
	}
	h := crypto.SHA1
	salt := int64(20)
	if seq.PeekASN1Tag(tagCtx0) {
		var e cryptobyte.String
		if !seq.ReadASN1(&e, tagCtx0) {
			return 0, 0, malformed("PSS hash")
		}
		oid, _, ok := readAlgID(&e)
		if !ok {
			return 0, 0, malformed("PSS hash")
		}
		var err error
		if h, err = hashFromOID(oid); err != nil {
			return 0, 0, err
		}
	}
	if seq.PeekASN1Tag(tagCtx1) {
		var e cryptobyte.String
		if !seq.ReadASN1(&e, tagCtx1) {
			return 0, 0, malformed("PSS mgf")
		}
		oid, params, ok := readAlgID(&e)
		if !ok || !oid.Equal(OIDMGF1) {
			return 0, 0, fmt.Errorf("%w: PSS mask generation", ErrUnsupported)
		}
		ps := cryptobyte.String(params)
		moid, _, ok := readAlgID(&ps)
		if !ok {
			return 0, 0, malformed("PSS MGF1 hash")
		}
		mh, err := hashFromOID(moid)
		if err != nil {
			return 0, 0, err
		}
		if mh != h {
			return 0, 0, fmt.Errorf("%w: PSS MGF1 hash differs from message hash", ErrUnsupported)
		}
	}
	if seq.PeekASN1Tag(tagCtx2) {
		var e cryptobyte.String
		if !seq.ReadASN1(&e, tagCtx2) || !e.ReadASN1Int64WithTag(&salt, cbasn1.INTEGER) {
			return 0, 0, malformed("PSS salt")
		}
	}
	if h == crypto.SHA1 {
		return 0, 0, fmt.Errorf("%w: PSS with SHA-1", ErrUnsupported)
	}
	return h, int(salt), nil
}
