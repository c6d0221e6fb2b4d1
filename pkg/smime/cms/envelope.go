package cms

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"
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

// Decrypt opens the envelope with the private key belonging to cert.
// key is a crypto.Decrypter for RSA, or for EC an *ecdsa.PrivateKey,
// *ecdh.PrivateKey or anything with an ECDH(*ecdh.PublicKey) method.
func (env *Envelope) Decrypt(cert *x509.Certificate, key crypto.PrivateKey) ([]byte, error) {
	var ri *RecipientInfo
	for i := range env.Recipients {
		if env.Recipients[i].Kind != KindOther && env.Recipients[i].Matches(cert) {
			ri = &env.Recipients[i]
			break
		}
	}
	if ri == nil {
		return nil, fmt.Errorf("%w (serial %x, subject %s)", ErrNotRecipient, cert.SerialNumber, cert.Subject)
	}
	cek, err := unwrapCEK(ri, cert, key)
	if err != nil {
		return nil, err
	}
	return env.decryptContent(cek)
}

type ecdhKey interface {
	ECDH(*ecdh.PublicKey) ([]byte, error)
}

func unwrapCEK(ri *RecipientInfo, cert *x509.Certificate, key crypto.PrivateKey) ([]byte, error) {
	switch ri.Kind {
	case KindKeyTrans:
		dec, ok := key.(crypto.Decrypter)
		if !ok {
			return nil, fmt.Errorf("%w: key %T cannot decrypt", ErrUnsupported, key)
		}
		if _, ok := dec.Public().(*rsa.PublicKey); !ok {
			return nil, fmt.Errorf("%w: key transport needs an RSA key, have %T", ErrUnsupported, dec.Public())
		}
		switch {
		case ri.KeyAlg.Equal(OIDRSAEncryption):
			cek, err := dec.Decrypt(rand.Reader, ri.EncryptedKey, nil)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
			}
			return cek, nil
		case ri.KeyAlg.Equal(OIDRSAOAEP):
			h, mgf, label, err := parseOAEPParams(ri.KeyAlgParams)
			if err != nil {
				return nil, err
			}
			cek, err := dec.Decrypt(rand.Reader, ri.EncryptedKey, &rsa.OAEPOptions{Hash: h, MGFHash: mgf, Label: label})
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
			}
			return cek, nil
		}
		return nil, fmt.Errorf("%w: key transport %v", ErrUnsupported, ri.KeyAlg)
	case KindKeyAgree:
		var priv ecdhKey
		var curve ecdh.Curve
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			p, err := k.ECDH()
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrUnsupported, err)
			}
			priv, curve = p, p.Curve()
		case *ecdh.PrivateKey:
			priv, curve = k, k.Curve()
		case ecdhKey:
			pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
			if !ok {
				return nil, fmt.Errorf("%w: certificate key is not EC", ErrUnsupported)
			}
			p, err := pub.ECDH()
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrUnsupported, err)
			}
			priv, curve = k, p.Curve()
		default:
			return nil, fmt.Errorf("%w: key %T cannot do ECDH", ErrUnsupported, key)
		}
		var newHash func() hash.Hash
		switch {
		case ri.KeyAlg.Equal(OIDECDHSHA256KDF):
			newHash = sha256.New
		case ri.KeyAlg.Equal(OIDECDHSHA384KDF):
			newHash = sha512.New384
		case ri.KeyAlg.Equal(OIDECDHSHA512KDF):
			newHash = sha512.New
		case ri.KeyAlg.Equal(OIDECDHSHA224KDF):
			newHash = sha256.New224
		case ri.KeyAlg.Equal(OIDECDHSHA1KDF):
			newHash = sha1.New
		default:
			return nil, fmt.Errorf("%w: key agreement %v", ErrUnsupported, ri.KeyAlg)
		}
		ps := cryptobyte.String(ri.KeyAlgParams)
		var wrapAlg cryptobyte.String
		if !ps.ReadASN1Element(&wrapAlg, cbasn1.SEQUENCE) {
			return nil, malformed("key wrap algorithm")
		}
		wa := wrapAlg
		wrapOID, _, ok := readAlgID(&wa)
		if !ok {
			return nil, malformed("key wrap algorithm")
		}
		var kekLen int
		switch {
		case wrapOID.Equal(OIDAES128Wrap):
			kekLen = 16
		case wrapOID.Equal(OIDAES192Wrap):
			kekLen = 24
		case wrapOID.Equal(OIDAES256Wrap):
			kekLen = 32
		default:
			return nil, fmt.Errorf("%w: key wrap %v", ErrUnsupported, wrapOID)
		}
		opub, err := curve.NewPublicKey(ri.OriginatorKey)
		if err != nil {
			return nil, fmt.Errorf("%w: originator key: %v", ErrMalformed, err)
		}
		z, err := priv.ECDH(opub)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
		}
		kek := x963KDF(newHash, z, eccSharedInfo(wrapAlg, ri.UKM, kekLen*8), kekLen)
		cek, err := aesUnwrap(kek, ri.EncryptedKey)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
		}
		return cek, nil
	}
	return nil, fmt.Errorf("%w: recipient info kind", ErrUnsupported)
}

