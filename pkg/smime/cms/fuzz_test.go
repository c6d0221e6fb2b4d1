package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// selfSigned makes a throwaway certificate for seeding fuzz corpora;
// interop is tested against openssl-made certificates elsewhere.
func selfSigned(t testing.TB, key crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:   big.NewInt(7),
		Subject:        pkix.Name{CommonName: "fuzz"},
		NotBefore:      time.Now().Add(-time.Hour),
		NotAfter:       time.Now().Add(time.Hour),
		EmailAddresses: []string{"fuzz@example.org"},
		SubjectKeyId:   []byte{1, 2, 3, 4},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type seeds struct {
	signed, enveloped, authEnveloped, kari []byte
	rsaKey                                 *rsa.PrivateKey
	rsaCert                                *x509.Certificate
	ecKey                                  *ecdsa.PrivateKey
	ecCert                                 *x509.Certificate
}

func makeSeeds(t testing.TB) *seeds {
	s := &seeds{}
	var err error
	if s.rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if s.ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	s.rsaCert, s.ecCert = selfSigned(t, s.rsaKey), selfSigned(t, s.ecKey)
	d := sha256.Sum256([]byte("content"))
	if s.signed, err = SignDetached(d[:], SignerConfig{Signer: s.ecKey, Cert: s.ecCert}); err != nil {
		t.Fatal(err)
	}
	enc := func(cfg EnvelopeConfig) []byte {
		var b bytes.Buffer
		if err := Encrypt(&b, cfg, []byte("hello "), []byte("world")); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	s.enveloped = enc(EnvelopeConfig{Recipients: []Recipient{{Cert: s.rsaCert}, {Cert: s.rsaCert, UseSKI: true, OAEP: true}}})
	s.authEnveloped = enc(EnvelopeConfig{Recipients: []Recipient{{Cert: s.rsaCert}}, Cipher: AES256GCM})
	s.kari = enc(EnvelopeConfig{Recipients: []Recipient{{Cert: s.ecCert}, {Cert: s.ecCert, UseSKI: true}}})
	return s
}

func TestRoundTripAllEnvelopes(t *testing.T) {
	s := makeSeeds(t)
	for name, c := range map[string]struct {
		der  []byte
		cert *x509.Certificate
		key  crypto.PrivateKey
	}{
		"enveloped": {s.enveloped, s.rsaCert, s.rsaKey},
		"auth":      {s.authEnveloped, s.rsaCert, s.rsaKey},
		"kari":      {s.kari, s.ecCert, s.ecKey},
	} {
		env, err := ParseEnvelope(c.der)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		pt, err := env.Decrypt(c.cert, c.key)
		if err != nil || string(pt) != "hello world" {
			t.Fatalf("%s: %q %v", name, pt, err)
		}
	}
	sd, err := ParseSignedData(s.signed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sd.VerifySigner(&sd.Signers[0], []byte("content")); err != nil {
		t.Fatal(err)
	}
	if _, err := sd.VerifySigner(&sd.Signers[0], []byte("c0ntent")); err == nil {
		t.Fatal("altered content verified")
	}
}

func TestAESKeyWrapRFC3394Vector(t *testing.T) {
	// RFC 3394 §4.6: 256-bit KEK, 256-bit key data.
	kek := mustHex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
	key := mustHex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
	want := mustHex("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21")
	got, err := aesWrap(kek, key)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("wrap = %X, %v", got, err)
	}
	back, err := aesUnwrap(kek, got)
	if err != nil || !bytes.Equal(back, key) {
		t.Fatalf("unwrap = %X, %v", back, err)
	}
	got[3] ^= 1
	if _, err := aesUnwrap(kek, got); err == nil {
		t.Fatal("tampered wrap accepted")
	}
}

func mustHex(s string) []byte {
	b := make([]byte, len(s)/2)
	for i := range b {
		var v byte
		for _, c := range s[2*i : 2*i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			default:
				v |= byte(c-'A') + 10
			}
		}
		b[i] = v
	}
	return b
}

func TestNormalizeBERIndefinite(t *testing.T) {
	// SEQUENCE (indefinite) { OCTET STRING constructed (indefinite) { "ab", "c" } }
	ber := []byte{0x30, 0x80, 0x24, 0x80, 0x04, 0x02, 'a', 'b', 0x04, 0x01, 'c', 0x00, 0x00, 0x00, 0x00}
	want := []byte{0x30, 0x05, 0x04, 0x03, 'a', 'b', 'c'}
	got, err := NormalizeBER(ber)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("got % x, %v", got, err)
	}
	der := []byte{0x30, 0x03, 0x02, 0x01, 0x05}
	if got, _ := NormalizeBER(der); &got[0] != &der[0] {
		t.Error("DER input was copied")
	}
}

func FuzzNormalizeBER(f *testing.F) {
	s := makeSeeds(f)
	for _, b := range [][]byte{s.signed, s.enveloped, s.kari, {0x30, 0x80, 0x24, 0x80, 0x04, 0x01, 'a', 0, 0, 0, 0}} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := NormalizeBER(b)
		if err != nil {
			return
		}
		// DER output must be stable.
		again, err := NormalizeBER(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %v", err)
		}
	})
}

func FuzzParseSignedData(f *testing.F) {
	s := makeSeeds(f)
	f.Add(s.signed)
	f.Add(s.enveloped)
	f.Fuzz(func(t *testing.T, b []byte) {
		sd, err := ParseSignedData(b)
		if err != nil {
			return
		}
		for i := range sd.Signers {
			sd.VerifySigner(&sd.Signers[i], []byte("content"))
			sd.Signers[i].SigningTime()
		}
	})
}

func FuzzParseEnvelope(f *testing.F) {
	s := makeSeeds(f)
	for _, b := range [][]byte{s.enveloped, s.authEnveloped, s.kari} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := ParseEnvelope(b)
		if err != nil {
			return
		}
		env.Decrypt(s.rsaCert, s.rsaKey)
		env.Decrypt(s.ecCert, s.ecKey)
	})
}
