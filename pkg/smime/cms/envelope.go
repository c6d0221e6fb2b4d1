package cms

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Errors of decryption (use errors.Is).
var (
	// ErrNotRecipient: the message has no RecipientInfo for this certificate.
	ErrNotRecipient = errors.New("message is not encrypted for this certificate")
	// ErrDecrypt: the key did not open the envelope, or the ciphertext
	// was altered.
	ErrDecrypt = errors.New("decryption failed (wrong key or altered ciphertext)")
)

// ContentCipher selects the content-encryption algorithm.
type ContentCipher int

const (
	// AES256CBC in EnvelopedData: what every S/MIME client reads.
	AES256CBC ContentCipher = iota
	// AES256GCM in AuthEnvelopedData (RFC 5083/5084).
	AES256GCM
)

func (c ContentCipher) String() string {
	if c == AES256GCM {
		return "AES-256-GCM"
	}
	return "AES-256-CBC"
}

// Recipient is one certificate to encrypt to.
type Recipient struct {
	Cert *x509.Certificate
	// UseSKI identifies the recipient by subject key identifier instead
	// of issuer and serial number (needs the extension in Cert).
	UseSKI bool
	// OAEP selects RSAES-OAEP with SHA-256 and MGF1-SHA-256 (RSA only).
	OAEP bool
}

// EnvelopeConfig describes one envelope for all recipients.
type EnvelopeConfig struct {
	Recipients []Recipient
	Cipher     ContentCipher
	Rand       io.Reader
}

const cekLen = 32

// EncryptedSizeBound returns an upper bound of the DER size Encrypt writes
// for a plaintext of n bytes, so callers can size buffers once.
func EncryptedSizeBound(n, recipients int) int {
	return n + 16 + 200 + recipients*1200
}

// Encrypt writes a ContentInfo (EnvelopedData, or AuthEnvelopedData for
// GCM) carrying the concatenation of parts to w. The plaintext is never
// copied whole for CBC: it is encrypted in chunks as it is written.
func Encrypt(w io.Writer, cfg EnvelopeConfig, parts ...[]byte) error {
	if len(cfg.Recipients) == 0 {
		return errors.New("cms: no recipients")
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	cek := make([]byte, cekLen)
	if _, err := io.ReadFull(cfg.Rand, cek); err != nil {
		return err
	}
	var ris [][]byte
	allV0 := true
	for i, r := range cfg.Recipients {
		ri, v0, err := recipientInfo(cfg.Rand, r, cek)
		if err != nil {
			return fmt.Errorf("cms: recipient %d (%s): %w", i+1, r.Cert.Subject, err)
		}
		allV0 = allV0 && v0
		ris = append(ris, ri)
	}
	var riContent []byte
	for _, ri := range sortedDER(ris) {
		riContent = append(riContent, ri...)
	}
	riSet := append(derHeader(0x31, len(riContent)), riContent...)

	total := 0
	for _, p := range parts {
		total += len(p)
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return err
	}
	var algID []byte
	var ctLen, version int
	var outerOID asn1.ObjectIdentifier
	var gcm cipher.AEAD
	var iv []byte
	switch cfg.Cipher {
	case AES256CBC:
		iv = make([]byte, aes.BlockSize)
		if _, err := io.ReadFull(cfg.Rand, iv); err != nil {
			return err
		}
		ivDER, _ := asn1.Marshal(iv)
		algID = algIDBytes(OIDAES256CBC, ivDER)
		ctLen = (total/aes.BlockSize + 1) * aes.BlockSize
		outerOID = OIDEnvelopedData
		if !allV0 {
			version = 2
		}
	case AES256GCM:
		gcm, err = cipher.NewGCM(block)
		if err != nil {
			return err
		}
		iv = make([]byte, gcm.NonceSize())
		if _, err := io.ReadFull(cfg.Rand, iv); err != nil {
			return err
		}
		pb := cryptobyte.NewBuilder(nil)
		pb.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1OctetString(iv)
			b.AddASN1Int64(int64(gcm.Overhead()))
		})
		algID = algIDBytes(OIDAES256GCM, pb.BytesOrPanic())
		ctLen = total
		outerOID = OIDAuthEnvelopedData
		version = 0
	default:
		return fmt.Errorf("%w: content cipher %d", ErrUnsupported, cfg.Cipher)
	}
	dataOID, _ := asn1.Marshal(OIDData)
	ctHdr := derHeader(0x80, ctLen)
	eciLen := len(dataOID) + len(algID) + len(ctHdr) + ctLen
	eciHdr := derHeader(0x30, eciLen)
	verDER, _ := asn1.Marshal(version)
	var suffix []byte
	if gcm != nil {
		suffix = derHeader(0x04, gcm.Overhead())
	}
	edLen := len(verDER) + len(riSet) + len(eciHdr) + eciLen + len(suffix)
	if gcm != nil {
		edLen += gcm.Overhead()
	}
	edHdr := derHeader(0x30, edLen)
	ctx0Len := len(edHdr) + edLen
	ctx0Hdr := derHeader(0xA0, ctx0Len)
	outerOIDDER, _ := asn1.Marshal(outerOID)
	ciHdr := derHeader(0x30, len(outerOIDDER)+len(ctx0Hdr)+ctx0Len)

	prefix := make([]byte, 0, 64+len(riSet)+len(algID))
	for _, p := range [][]byte{ciHdr, outerOIDDER, ctx0Hdr, edHdr, verDER, riSet, eciHdr, dataOID, algID, ctHdr} {
		prefix = append(prefix, p...)
	}
	if _, err := w.Write(prefix); err != nil {
		return err
	}
	if gcm != nil {
		buf := make([]byte, 0, total+gcm.Overhead())
		for _, p := range parts {
			buf = append(buf, p...)
		}
		sealed := gcm.Seal(buf[:0], iv, buf, nil)
		if _, err := w.Write(sealed[:total]); err != nil {
			return err
		}
		if _, err := w.Write(suffix); err != nil {
			return err
		}
		_, err := w.Write(sealed[total:])
		return err
	}
	return encryptCBCStream(w, cipher.NewCBCEncrypter(block, iv), parts)
}

