package smime

import (
	"bytes"
	"crypto/x509"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func TestVerifyFailuresAreTyped(t *testing.T) {
	f := newFixture(t)
	server := f.pki.Issue(t, "alice@example.org", testpeer.IssueOptions{EKU: "serverAuth"})
	signed, err := Sign([]byte(plainMsg), f.alice.Key, f.chain(f.alice), nil)
	if err != nil {
		t.Fatal(err)
	}
	wrongEKU, err := Sign([]byte(plainMsg), server.Key, f.chain(server), nil)
	if err != nil {
		t.Fatal(err)
	}
	otherPKI := testpeer.NewPKI(t)
	otherRoots := x509.NewCertPool()
	otherRoots.AddCert(otherPKI.Root)
	// Flip one letter of the signed body: "attached" -> "attacked".
	tamperedBody := bytes.Replace(signed, []byte("attached"), []byte("attacked"), 1)
	// Flip one byte inside the signature value (its last base64 line).
	tamperedSig := tamperSignature(t, signed)
	cases := []struct {
		name string
		msg  []byte
		opts VerifyOptions
		want error
	}{
		{"good", signed, VerifyOptions{Roots: f.roots}, nil},
		{"body-byte", tamperedBody, VerifyOptions{Roots: f.roots}, ErrBadSignature},
		{"signature-byte", tamperedSig, VerifyOptions{Roots: f.roots}, ErrBadSignature},
		{"unknown-root", signed, VerifyOptions{Roots: otherRoots}, ErrUntrusted},
		{"expired", signed, VerifyOptions{Roots: f.roots, CurrentTime: time.Now().AddDate(3, 0, 0)}, ErrExpired},
		{"not-yet-valid", signed, VerifyOptions{Roots: f.roots, CurrentTime: time.Now().AddDate(-1, 0, 0)}, ErrExpired},
		{"server-eku", wrongEKU, VerifyOptions{Roots: f.roots}, ErrKeyUsage},
		{"from-mismatch", signed, VerifyOptions{Roots: f.roots, From: "mallory@example.org"}, ErrSignerMismatch},
		{"from-check-skipped", signed, VerifyOptions{Roots: f.roots, From: "mallory@example.org", SkipFromCheck: true}, nil},
		{"not-signed", []byte(plainMsg), VerifyOptions{Roots: f.roots}, ErrNotSigned},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Verify(tc.msg, tc.opts)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
				if !bytes.Contains(v.Message, []byte("Subject: Quarterly numbers")) {
					t.Errorf("unwrapped message lost its headers")
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("want %v, got %v", tc.want, err)
			}
		})
	}
}

// tamperSignature changes one byte of the signature value inside the
// CMS, keeping the structure parseable.
func tamperSignature(t *testing.T, signed []byte) []byte {
	t.Helper()
	_, _, der, err := signedParts(signed)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), der...)
	bad[len(bad)-10] ^= 0x01 // the signature OCTET STRING ends the DER
	marker := []byte("S/MIME Cryptographic Signature\r\n\r\n")
	i := bytes.Index(signed, marker)
	j := bytes.LastIndex(signed, []byte("\r\n--"))
	if i < 0 || j < 0 {
		t.Fatal("signature part not found")
	}
	out := append([]byte(nil), signed[:i+len(marker)]...)
	out = appendBase64Lines(out, bad)
	return append(out, signed[j:]...)
}