func parseOAEPParams(p []byte) (crypto.Hash, crypto.Hash, []byte, error) {
	h, mgf := crypto.SHA1, crypto.SHA1
	var label []byte
	if p == nil {
		return h, mgf, nil, nil
	}
	s := cryptobyte.String(p)
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) {
		// NULL parameters mean all defaults.
		return h, mgf, nil, nil
	}
	hashOf := func(oid asn1.ObjectIdentifier) (crypto.Hash, error) {
		if oid.Equal(OIDSHA1) {
			return crypto.SHA1, nil // OAEP with SHA-1 is still sound for key transport
		}
		return hashFromOID(oid)
	}
	if seq.PeekASN1Tag(tagCtx0) {
		var e cryptobyte.String
		if !seq.ReadASN1(&e, tagCtx0) {
			return 0, 0, nil, malformed("OAEP hash")
		}
		oid, _, ok := readAlgID(&e)
		if !ok {
			return 0, 0, nil, malformed("OAEP hash")
		}
		var err error
		if h, err = hashOf(oid); err != nil {
			return 0, 0, nil, err
		}
	}
	if seq.PeekASN1Tag(tagCtx1) {
		var e cryptobyte.String
		if !seq.ReadASN1(&e, tagCtx1) {
			return 0, 0, nil, malformed("OAEP mgf")
		}
		oid, params, ok := readAlgID(&e)
		if !ok || !oid.Equal(OIDMGF1) {
			return 0, 0, nil, fmt.Errorf("%w: OAEP mask generation", ErrUnsupported)
		}
		ps := cryptobyte.String(params)
		moid, _, ok := readAlgID(&ps)
		if !ok {
			return 0, 0, nil, malformed("OAEP MGF1 hash")
		}
		var err error
		if mgf, err = hashOf(moid); err != nil {
			return 0, 0, nil, err
		}
	}
	if seq.PeekASN1Tag(tagCtx2) {
		var e, src cryptobyte.String
		if !seq.ReadASN1(&e, tagCtx2) || !e.ReadASN1(&src, cbasn1.SEQUENCE) || !src.SkipASN1(cbasn1.OBJECT_IDENTIFIER) {
			return 0, 0, nil, malformed("OAEP pSource")
		}
		var l cryptobyte.String
		if src.ReadASN1(&l, cbasn1.OCTET_STRING) {
			label = l
		}
	}
	return h, mgf, label, nil
}