// encryptCBCStream pads (PKCS#7) and encrypts parts chunk by chunk.
func encryptCBCStream(w io.Writer, mode cipher.BlockMode, parts [][]byte) error {
	total := 0
	for _, p := range parts {
		total += len(p)
	}
	chunk := min(64<<10, total+aes.BlockSize) // small messages need no 64 KB buffer
	buf := make([]byte, 0, chunk+aes.BlockSize)
	flush := func(final bool) error {
		n := len(buf)
		if !final {
			n -= n % aes.BlockSize
		}
		if n == 0 {
			return nil
		}
		mode.CryptBlocks(buf[:n], buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		rest := copy(buf, buf[n:])
		buf = buf[:rest]
		return nil
	}
	for _, p := range parts {
		for len(p) > 0 {
			room := chunk - len(buf)
			if room > len(p) {
				room = len(p)
			}
			buf = append(buf, p[:room]...)
			p = p[room:]
			if len(buf) >= chunk {
				if err := flush(false); err != nil {
					return err
				}
			}
		}
	}
	pad := aes.BlockSize - len(buf)%aes.BlockSize
	for i := 0; i < pad; i++ {
		buf = append(buf, byte(pad))
	}
	return flush(true)
}

func ridBytes(cert *x509.Certificate, useSKI bool, skiTag byte) ([]byte, error) {
	if !useSKI {
		return IssuerAndSerial(cert), nil
	}
	if len(cert.SubjectKeyId) == 0 {
		return nil, errors.New("certificate has no subject key identifier")
	}
	return append(derHeader(skiTag, len(cert.SubjectKeyId)), cert.SubjectKeyId...), nil
}

// OAEPParamsSHA256 encodes RSAES-OAEP-params with SHA-256 and MGF1-SHA-256; both
// fields are written because their defaults are SHA-1.
func OAEPParamsSHA256() []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(tagCtx0, func(b *cryptobyte.Builder) { addAlgID(b, OIDSHA256, nil) })
		b.AddASN1(tagCtx1, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(OIDMGF1)
				addAlgID(b, OIDSHA256, nil)
			})
		})
	})
	return b.BytesOrPanic()
}

