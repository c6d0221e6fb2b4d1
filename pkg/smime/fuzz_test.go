package smime

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
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

// signCanonicalSeeds are the edge cases FuzzSignCanonical starts from,
// with the error Sign documents for them (nil: it must sign);
// TestSignCanonicalSeedsOpenSSL has openssl judge every one of them.
var signCanonicalSeeds = []struct {
	name    string
	msg     string
	wantErr error
}{
	{"plain-lf-8bit-from-line", plainMsg, nil},
	{"multipart-8bit-binary", multipartMsg, nil},
	{"empty", "", nil},
	{"lone-lf", "\n", nil},
	{"text-without-header", "no headers at all", ErrMalformed},
	{"multipart-lf-no-final-newline", "Content-Type: multipart/mixed; boundary=x\n\n--x\n\nA\n--x--", nil},
	{"rfc822-8bit", "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\nSubject: inner\r\n\r\n\xe4\r\n", nil},
	{"trailing-whitespace-only", "Subject: t\r\n\r\nspace at the end \r\ntab at the end\t\r\n", nil},
	{"trailing-space-and-from", "Subject: x\r\n\r\nline with trailing space \r\nFrom me\r\n", nil},
	{"from-first-trailing-tab", "Content-Type: text/plain; charset=utf-8\n\nFrom the start\t\n", nil},
	{"bare-cr-and-nul", "Content-Type: text/plain\r\n\r\na\rb\x00c\r\n", nil},
	{"line-over-998", "Subject: long\r\n\r\n" + strings.Repeat("x", 1200) + "\r\n", nil},
	{"binary-attachment-long-line", "Content-Type: application/octet-stream\r\n\r\n" + strings.Repeat("\x01\r", 600) + "\r\n", nil},
	{"body-only-after-empty-line", "\r\nFrom the first line\r\n", nil},
	{"already-signed", "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=s\r\n\r\n--s\r\n\r\nx\r\n--s--\r\n", ErrAlreadySigned},
	{"boundary-collision", "Subject: b\r\n\r\n--" + fuzzBoundary + "\r\n", ErrBoundaryCollision},
}

// fuzzBoundary is the fixed boundary FuzzSignCanonical signs with, so
// that the fuzzer can make it collide.
const fuzzBoundary = "fuzz-boundary-\x01"

// Whatever message we are given, Sign either refuses it for one of its
// documented reasons (already signed, boundary collision, a header line
// that is not a field), under exactly
// those conditions, or emits something that verifies: this is the
// canonicalisation property (the signed bytes are exactly what a receiver
// hashes), including after a CRLF->LF relay. The seeds are also verified
// by openssl in TestSignCanonicalSeedsOpenSSL.
func FuzzSignCanonical(f *testing.F) {
	key, cert, pool := goIdentity(f, "alice@example.org")
	for _, seed := range signCanonicalSeeds {
		f.Add([]byte(seed.msg))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		out, err := Sign(msg, key, []*x509.Certificate{cert}, &SignOptions{Boundary: fuzzBoundary})
		switch kind := Classify(msg); {
		case kind == KindSigned || kind == KindOpaqueSigned:
			if !errors.Is(err, ErrAlreadySigned) {
				t.Fatalf("signing a %s message: want ErrAlreadySigned, got %v\n%q", kind, err, msg)
			}
			return
		case bytes.Contains(msg, []byte(fuzzBoundary)):
			if !errors.Is(err, ErrBoundaryCollision) {
				t.Fatalf("message contains the boundary: want ErrBoundaryCollision, got %v\n%q", err, msg)
			}
			return
		case headerHasNonField(msg):
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("header has a line that is not a field: want ErrMalformed, got %v\n%q", err, msg)
			}
			return
		case err != nil:
			t.Fatalf("Sign refused a message it must sign: %v\n%q", err, msg)
		}
		if _, err := Verify(out, VerifyOptions{Roots: pool, SkipFromCheck: true}); err != nil {
			t.Fatalf("own signature does not verify: %v\n%q", err, out)
		}
	})
}

// headerHasNonField is the fuzz oracle for Sign's ErrMalformed, written
// apart from checkFields: whether a line before the first empty one is
// neither "name:" (name of printable ASCII, no space; spaces or tabs may
// precede the colon) nor a folded line after such a field.
func headerHasNonField(msg []byte) bool {
	inField := false
	for line := range bytes.Lines(msg) {
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if len(line) == 0 {
			return false
		}
		if line[0] == ' ' || line[0] == '\t' {
			if !inField {
				return true
			}
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return true
		}
		name := strings.TrimRight(string(line[:colon]), " \t")
		if name == "" || strings.IndexFunc(name, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
			return true
		}
		inField = true
	}
	return false
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
