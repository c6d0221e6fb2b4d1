package cms

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"io"
	"math/big"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// forgedEnvelope writes a ContentInfo the way an attacker can: any
// recipient infos, any content algorithm and parameters, any ciphertext
// and (mac != nil) AuthEnvelopedData with that MAC.
func forgedEnvelope(ris [][]byte, alg asn1.ObjectIdentifier, params, ct, mac []byte) []byte {
	outer := OIDEnvelopedData
	if mac != nil {
		outer = OIDAuthEnvelopedData
	}
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(outer)
		b.AddASN1(tagCtx0, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(0)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					for _, ri := range ris {
						b.AddBytes(ri)
					}
				})
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(OIDData)
					addAlgID(b, alg, params)
					b.AddASN1(tagCtx0P, func(b *cryptobyte.Builder) { b.AddBytes(ct) })
				})
				if mac != nil {
					b.AddASN1OctetString(mac)
				}
			})
		})
	})
	return b.BytesOrPanic()
}

// gcmParams encodes GCMParameters (RFC 5084 §3.2); omitICV leaves the
// ICV length at its default (12).
func gcmParams(nonce []byte, icv int64, omitICV bool) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1OctetString(nonce)
		if !omitICV {
			b.AddASN1Int64(icv)
		}
	})
	return b.BytesOrPanic()
}

// sealGCM encrypts pt under cek with a nonce and tag of the given sizes
// and returns ciphertext and tag. Where Go's GCM cannot (an unusual nonce
// with a short tag, an empty nonce), the tag is random bytes.
func sealGCM(t *testing.T, cek, nonce []byte, tagLen int, pt []byte) (ct, tag []byte) {
	t.Helper()
	block, err := aes.NewCipher(cek)
	if err != nil {
		t.Fatal(err)
	}
	var gcm cipher.AEAD
	if len(nonce) == 12 {
		gcm, err = cipher.NewGCMWithTagSize(block, tagLen)
	} else {
		gcm, err = cipher.NewGCMWithNonceSize(block, len(nonce))
	}
	if err != nil || gcm.Overhead() != tagLen {
		tag = make([]byte, tagLen)
		_, _ = rand.Read(tag)
		return pt, tag
	}
	sealed := gcm.Seal(nil, nonce, pt, nil)
	return sealed[:len(pt)], sealed[len(pt):]
}

// TestHostileGCMParameters plays a sender who chooses the GCM nonce and
// ICV lengths: every combination either decrypts (what RFC 5084 allows and
// Go can check) or is refused with a GCMParamsError; none panics.
func TestHostileGCMParameters(t *testing.T) {
	s := makeSeeds(t)
	cek := make([]byte, 32)
	_, _ = rand.Read(cek)
	ri, _, err := recipientInfo(rand.Reader, Recipient{Cert: s.rsaCert}, cek)
	if err != nil {
		t.Fatal(err)
	}
	pt := []byte("attack at dawn")
	for _, tc := range []struct {
		name     string
		nonceLen int
		icv      int64
		omitICV  bool // ICV length absent: DEFAULT 12
		tagLen   int  // length of the MAC actually sent
		refused  bool // want a GCMParamsError, else the plaintext
	}{
		{"usual-12-16", 12, 16, false, 16, false},
		{"default-icv-12", 12, 0, true, 12, false},
		{"short-tag-13", 12, 13, false, 13, false},
		{"long-nonce-full-tag", 16, 16, false, 16, false},
		{"short-nonce-full-tag", 8, 16, false, 16, false},
		{"long-nonce-short-tag", 16, 12, false, 12, true},
		{"short-nonce-short-tag", 8, 14, false, 14, true},
		{"one-byte-nonce-short-tag", 1, 12, false, 12, true},
		{"empty-nonce", 0, 16, false, 16, true},
		{"huge-nonce", 4096, 16, false, 16, true},
		{"icv-too-short", 12, 11, false, 11, true},
		{"icv-too-long", 12, 17, false, 17, true},
		{"icv-negative", 12, -5, false, 12, true},
		{"icv-mac-mismatch", 12, 16, false, 12, true},
		{"icv-huge", 12, 1 << 40, false, 16, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nonce := make([]byte, tc.nonceLen)
			_, _ = rand.Read(nonce)
			sealTag := min(max(tc.tagLen, 12), 16)
			ct, tag := sealGCM(t, cek, nonce, sealTag, pt)
			der := forgedEnvelope([][]byte{ri}, OIDAES256GCM, gcmParams(nonce, tc.icv, tc.omitICV), ct, append(tag, 0, 0, 0, 0)[:tc.tagLen])
			env, err := ParseEnvelope(der)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			got, err := env.Decrypt(s.rsaCert, s.rsaKey)
			if !tc.refused {
				if err != nil || string(got) != string(pt) {
					t.Fatalf("want plaintext, got %q, %v", got, err)
				}
				return
			}
			var pe *GCMParamsError
			if !errors.As(err, &pe) {
				t.Fatalf("want *GCMParamsError, got %v", err)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("%v is neither ErrMalformed nor ErrUnsupported", err)
			}
		})
	}
}