// recipientInfo builds a KeyTransRecipientInfo (RSA) or a
// KeyAgreeRecipientInfo (EC); v0 tells whether it is version 0.
func recipientInfo(rnd io.Reader, r Recipient, cek []byte) ([]byte, bool, error) {
	if r.Cert == nil {
		return nil, false, errors.New("no certificate")
	}
	switch pub := r.Cert.PublicKey.(type) {
	case *rsa.PublicKey:
		rid, err := ridBytes(r.Cert, r.UseSKI, 0x80)
		if err != nil {
			return nil, false, err
		}
		var ek, alg []byte
		if r.OAEP {
			ek, err = rsa.EncryptOAEP(sha256.New(), rnd, pub, cek, nil)
			alg = algIDBytes(OIDRSAOAEP, OAEPParamsSHA256())
		} else {
			// Every S/MIME client reads v1.5 key transport and gpgsm and
			// NSS read nothing else; OAEP is used when all recipients
			// advertise it.
			//lint:ignore SA1019 required for interoperability (RFC 8551 §2.7 MUST)
			ek, err = rsa.EncryptPKCS1v15(rnd, pub, cek)
			alg = algIDBytes(OIDRSAEncryption, derNull)
		}
		if err != nil {
			return nil, false, err
		}
		version := int64(0)
		if r.UseSKI {
			version = 2
		}
		b := cryptobyte.NewBuilder(nil)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(version)
			b.AddBytes(rid)
			b.AddBytes(alg)
			b.AddASN1OctetString(ek)
		})
		out, err := b.Bytes()
		return out, version == 0, err
	case *ecdsa.PublicKey:
		ri, err := kari(rnd, r, pub, cek)
		return ri, false, err
	default:
		return nil, false, fmt.Errorf("%w: recipient key type %T", ErrUnsupported, pub)
	}
}

// eccSharedInfo encodes ECC-CMS-SharedInfo (RFC 5753 §7.2).
func eccSharedInfo(wrapAlg []byte, ukm []byte, keyBits int) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(wrapAlg)
		if ukm != nil {
			b.AddASN1(tagCtx0, func(b *cryptobyte.Builder) { b.AddASN1OctetString(ukm) })
		}
		b.AddASN1(tagCtx2, func(b *cryptobyte.Builder) {
			b.AddASN1OctetString([]byte{byte(keyBits >> 24), byte(keyBits >> 16), byte(keyBits >> 8), byte(keyBits)})
		})
	})
	return b.BytesOrPanic()
}

// kari builds a KeyAgreeRecipientInfo with an ephemeral-static ECDH key
// (dhSinglePass-stdDH-sha256kdf-scheme) and AES-256 key wrap.
func kari(rnd io.Reader, r Recipient, pub *ecdsa.PublicKey, cek []byte) ([]byte, error) {
	rpub, err := pub.ECDH()
	if err != nil {
		return nil, fmt.Errorf("%w: recipient EC key: %v", ErrUnsupported, err)
	}
	eph, err := rpub.Curve().GenerateKey(rnd)
	if err != nil {
		return nil, err
	}
	z, err := eph.ECDH(rpub)
	if err != nil {
		return nil, err
	}
	wrapAlg := algIDBytes(OIDAES256Wrap, nil)
	kek := x963KDF(sha256.New, z, eccSharedInfo(wrapAlg, nil, 256), 32)
	ek, err := aesWrap(kek, cek)
	if err != nil {
		return nil, err
	}
	var rid []byte
	if r.UseSKI {
		if len(r.Cert.SubjectKeyId) == 0 {
			return nil, errors.New("certificate has no subject key identifier")
		}
		b := cryptobyte.NewBuilder(nil)
		b.AddASN1(tagCtx0, func(b *cryptobyte.Builder) { b.AddASN1OctetString(r.Cert.SubjectKeyId) })
		rid = b.BytesOrPanic()
	} else {
		rid = IssuerAndSerial(r.Cert)
	}
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(tagCtx1, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(3)
		b.AddASN1(tagCtx0, func(b *cryptobyte.Builder) {
			b.AddASN1(tagCtx1, func(b *cryptobyte.Builder) {
				addAlgID(b, OIDECPublicKey, nil)
				b.AddASN1BitString(eph.PublicKey().Bytes())
			})
		})
		addAlgID(b, OIDECDHSHA256KDF, wrapAlg)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(rid)
				b.AddASN1OctetString(ek)
			})
		})
	})
	return b.Bytes()
}

