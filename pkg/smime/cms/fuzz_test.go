package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// loadIdentity reads a test key and certificate made once by openssl
// (testdata/fuzz-*.pem). Fixed keys let the stored fuzz corpus hold
// envelopes that really are for them, so mutations reach the content
// decryption instead of stopping at a recipient mismatch.
func loadIdentity(t testing.TB, name string) (crypto.PrivateKey, *x509.Certificate) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var key crypto.PrivateKey
	var cert *x509.Certificate
	for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
		switch blk.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "CERTIFICATE":
			cert, err = x509.ParseCertificate(blk.Bytes)
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if key == nil || cert == nil {
		t.Fatalf("%s: want a PRIVATE KEY and a CERTIFICATE", name)
	}
	return key, cert
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
	rsaKey, rsaCert := loadIdentity(t, "fuzz-rsa.pem")
	ecKey, ecCert := loadIdentity(t, "fuzz-ec.pem")
	s.rsaKey, s.rsaCert = rsaKey.(*rsa.PrivateKey), rsaCert
	s.ecKey, s.ecCert = ecKey.(*ecdsa.PrivateKey), ecCert
	var err error
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

// FuzzParseEnvelope runs hostile envelopes through parsing and decryption
// with the fixed test keys; testdata/fuzz/FuzzParseEnvelope holds openssl
// output (BER streams, GCM, OAEP, 3DES, ECDH) and forged envelopes (odd
// GCM parameters, bad padding, empty recipient infos, huge lengths). The
// oracle: no panic, only typed errors, and the same outcome twice (RSA
// implicit rejection is deterministic, so repeating a query tells nothing).
func FuzzParseEnvelope(f *testing.F) {
	s := makeSeeds(f)
	for _, b := range [][]byte{s.enveloped, s.authEnveloped, s.kari} {
		f.Add(b)
	}
	ids := []struct {
		cert *x509.Certificate
		key  crypto.PrivateKey
	}{{s.rsaCert, s.rsaKey}, {s.ecCert, s.ecKey}}
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := ParseEnvelope(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("untyped parse error: %v", err)
			}
			return
		}
		for _, id := range ids {
			pt, err := env.Decrypt(id.cert, id.key)
			again, errAgain := env.Decrypt(id.cert, id.key)
			if !bytes.Equal(pt, again) || fmt.Sprint(err) != fmt.Sprint(errAgain) {
				t.Fatalf("two decryptions differ: %q %v / %q %v", pt, err, again, errAgain)
			}
			if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) &&
				!errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrNotRecipient) {
				t.Fatalf("untyped decrypt error: %v", err)
			}
		}
	})
}

// TestStoredOpenSSLSeedsDecrypt: the openssl-made envelopes in the fuzz
// corpus open with the fixed test keys, so the fuzzer starts from input
// that reaches the content decryption (and we still read openssl's BER
// streams, GCM, OAEP, 3DES and ECDH).
func TestStoredOpenSSLSeedsDecrypt(t *testing.T) {
	s := makeSeeds(t)
	for _, c := range []struct {
		seed string
		cert *x509.Certificate
		key  crypto.PrivateKey
	}{
		{"openssl-ber-cbc", s.rsaCert, s.rsaKey},
		{"openssl-gcm", s.rsaCert, s.rsaKey},
		{"openssl-oaep", s.rsaCert, s.rsaKey},
		{"openssl-3des", s.rsaCert, s.rsaKey},
		{"openssl-ecdh-ber-gcm", s.ecCert, s.ecKey},
		{"openssl-ecdh-sha1kdf", s.ecCert, s.ecKey},
	} {
		t.Run(c.seed, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzParseEnvelope", c.seed))
			if err != nil {
				t.Fatal(err)
			}
			quoted, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "go test fuzz v1\n[]byte(")
			der, err := strconv.Unquote(strings.TrimSuffix(quoted, ")"))
			if !ok || err != nil {
				t.Fatalf("not a fuzz corpus entry: %v", err)
			}
			env, err := ParseEnvelope([]byte(der))
			if err != nil {
				t.Fatal(err)
			}
			if pt, err := env.Decrypt(c.cert, c.key); err != nil || string(pt) != "hello world\n" {
				t.Fatalf("got %q, %v", pt, err)
			}
		})
	}
}