// rawRSA encrypts m (left-padded to the modulus size) without padding:
// how an attacker makes a key transport with any padding they like.
func rawRSA(pub *rsa.PublicKey, m []byte) []byte {
	c := new(big.Int).Exp(new(big.Int).SetBytes(m), big.NewInt(int64(pub.E)), pub.N)
	return c.FillBytes(make([]byte, pub.Size()))
}

// keyTransRI is a KeyTransRecipientInfo for cert carrying ek as is.
func keyTransRI(cert *x509.Certificate, alg, ek []byte) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		b.AddBytes(IssuerAndSerial(cert))
		b.AddBytes(alg)
		b.AddASN1OctetString(ek)
	})
	return b.BytesOrPanic()
}

// TestRSAKeyTransportImplicitRejection plays Bleichenbacher/Marvin: forged
// key transports with broken PKCS#1 v1.5 (or OAEP) padding must fail
// exactly like a well-padded key that is simply wrong, same error value
// and text, for CBC and GCM content; so the decryptor is no padding oracle.
func TestRSAKeyTransportImplicitRejection(t *testing.T) {
	s := makeSeeds(t)
	pub := &s.rsaKey.PublicKey
	k := pub.Size()
	cek := make([]byte, 32)
	_, _ = rand.Read(cek)
	pt := []byte("the board meets at nine")

	cbcIV := make([]byte, aes.BlockSize)
	_, _ = rand.Read(cbcIV)
	var cbcCT bytes.Buffer
	block, _ := aes.NewCipher(cek)
	if err := encryptCBCStream(&cbcCT, cipher.NewCBCEncrypter(block, cbcIV), [][]byte{pt}); err != nil {
		t.Fatal(err)
	}
	gcmNonce := make([]byte, 12)
	_, _ = rand.Read(gcmNonce)
	gcmCT, gcmTag := sealGCM(t, cek, gcmNonce, 16, pt)
	ivDER, _ := asn1.Marshal(cbcIV)
	contents := map[string]func(ri []byte) []byte{
		"cbc": func(ri []byte) []byte { return forgedEnvelope([][]byte{ri}, OIDAES256CBC, ivDER, cbcCT.Bytes(), nil) },
		"gcm": func(ri []byte) []byte {
			return forgedEnvelope([][]byte{ri}, OIDAES256GCM, gcmParams(gcmNonce, 16, false), gcmCT, gcmTag)
		},
	}

	v15 := algIDBytes(OIDRSAEncryption, derNull)
	oaep := algIDBytes(OIDRSAOAEP, OAEPParamsSHA256())
	// padded builds 00 02 PS 00 key, with PS of nonzero bytes.
	padded := func(key []byte) []byte {
		m := make([]byte, k)
		m[1] = 2
		for i := 2; i < k-len(key)-1; i++ {
			m[i] = 0x5a
		}
		copy(m[k-len(key):], key)
		return m
	}
	withByte := func(m []byte, i int, b byte) []byte { m[i] = b; return m }
	wrongKey := make([]byte, 32)
	_, _ = rand.Read(wrongKey)
	//lint:ignore SA1019 the attacker's tool, not ours
	wrongKeyEK, err := rsa.EncryptPKCS1v15(rand.Reader, pub, wrongKey)
	if err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, k)
	_, _ = rand.Read(garbage)
	garbage[0] = 0 // below the modulus

	forgeries := []struct {
		name    string
		alg, ek []byte
	}{
		{"v15-random-block", v15, rawRSA(pub, garbage)},
		{"v15-type-1-block", v15, rawRSA(pub, withByte(padded(cek), 1, 1))},
		{"v15-first-byte-not-zero", v15, rawRSA(pub, withByte(padded(cek), 0, 1))},
		{"v15-no-separator", v15, rawRSA(pub, withByte(padded(nil), k-1, 0x5a))},
		{"v15-short-padding-string", v15, rawRSA(pub, withByte(padded(cek), 5, 0))},
		{"v15-16-byte-key-for-aes256", v15, rawRSA(pub, padded(cek[:16]))},
		{"v15-31-byte-key", v15, rawRSA(pub, padded(cek[1:]))},
		{"v15-33-byte-key", v15, rawRSA(pub, padded(append([]byte{7}, cek...)))},
		{"oaep-random-block", oaep, rawRSA(pub, garbage)},
		{"oaep-v15-padded", oaep, rawRSA(pub, padded(cek))},
	}
	keys := map[string]crypto.PrivateKey{"rsa.PrivateKey": s.rsaKey, "key-held-elsewhere": opaqueDecrypter{s.rsaKey}}
	for keyName, key := range keys {
		for content, envelope := range contents {
			// The reference: well formed, just the wrong key.
			ref, err := ParseEnvelope(envelope(keyTransRI(s.rsaCert, v15, wrongKeyEK)))
			if err != nil {
				t.Fatal(err)
			}
			_, refErr := ref.Decrypt(s.rsaCert, key)
			if !errors.Is(refErr, ErrDecrypt) {
				t.Fatalf("%s: wrong key gave %v", content, refErr)
			}
			// And the genuine key opens it, so the forgeries differ only in the key transport.
			good, _ := ParseEnvelope(envelope(keyTransRI(s.rsaCert, v15, rawRSA(pub, padded(cek)))))
			if got, err := good.Decrypt(s.rsaCert, key); err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("%s: genuine envelope: %q %v", content, got, err)
			}
			for _, f := range forgeries {
				t.Run(keyName+"/"+content+"/"+f.name, func(t *testing.T) {
					env, err := ParseEnvelope(envelope(keyTransRI(s.rsaCert, f.alg, f.ek)))
					if err != nil {
						t.Fatal(err)
					}
					got, err := env.Decrypt(s.rsaCert, key)
					if err == nil {
						// CBC without a MAC: a random key passes the padding check
						// about once in 256, with garbage out. Never the plaintext.
						if content == "cbc" && !bytes.Equal(got, pt) {
							return
						}
						t.Fatalf("forged key transport decrypted to %q", got)
					}
					if err != refErr || err.Error() != refErr.Error() {
						t.Fatalf("forged padding: %T %q; wrong key: %T %q", err, err, refErr, refErr)
					}
				})
			}
		}
	}
}