// Envelope is a parsed EnvelopedData or AuthEnvelopedData.
type Envelope struct {
	Auth             bool
	Recipients       []RecipientInfo
	ContentType      asn1.ObjectIdentifier
	ContentAlg       asn1.ObjectIdentifier
	ContentAlgParams []byte
	Ciphertext       []byte
	MAC              []byte
	AuthAttrsRaw     []byte
}

// RecipientInfo kinds.
const (
	KindKeyTrans = iota + 1
	KindKeyAgree
	KindOther
)

// RecipientInfo is one parsed recipient entry (for KARI: one recipient
// encrypted key, with the originator data copied in).
type RecipientInfo struct {
	Kind         int
	Issuer       []byte
	Serial       *big.Int
	SubjectKeyID []byte
	KeyAlg       asn1.ObjectIdentifier
	KeyAlgParams []byte
	EncryptedKey []byte
	// Key agreement only.
	OriginatorKey []byte // uncompressed EC point
	UKM           []byte
}

// Matches reports whether ri addresses cert.
func (ri *RecipientInfo) Matches(cert *x509.Certificate) bool {
	if ri.Issuer != nil {
		return string(ri.Issuer) == string(cert.RawIssuer) && ri.Serial.Cmp(cert.SerialNumber) == 0
	}
	return ri.SubjectKeyID != nil && len(cert.SubjectKeyId) > 0 && string(ri.SubjectKeyID) == string(cert.SubjectKeyId)
}

// ParseEnvelope parses a ContentInfo with EnvelopedData or
// AuthEnvelopedData.
func ParseEnvelope(der []byte) (*Envelope, error) {
	oid, content, err := ParseContentInfo(der)
	if err != nil {
		return nil, err
	}
	env := &Envelope{}
	switch {
	case oid.Equal(OIDEnvelopedData):
	case oid.Equal(OIDAuthEnvelopedData):
		env.Auth = true
	default:
		return nil, fmt.Errorf("%w: content type %v is not enveloped-data", ErrUnsupported, oid)
	}
	s := cryptobyte.String(content)
	var ed, ris, eci cryptobyte.String
	var version int64
	if !s.ReadASN1(&ed, cbasn1.SEQUENCE) || !ed.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) {
		return nil, malformed("EnvelopedData")
	}
	if ed.PeekASN1Tag(tagCtx0) && !ed.SkipASN1(tagCtx0) { // originatorInfo
		return nil, malformed("originatorInfo")
	}
	if !ed.ReadASN1(&ris, cbasn1.SET) {
		return nil, malformed("recipientInfos")
	}
	for !ris.Empty() {
		var ri cryptobyte.String
		var tag cbasn1.Tag
		if !ris.ReadAnyASN1(&ri, &tag) {
			return nil, malformed("RecipientInfo")
		}
		switch tag {
		case cbasn1.SEQUENCE:
			r, err := parseKTRI(ri)
			if err != nil {
				return nil, err
			}
			env.Recipients = append(env.Recipients, r)
		case tagCtx1:
			rs, err := parseKARI(ri)
			if err != nil {
				return nil, err
			}
			env.Recipients = append(env.Recipients, rs...)
		default:
			env.Recipients = append(env.Recipients, RecipientInfo{Kind: KindOther})
		}
	}
	if !ed.ReadASN1(&eci, cbasn1.SEQUENCE) || !eci.ReadASN1ObjectIdentifier(&env.ContentType) {
		return nil, malformed("EncryptedContentInfo")
	}
	var ok bool
	if env.ContentAlg, env.ContentAlgParams, ok = readAlgID(&eci); !ok {
		return nil, malformed("contentEncryptionAlgorithm")
	}
	switch {
	case eci.PeekASN1Tag(tagCtx0P):
		var ct cryptobyte.String
		if !eci.ReadASN1(&ct, tagCtx0P) {
			return nil, malformed("encryptedContent")
		}
		env.Ciphertext = ct
	case eci.PeekASN1Tag(tagCtx0):
		// BER constructed form: OCTET STRING chunks, made definite by
		// NormalizeBER.
		var ct cryptobyte.String
		if !eci.ReadASN1(&ct, tagCtx0) {
			return nil, malformed("encryptedContent")
		}
		for !ct.Empty() {
			var chunk cryptobyte.String
			if !ct.ReadASN1(&chunk, cbasn1.OCTET_STRING) {
				return nil, malformed("encryptedContent chunk")
			}
			env.Ciphertext = append(env.Ciphertext, chunk...)
		}
	default:
		return nil, malformed("encryptedContent missing (detached ciphertext is not supported)")
	}
	if env.Auth {
		if ed.PeekASN1Tag(tagCtx1) {
			var aa cryptobyte.String
			if !ed.ReadASN1(&aa, tagCtx1) {
				return nil, malformed("authAttrs")
			}
			env.AuthAttrsRaw = aa
		}
		var mac cryptobyte.String
		if !ed.ReadASN1(&mac, cbasn1.OCTET_STRING) {
			return nil, malformed("mac")
		}
		env.MAC = mac
	}
	return env, nil
}

