package smime

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
	"encoding/base64"
	"fmt"
	"math/big"
	"testing"
	"time"
)

func benchCert(b *testing.B, key crypto.Signer, email string) *x509.Certificate {
	b.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:   big.NewInt(42),
		Subject:        pkix.Name{CommonName: email},
		NotBefore:      time.Now().Add(-time.Hour),
		NotAfter:       time.Now().Add(time.Hour),
		EmailAddresses: []string{email},
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		b.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// benchMessage is what Exchange relays: CRLF, a short text part and a
// base64 attachment, size bytes in total (about).
func benchMessage(size int) []byte {
	var m bytes.Buffer
	m.WriteString("From: alice@example.org\r\nTo: bob@partner.test\r\nSubject: bench\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" +
		"Please find the file attached.\r\n--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"report.pdf\"\r\n\r\n")
	raw := make([]byte, (size-m.Len()-16)*3/4*76/78)
	rand.Read(raw)
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 0 {
		n := min(76, len(enc))
		m.WriteString(enc[:n] + "\r\n")
		enc = enc[n:]
	}
	m.WriteString("--b1--\r\n")
	return m.Bytes()
}

// BenchmarkSignEncrypt is the gateway's hot path: sign with the sender's
// key, then encrypt to one recipient of the same key type.
func BenchmarkSignEncrypt(b *testing.B) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaRecip, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecRecip, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys := []struct {
		name        string
		signer      crypto.Signer
		cert, recip *x509.Certificate
	}{
		{"RSA-2048", rsaKey, benchCert(b, rsaKey, "alice@example.org"), benchCert(b, rsaRecip, "bob@partner.test")},
		{"P-256", ecKey, benchCert(b, ecKey, "alice@example.org"), benchCert(b, ecRecip, "bob@partner.test")},
	}
	for _, size := range []int{10 << 10, 1 << 20, 25 << 20} {
		msg := benchMessage(size)
		for _, k := range keys {
			b.Run(fmt.Sprintf("%s/%s", k.name, sizeName(size)), func(b *testing.B) {
				b.SetBytes(int64(len(msg)))
				b.ReportAllocs()
				for b.Loop() {
					signed, err := Sign(msg, k.signer, []*x509.Certificate{k.cert}, nil)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := Encrypt(signed, []Recipient{{Cert: k.recip}}, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkRSA2048SignBaseline is a bare RSA-2048 PKCS#1 v1.5 signature
// over a SHA-256 digest: the floor the 10 KB sign+encrypt is compared to.
func BenchmarkRSA2048SignBaseline(b *testing.B) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	d := sha256.Sum256([]byte("baseline"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, d[:]); err != nil {
			b.Fatal(err)
		}
	}
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMB", n>>20)
	}
	return fmt.Sprintf("%dKB", n>>10)
}