func (env *Envelope) decryptContent(cek []byte) ([]byte, error) {
	alg := env.ContentAlg
	switch {
	case alg.Equal(OIDAES128CBC), alg.Equal(OIDAES192CBC), alg.Equal(OIDAES256CBC), alg.Equal(OIDDESEDE3CBC):
		if env.Auth {
			return nil, fmt.Errorf("%w: CBC in AuthEnvelopedData", ErrUnsupported)
		}
		want := map[bool]int{true: 24, false: 0}[alg.Equal(OIDDESEDE3CBC)]
		if want == 0 {
			want = map[string]int{OIDAES128CBC.String(): 16, OIDAES192CBC.String(): 24, OIDAES256CBC.String(): 32}[alg.String()]
		}
		if len(cek) != want {
			// A wrong key (or RSA v1.5 implicit rejection) yields a key
			// of the wrong size: same error as a bad ciphertext.
			return nil, ErrDecrypt
		}
		var iv []byte
		if _, err := asn1.Unmarshal(env.ContentAlgParams, &iv); err != nil {
			return nil, malformed("CBC IV")
		}
		var block cipher.Block
		var err error
		if alg.Equal(OIDDESEDE3CBC) {
			block, err = des.NewTripleDESCipher(cek)
		} else {
			block, err = aes.NewCipher(cek)
		}
		if err != nil {
			return nil, err
		}
		bs := block.BlockSize()
		if len(iv) != bs || len(env.Ciphertext) == 0 || len(env.Ciphertext)%bs != 0 {
			return nil, fmt.Errorf("%w: ciphertext length", ErrDecrypt)
		}
		pt := make([]byte, len(env.Ciphertext))
		cipher.NewCBCDecrypter(block, iv).CryptBlocks(pt, env.Ciphertext)
		pad := int(pt[len(pt)-1])
		if pad == 0 || pad > bs {
			return nil, ErrDecrypt
		}
		good := 1
		for _, c := range pt[len(pt)-pad:] {
			good &= subtle.ConstantTimeByteEq(c, byte(pad))
		}
		if good != 1 {
			return nil, ErrDecrypt
		}
		return pt[:len(pt)-pad], nil
	case alg.Equal(OIDAES128GCM), alg.Equal(OIDAES192GCM), alg.Equal(OIDAES256GCM):
		if !env.Auth {
			return nil, fmt.Errorf("%w: GCM outside AuthEnvelopedData", ErrUnsupported)
		}
		s := cryptobyte.String(env.ContentAlgParams)
		var seq, nonce cryptobyte.String
		icv := int64(12)
		if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1(&nonce, cbasn1.OCTET_STRING) {
			return nil, malformed("GCM parameters")
		}
		if !seq.Empty() && !seq.ReadASN1Int64WithTag(&icv, cbasn1.INTEGER) {
			return nil, malformed("GCM ICV length")
		}
		block, err := aes.NewCipher(cek)
		if err != nil {
			return nil, ErrDecrypt
		}
		if icv < 12 || icv > 16 || int(icv) != len(env.MAC) || len(nonce) == 0 {
			return nil, malformed("GCM tag length")
		}
		gcm, err := cipher.NewGCMWithNonceSize(block, len(nonce))
		if err != nil {
			return nil, err
		}
		if icv != 16 {
			if gcm, err = cipher.NewGCMWithTagSize(block, int(icv)); err != nil {
				return nil, err
			}
		}
		var aad []byte
		if env.AuthAttrsRaw != nil {
			aad = append(derHeader(0x31, len(env.AuthAttrsRaw)), env.AuthAttrsRaw...)
		}
		ct := make([]byte, 0, len(env.Ciphertext)+len(env.MAC))
		ct = append(append(ct, env.Ciphertext...), env.MAC...)
		pt, err := gcm.Open(ct[:0], nonce, ct, aad)
		if err != nil {
			return nil, ErrDecrypt
		}
		return pt, nil
	}
	return nil, fmt.Errorf("%w: content encryption %v", ErrUnsupported, alg)
}