func TestDecryptFailuresAreTyped(t *testing.T) {
	f := newFixture(t)
	forBob, err := Encrypt([]byte(plainMsg), []Recipient{{Cert: f.bob.Cert}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := Encrypt([]byte(plainMsg), []Recipient{{Cert: f.bob.Cert}}, &EncryptOptions{GCM: Force})
	if err != nil {
		t.Fatal(err)
	}
	forEC, err := Encrypt([]byte(plainMsg), []Recipient{{Cert: f.ec.Cert}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	otherEC := f.pki.Issue(t, "erin@example.org", testpeer.IssueOptions{KeyType: "p256"})
	cases := []struct {
		name string
		msg  []byte
		id   *testpeer.Identity
		key  any
		want error
	}{
		{"good", forBob, f.bob, f.bob.Key, nil},
		{"not-a-recipient", forBob, f.carol, f.carol.Key, ErrNotRecipient},
		{"wrong-rsa-key", forBob, f.bob, f.carol.Key, ErrDecrypt},
		{"wrong-ec-key", forEC, f.ec, otherEC.Key, ErrDecrypt},
		{"gcm-ciphertext-byte", tamperCiphertext(t, gcm, 40), f.bob, f.bob.Key, ErrDecrypt},
		{"gcm-tag-byte", tamperCiphertext(t, gcm, 5), f.bob, f.bob.Key, ErrDecrypt},
		{"cbc-last-block", tamperCiphertext(t, forBob, 3), f.bob, f.bob.Key, ErrDecrypt},
		{"not-encrypted", []byte(plainMsg), f.bob, f.bob.Key, ErrNotEncrypted},
		{"truncated", forBob[:len(forBob)/2], f.bob, f.bob.Key, ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Decrypt(tc.msg, tc.id.Cert, tc.key)
			if tc.want == nil {
				if err != nil || !bytes.Contains(out, []byte("the numbers are attached")) {
					t.Fatalf("want success, got %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("want %v, got %v", tc.want, err)
			}
		})
	}
}

// tamperCiphertext flips a byte fromEnd bytes before the end of the CMS
// (inside the ciphertext or, for GCM, the tag) and re-wraps it.
func tamperCiphertext(t *testing.T, msg []byte, fromEnd int) []byte {
	t.Helper()
	fields, body := splitMessage(msg)
	der, err := cmsBody(fields, body)
	if err != nil {
		t.Fatal(err)
	}
	der[len(der)-fromEnd] ^= 0x80
	head := msg[:len(msg)-len(body)]
	return appendBase64Lines(append([]byte(nil), head...), der)
}

// A signature inside an envelope and an envelope inside a signature both
// unwrap, and openssl reads our sign-then-encrypt.
func TestNested(t *testing.T) {
	f := newFixture(t)
	signed, err := Sign([]byte(plainMsg), f.alice.Key, f.chain(f.alice), nil)
	if err != nil {
		t.Fatal(err)
	}
	signedEnc, err := Encrypt(signed, []Recipient{{Cert: f.bob.Cert}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("openssl-decrypt-then-verify", func(t *testing.T) {
		inner := f.opensslDecrypt(t, signedEnc, f.bob)
		out := f.opensslVerify(t, inner)
		if !strings.Contains(string(out), "attached") {
			t.Errorf("openssl content:\n%s", out)
		}
	})
	t.Run("signed-inside-encrypted", func(t *testing.T) {
		if Classify(signedEnc) != KindEnveloped {
			t.Fatalf("outer kind %v", Classify(signedEnc))
		}
		dec, err := Decrypt(signedEnc, f.bob.Cert, f.bob.Key)
		if err != nil {
			t.Fatal(err)
		}
		if Classify(dec) != KindSigned {
			t.Fatalf("inner kind %v", Classify(dec))
		}
		v, err := Verify(dec, VerifyOptions{Roots: f.roots})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(v.Message, []byte("Subject: Quarterly numbers")) {
			t.Errorf("lost headers")
		}
	})
	t.Run("encrypted-inside-signed", func(t *testing.T) {
		enc, err := Encrypt([]byte(plainMsg), []Recipient{{Cert: f.bob.Cert}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		encSigned, err := Sign(enc, f.alice.Key, f.chain(f.alice), nil)
		if err != nil {
			t.Fatal(err)
		}
		f.opensslVerify(t, encSigned)
		v, err := Verify(encSigned, VerifyOptions{Roots: f.roots})
		if err != nil {
			t.Fatal(err)
		}
		if Classify(v.Message) != KindEnveloped {
			t.Fatalf("inner kind %v", Classify(v.Message))
		}
		dec, err := Decrypt(v.Message, f.bob.Cert, f.bob.Key)
		if err != nil || !bytes.Contains(dec, []byte("the numbers are attached")) {
			t.Fatalf("decrypt inner: %v", err)
		}
	})
	t.Run("refuses-double", func(t *testing.T) {
		opaque := testpeer.MustRun(t, nil, "openssl", "cms", "-sign", "-nodetach", "-in", f.file(t, "plain.eml", []byte(plainMsg)),
			"-signer", f.alice.CertFile, "-inkey", f.alice.KeyFile, "-md", "sha256")
		for _, tc := range []struct {
			name string
			do   func() error
			want error
		}{
			{"sign-signed", func() error { _, err := Sign(signed, f.alice.Key, f.chain(f.alice), nil); return err }, ErrAlreadySigned},
			{"sign-opaque-signed", func() error { _, err := Sign(opaque, f.alice.Key, f.chain(f.alice), nil); return err }, ErrAlreadySigned},
			{"encrypt-enveloped", func() error { _, err := Encrypt(signedEnc, []Recipient{{Cert: f.bob.Cert}}, nil); return err }, ErrAlreadyEncrypted},
		} {
			if err := tc.do(); !errors.Is(err, tc.want) {
				t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
			}
		}
	})
}

// The signed bytes must survive what relays do: a Unix MTA storing with
// LF and sending with CRLF again, and 7bit transport.
func TestSignedSurvivesRelay(t *testing.T) {
	f := newFixture(t)
	for name, msg := range map[string]string{"8bit-text": plainMsg, "multipart-binary": multipartMsg} {
		t.Run(name, func(t *testing.T) {
			signed, err := Sign([]byte(msg), f.alice.Key, f.chain(f.alice), nil)
			if err != nil {
				t.Fatal(err)
			}
			if needsEncoding(signed) {
				t.Fatal("signed message is not 7bit-safe")
			}
			relayed := bytes.ReplaceAll(signed, []byte("\r\n"), []byte("\n"))
			f.opensslVerify(t, relayed)
			if _, err := Verify(relayed, VerifyOptions{Roots: f.roots}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		ct   string
		want Kind
	}{
		{"text/plain", KindNone},
		{"multipart/mixed; boundary=x", KindNone},
		{"multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=x", KindSigned},
		{"multipart/signed; protocol=\"application/x-pkcs7-signature\"; boundary=x", KindSigned},
		{"multipart/signed; protocol=\"application/pgp-signature\"; boundary=x", KindNone},
		{"application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m", KindEnveloped},
		{"application/x-pkcs7-mime; name=smime.p7m", KindEnveloped},
		{"application/pkcs7-mime; smime-type=authEnveloped-data", KindAuthEnveloped},
		{"application/pkcs7-mime; smime-type=signed-data", KindOpaqueSigned},
		{"application/pkcs7-mime; smime-type=certs-only", KindCertsOnly},
	}
	for _, tc := range cases {
		msg := "From: a@b\r\nContent-Type: " + tc.ct + "\r\n\r\nbody\r\n"
		if got := Classify([]byte(msg)); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.ct, got, tc.want)
		}
		if IsSMIME([]byte(msg)) != (tc.want != KindNone) {
			t.Errorf("%s: IsSMIME wrong", tc.ct)
		}
	}
}

var b64Block = regexp.MustCompile(`(?m)(\r\n\r\n)([A-Za-z0-9+/=]{20,}\r\n)+`)

// Golden: the MIME structure of our signed and encrypted output, with the
// base64 blobs (which differ per key, time and randomness) elided.
func TestGoldenStructure(t *testing.T) {
	f := newFixture(t)
	when := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ name, msg string }{{"signed-plain", plainMsg}, {"signed-multipart", multipartMsg}} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Sign([]byte(tc.msg), f.alice.Key, f.chain(f.alice), &SignOptions{SigningTime: when, Boundary: "golden-boundary"})
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tc.name, b64Block.ReplaceAll(out, []byte("$1<base64 CMS>\r\n")))
		})
	}
	t.Run("enveloped", func(t *testing.T) {
		out, err := Encrypt([]byte(plainMsg), []Recipient{{Cert: f.bob.Cert}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkGolden(t, "enveloped", b64Block.ReplaceAll(out, []byte("$1<base64 CMS>\r\n")))
	})
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden file:\n--- got ---\n%s\n--- want ---\n%s", name, got, want)
	}
}
