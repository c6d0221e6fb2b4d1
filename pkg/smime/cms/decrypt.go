package cms

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"hash"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// GCMParamsError reports AuthEnvelopedData whose GCMParameters (RFC 5084
// §3.2) are refused before any key is used: a nonce or ICV length out of
// range, an ICV length that is not the MAC's, or a combination that Go's
// GCM cannot check (a nonce other than 12 bytes with a tag shorter than
// 16). It wraps ErrMalformed or ErrUnsupported.
type GCMParamsError struct {
	NonceLen int
	ICVLen   int64
	MACLen   int
	Reason   string
	Err      error
}

func (e *GCMParamsError) Error() string {
	return fmt.Sprintf("%v: AES-GCM parameters (nonce %d bytes, ICV length %d, MAC %d bytes): %s",
		e.Err, e.NonceLen, e.ICVLen, e.MACLen, e.Reason)
}

func (e *GCMParamsError) Unwrap() error { return e.Err }

// GCM parameter bounds. RFC 5084 recommends a 12-byte nonce and allows
// ICV lengths 12 to 16; nonces longer than 64 bytes serve no one.
const (
	gcmStdNonce = 12
	gcmMaxNonce = 64
	gcmMinICV   = 12
	gcmMaxICV   = 16
)

// contentCipher is the content-encryption algorithm of an envelope with
// its parameters, all read and checked before the private key is used.
type contentCipher struct {
	keyLen int
	gcm    bool
	des    bool
	iv     []byte // CBC IV or GCM nonce
	icv    int    // GCM tag length
}

// contentCipherOf reads the envelope's content-encryption algorithm.
func (env *Envelope) contentCipherOf() (contentCipher, error) {
	alg := env.ContentAlg
	var c contentCipher
	switch {
	case alg.Equal(OIDAES128CBC):
		c.keyLen = 16
	case alg.Equal(OIDAES192CBC):
		c.keyLen = 24
	case alg.Equal(OIDAES256CBC):
		c.keyLen = 32
	case alg.Equal(OIDDESEDE3CBC):
		c.keyLen, c.des = 24, true
	case alg.Equal(OIDAES128GCM):
		c.keyLen, c.gcm = 16, true
	case alg.Equal(OIDAES192GCM):
		c.keyLen, c.gcm = 24, true
	case alg.Equal(OIDAES256GCM):
		c.keyLen, c.gcm = 32, true
	default:
		return c, fmt.Errorf("%w: content encryption %v", ErrUnsupported, alg)
	}
	if c.gcm != env.Auth {
		// RFC 5083/5084: GCM only in AuthEnvelopedData, and an
		// AuthEnvelopedData must authenticate.
		return c, fmt.Errorf("%w: content encryption %v in %s", ErrUnsupported, alg, map[bool]string{true: "AuthEnvelopedData", false: "EnvelopedData"}[env.Auth])
	}
	if c.gcm {
		return c, env.readGCMParams(&c)
	}
	blockSize := aes.BlockSize
	if c.des {
		blockSize = des.BlockSize
	}
	s := cryptobyte.String(env.ContentAlgParams)
	var iv cryptobyte.String
	if !s.ReadASN1(&iv, cbasn1.OCTET_STRING) || !s.Empty() || len(iv) != blockSize {
		return c, malformed(fmt.Sprintf("CBC IV (want an OCTET STRING of %d bytes)", blockSize))
	}
	if len(env.Ciphertext) == 0 || len(env.Ciphertext)%blockSize != 0 {
		return c, fmt.Errorf("%w: CBC ciphertext of %d bytes is not a whole number of %d-byte blocks", ErrMalformed, len(env.Ciphertext), blockSize)
	}
	c.iv = iv
	return c, nil
}