func readRID(s *cryptobyte.String, ri *RecipientInfo, skiTag cbasn1.Tag) bool {
	if s.PeekASN1Tag(cbasn1.SEQUENCE) {
		var ias, issuer cryptobyte.String
		ri.Serial = new(big.Int)
		if !s.ReadASN1(&ias, cbasn1.SEQUENCE) || !ias.ReadASN1Element(&issuer, cbasn1.SEQUENCE) || !ias.ReadASN1Integer(ri.Serial) {
			return false
		}
		ri.Issuer = issuer
		return true
	}
	var ski cryptobyte.String
	if !s.ReadASN1(&ski, skiTag) {
		return false
	}
	if skiTag == tagCtx0 {
		// RecipientKeyIdentifier ::= SEQUENCE { subjectKeyIdentifier, ... }
		// encoded [0] IMPLICIT: first element is the OCTET STRING.
		var inner cryptobyte.String
		if !ski.ReadASN1(&inner, cbasn1.OCTET_STRING) {
			return false
		}
		ski = inner
	}
	ri.SubjectKeyID = ski
	return true
}

func parseKTRI(s cryptobyte.String) (RecipientInfo, error) {
	ri := RecipientInfo{Kind: KindKeyTrans}
	var version int64
	if !s.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) || !readRID(&s, &ri, tagCtx0P) {
		return ri, malformed("KeyTransRecipientInfo")
	}
	var ok bool
	if ri.KeyAlg, ri.KeyAlgParams, ok = readAlgID(&s); !ok {
		return ri, malformed("keyEncryptionAlgorithm")
	}
	var ek cryptobyte.String
	if !s.ReadASN1(&ek, cbasn1.OCTET_STRING) {
		return ri, malformed("encryptedKey")
	}
	ri.EncryptedKey = ek
	return ri, nil
}

func parseKARI(s cryptobyte.String) ([]RecipientInfo, error) {
	var version int64
	var orig cryptobyte.String
	if !s.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) || !s.ReadASN1(&orig, tagCtx0) {
		return nil, malformed("KeyAgreeRecipientInfo")
	}
	base := RecipientInfo{Kind: KindKeyAgree}
	if orig.PeekASN1Tag(tagCtx1) {
		var ok cryptobyte.String
		var point asn1.BitString
		if !orig.ReadASN1(&ok, tagCtx1) || !ok.SkipASN1(cbasn1.SEQUENCE) || !ok.ReadASN1BitString(&point) {
			return nil, malformed("originatorKey")
		}
		base.OriginatorKey = point.RightAlign()
	}
	if s.PeekASN1Tag(tagCtx1) {
		var ukmE, ukm cryptobyte.String
		if !s.ReadASN1(&ukmE, tagCtx1) || !ukmE.ReadASN1(&ukm, cbasn1.OCTET_STRING) {
			return nil, malformed("ukm")
		}
		base.UKM = ukm
	}
	var ok bool
	if base.KeyAlg, base.KeyAlgParams, ok = readAlgID(&s); !ok {
		return nil, malformed("keyEncryptionAlgorithm")
	}
	var reks cryptobyte.String
	if !s.ReadASN1(&reks, cbasn1.SEQUENCE) {
		return nil, malformed("recipientEncryptedKeys")
	}
	var out []RecipientInfo
	for !reks.Empty() {
		var rek, ek cryptobyte.String
		ri := base
		if !reks.ReadASN1(&rek, cbasn1.SEQUENCE) || !readRID(&rek, &ri, tagCtx0) || !rek.ReadASN1(&ek, cbasn1.OCTET_STRING) {
			return nil, malformed("RecipientEncryptedKey")
		}
		ri.EncryptedKey = ek
		out = append(out, ri)
	}
	return out, nil
}