// opaqueDecrypter hides the *rsa.PrivateKey type, as an HSM or agent
// does: only crypto.Decrypter is left.
type opaqueDecrypter struct{ k *rsa.PrivateKey }

func (o opaqueDecrypter) Public() crypto.PublicKey { return o.k.Public() }
func (o opaqueDecrypter) Decrypt(r io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	return o.k.Decrypt(r, msg, opts)
}

// TestRejectionKeyIsDeterministic: the same forged key transport always
// meets the same substitute key (a repeated query learns nothing), a
// different one another, and another private key another.
func TestRejectionKeyIsDeterministic(t *testing.T) {
	s := makeSeeds(t)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ekA := rawRSA(&s.rsaKey.PublicKey, []byte{1, 2, 3})
	ekB := rawRSA(&s.rsaKey.PublicKey, []byte{1, 2, 4})
	ri := func(ek []byte) *RecipientInfo {
		return &RecipientInfo{Kind: KindKeyTrans, KeyAlg: OIDRSAEncryption, EncryptedKey: ek}
	}
	unwrap := func(key *rsa.PrivateKey, ek []byte) []byte {
		t.Helper()
		cek, err := unwrapKeyTrans(ri(ek), key, 32)
		if err != nil || len(cek) != 32 {
			t.Fatalf("unwrap: %x %v", cek, err)
		}
		return cek
	}
	first := unwrap(s.rsaKey, ekA)
	for _, c := range []struct {
		name string
		cek  []byte
		same bool
	}{
		{"same-ciphertext-again", unwrap(s.rsaKey, ekA), true},
		{"other-ciphertext", unwrap(s.rsaKey, ekB), false},
		{"other-private-key", rejectionKey(other, ekA, 32), false},
	} {
		if bytes.Equal(first, c.cek) != c.same {
			t.Errorf("%s: same=%v, want %v", c.name, !c.same, c.same)
		}
	}
}