// readGCMParams checks GCMParameters against the MAC and against what
// Go's GCM can verify: cipher.NewGCMWithTagSize only takes 12-byte
// nonces, and gcm.Open panics on a nonce of another length.
func (env *Envelope) readGCMParams(c *contentCipher) error {
	s := cryptobyte.String(env.ContentAlgParams)
	var seq, nonce cryptobyte.String
	icv := int64(gcmMinICV) // DEFAULT 12
	refuse := func(err error, reason string) error {
		return &GCMParamsError{NonceLen: len(nonce), ICVLen: icv, MACLen: len(env.MAC), Reason: reason, Err: err}
	}
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() || !seq.ReadASN1(&nonce, cbasn1.OCTET_STRING) {
		return refuse(ErrMalformed, "not a GCMParameters SEQUENCE with a nonce")
	}
	if !seq.Empty() && (!seq.ReadASN1Int64WithTag(&icv, cbasn1.INTEGER) || !seq.Empty()) {
		return refuse(ErrMalformed, "ICV length is not one small INTEGER")
	}
	switch {
	case len(nonce) == 0 || len(nonce) > gcmMaxNonce:
		return refuse(ErrMalformed, fmt.Sprintf("nonce must be 1 to %d bytes (12 recommended)", gcmMaxNonce))
	case icv < gcmMinICV || icv > gcmMaxICV:
		return refuse(ErrMalformed, "ICV length must be 12 to 16 (RFC 5084)")
	case int(icv) != len(env.MAC):
		return refuse(ErrMalformed, "ICV length differs from the MAC's")
	case len(nonce) != gcmStdNonce && icv != gcmMaxICV:
		return refuse(ErrUnsupported, "a nonce other than 12 bytes needs a 16-byte ICV")
	}
	c.iv, c.icv = nonce, int(icv)
	return nil
}

// Decrypt opens the envelope with the private key belonging to cert.
// key is a crypto.Decrypter for RSA, or for EC an *ecdsa.PrivateKey,
// *ecdh.PrivateKey or anything with an ECDH(*ecdh.PublicKey) method.
//
// A wrong key, an RSA key transport with bad padding and an altered
// ciphertext all end in the same ErrDecrypt after the same work: RSA
// failures continue with a pseudo-random content key (implicit rejection),
// so that the envelope is not a padding oracle (Bleichenbacher, Marvin).
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
	cc, err := env.contentCipherOf()
	if err != nil {
		return nil, err
	}
	cek, err := unwrapCEK(ri, cert, key, cc.keyLen)
	if err != nil {
		return nil, err
	}
	return env.decryptContent(cc, cek)
}

type ecdhKey interface {
	ECDH(*ecdh.PublicKey) ([]byte, error)
}

// unwrapCEK recovers the content-encryption key; keyLen is the length the
// content cipher needs.
func unwrapCEK(ri *RecipientInfo, cert *x509.Certificate, key crypto.PrivateKey, keyLen int) ([]byte, error) {
	switch ri.Kind {
	case KindKeyTrans:
		return unwrapKeyTrans(ri, key, keyLen)
	case KindKeyAgree:
		return unwrapKeyAgree(ri, cert, key)
	}
	return nil, fmt.Errorf("%w: recipient info kind", ErrUnsupported)
}

// unwrapKeyTrans decrypts an RSA key transport. Every failure after the
// public checks yields a pseudo-random key of keyLen bytes instead of an
// error; the content decryption then fails as with any wrong key.
func unwrapKeyTrans(ri *RecipientInfo, key crypto.PrivateKey, keyLen int) ([]byte, error) {
	dec, ok := key.(crypto.Decrypter)
	if !ok {
		return nil, fmt.Errorf("%w: key %T cannot decrypt", ErrUnsupported, key)
	}
	pub, ok := dec.Public().(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: key transport needs an RSA key, have %T", ErrUnsupported, dec.Public())
	}
	var opts crypto.DecrypterOpts
	v15 := ri.KeyAlg.Equal(OIDRSAEncryption)
	switch {
	case v15:
		//lint:ignore SA1019 RFC 8551 §2.7 MUST; SessionKeyLen asks for implicit rejection
		opts = &rsa.PKCS1v15DecryptOptions{SessionKeyLen: keyLen}
	case ri.KeyAlg.Equal(OIDRSAOAEP):
		h, mgf, label, err := parseOAEPParams(ri.KeyAlgParams)
		if err != nil {
			return nil, err
		}
		opts = &rsa.OAEPOptions{Hash: h, MGFHash: mgf, Label: label}
	default:
		return nil, fmt.Errorf("%w: key transport %v", ErrUnsupported, ri.KeyAlg)
	}
	if len(ri.EncryptedKey) != pub.Size() {
		// Public knowledge: the sender could see this without our key.
		return nil, fmt.Errorf("%w: encrypted key of %d bytes for a %d-bit RSA key", ErrMalformed, len(ri.EncryptedKey), pub.N.BitLen())
	}
	cek := rejectionKey(dec, ri.EncryptedKey, keyLen)
	if priv, ok := dec.(*rsa.PrivateKey); ok && v15 {
		// Constant time: cek keeps the rejection key unless the padding
		// is good and the key has exactly keyLen bytes.
		//lint:ignore SA1019 RFC 8551 §2.7 MUST; this is the implicit-rejection form
		if err := rsa.DecryptPKCS1v15SessionKey(nil, priv, ri.EncryptedKey, cek); err != nil {
			return nil, ErrDecrypt // only a ciphertext above the modulus gets here
		}
		return cek, nil
	}
	// OAEP, or a key held elsewhere (HSM, agent): its answer, or the
	// rejection key when it refuses or returns a key of another length.
	if out, err := dec.Decrypt(rand.Reader, ri.EncryptedKey, opts); err == nil && len(out) == keyLen {
		copy(cek, out)
	}
	return cek, nil
}

