package smime

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/smime/cms"
)

// goIdentity is a self-signed P-256 identity made in Go for fuzzing, where
// starting openssl per worker would be too slow; interop is proven with
// openssl-made certificates in the peer tests.
func goIdentity(t testing.TB, email string) (*ecdsa.PrivateKey, *x509.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(99),
		Subject:               pkix.Name{CommonName: email},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		EmailAddresses:        []string{email},
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return key, cert, pool
}

// Whatever message we are given, what Sign emits must verify: this is
// the canonicalisation property (the signed bytes are exactly what a
// receiver hashes), including after a CRLF->LF relay.
func FuzzSignCanonical(f *testing.F) {
	key, cert, pool := goIdentity(f, "alice@example.org")
	for _, s := range []string{plainMsg, multipartMsg, "", "\n", "no headers at all", "Content-Type: multipart/mixed; boundary=x\n\n--x\n\nA\n--x--",
		"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\nSubject: inner\r\n\r\n\xe4\r\n", "Subject: x\r\n\r\nline with trailing space \r\nFrom me\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		if IsSMIME(msg) {
			return
		}
		out, err := Sign(msg, key, []*x509.Certificate{cert}, &SignOptions{Boundary: "fuzz-boundary-\x01"})
		if err != nil {
			return // boundary collision is the only expected refusal
		}
		if _, err := Verify(out, VerifyOptions{Roots: pool, SkipFromCheck: true}); err != nil {
			t.Fatalf("own signature does not verify: %v\n%q", err, out)
		}
	})
}

func FuzzVerify(f *testing.F) {
	key, cert, pool := goIdentity(f, "alice@example.org")
	signed, err := Sign([]byte(plainMsg), key, []*x509.Certificate{cert}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Add([]byte("Content-Type: application/pkcs7-mime; smime-type=signed-data\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		Verify(msg, VerifyOptions{Roots: pool})
		SignerInfo(msg)
	})
}

func FuzzDecrypt(f *testing.F) {
	key, cert, _ := goIdentity(f, "bob@example.org")
	enc, err := Encrypt([]byte(plainMsg), []Recipient{{Cert: cert}}, nil)
	if err != nil {
		f.Fatal(err)
	}
	gcm, err := Encrypt([]byte(plainMsg), []Recipient{{Cert: cert, UseSKI: true}}, &EncryptOptions{GCM: Force})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add(gcm)
	f.Fuzz(func(t *testing.T, msg []byte) {
		Decrypt(msg, cert, key)
	})
}

func FuzzParseCapabilities(f *testing.F) {
	f.Add(DefaultCapabilities().Marshal())
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		caps, err := ParseCapabilities(der)
		if err != nil {
			return
		}
		again, err := ParseCapabilities(caps.Marshal())
		if err != nil || len(again) != len(caps) {
			t.Fatalf("re-marshal changed the list: %v", err)
		}
	})
}

// FuzzProve: no panic on any body, and nothing is proven enveloped unless
// the envelope parses with recipients and a ciphertext (the pipeline passes
// such messages through as they are).
func FuzzProve(f *testing.F) {
	_, cert, _ := goIdentity(f, "bob@example.org")
	enc, err := Encrypt([]byte(plainMsg), []Recipient{{Cert: cert}}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add([]byte("Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nplain\r\n"))
	f.Add([]byte("Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b\r\nContent-Type: application/pkcs7-signature\r\n\r\nMIIB\r\n--b--\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		fields, body := splitMessage(msg)
		mt, params := mediaType(fields)
		cte := strings.ToLower(headerValue(fields, "content-transfer-encoding"))
		switch Prove(mt, params, cte, body) {
		case KindEnveloped, KindAuthEnveloped:
			der, ok := provenDER(cte, body)
			if !ok {
				t.Fatal("proven enveloped without a CMS body")
			}
			env, err := cms.ParseEnvelope(der)
			if err != nil || len(env.Recipients) == 0 || len(env.Ciphertext) == 0 {
				t.Fatalf("proven enveloped: %v", err)
			}
		}
	})
}