// rejectionKey is the content key a failed RSA unwrap continues with
// (implicit rejection, RFC 3218 §2.3.2): for an *rsa.PrivateKey,
// HMAC-SHA-256 over the encrypted key under a secret derived from the
// private key, so the same forged ciphertext always meets the same wrong
// key (a repeated query learns nothing) and nobody without the key can
// predict it; for a key held elsewhere, random bytes.
func rejectionKey(dec crypto.Decrypter, encryptedKey []byte, keyLen int) []byte {
	priv, ok := dec.(*rsa.PrivateKey)
	if !ok {
		k := make([]byte, keyLen)
		_, _ = rand.Read(k) // crypto/rand does not fail (Go 1.24+)
		return k
	}
	secret := sha256.New()
	secret.Write([]byte("sealgate/cms/rsa-implicit-rejection\x00"))
	secret.Write(priv.D.Bytes())
	mac := hmac.New(sha256.New, secret.Sum(nil))
	mac.Write(encryptedKey)
	return mac.Sum(nil)[:keyLen] // keyLen <= 32: AES-256 and 3DES are the longest
}

// unwrapKeyAgree runs ECDH, the X9.63 KDF and AES key unwrap (RFC 5753).
func unwrapKeyAgree(ri *RecipientInfo, cert *x509.Certificate, key crypto.PrivateKey) ([]byte, error) {
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

// decryptContent decrypts with cek. Every failure that depends on the key
// is the bare ErrDecrypt, so a wrong key and an RSA implicit rejection
// cannot be told apart.
func (env *Envelope) decryptContent(cc contentCipher, cek []byte) ([]byte, error) {
	if len(cek) != cc.keyLen {
		return nil, ErrDecrypt // a key agreement unwrapped a key of another size
	}
	var block cipher.Block
	var err error
	if cc.des {
		block, err = des.NewTripleDESCipher(cek)
	} else {
		block, err = aes.NewCipher(cek)
	}
	if err != nil {
		return nil, fmt.Errorf("content cipher: %w", err) // not reached: key lengths are checked above
	}
	if cc.gcm {
		var gcm cipher.AEAD
		if len(cc.iv) == gcmStdNonce {
			gcm, err = cipher.NewGCMWithTagSize(block, cc.icv)
		} else {
			gcm, err = cipher.NewGCMWithNonceSize(block, len(cc.iv)) // readGCMParams: icv is 16
		}
		if err != nil {
			return nil, fmt.Errorf("content cipher: %w", err)
		}
		var aad []byte
		if env.AuthAttrsRaw != nil {
			aad = append(derHeader(0x31, len(env.AuthAttrsRaw)), env.AuthAttrsRaw...)
		}
		ct := make([]byte, 0, len(env.Ciphertext)+len(env.MAC))
		ct = append(append(ct, env.Ciphertext...), env.MAC...)
		pt, err := gcm.Open(ct[:0], cc.iv, ct, aad)
		if err != nil {
			return nil, ErrDecrypt
		}
		return pt, nil
	}
	bs := block.BlockSize()
	pt := make([]byte, len(env.Ciphertext))
	cipher.NewCBCDecrypter(block, cc.iv).CryptBlocks(pt, env.Ciphertext)
	// PKCS#7 padding, checked without branching on its bytes.
	pad := int(pt[len(pt)-1])
	good := subtle.ConstantTimeLessOrEq(1, pad) & subtle.ConstantTimeLessOrEq(pad, bs)
	for i := 1; i <= bs; i++ {
		inPad := subtle.ConstantTimeLessOrEq(i, pad)
		match := subtle.ConstantTimeByteEq(pt[len(pt)-i], byte(pad))
		good &= subtle.ConstantTimeSelect(inPad, match, 1)
	}
	if good != 1 {
		return nil, ErrDecrypt
	}
	return pt[:len(pt)-pad], nil
}
