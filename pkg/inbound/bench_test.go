package inbound

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/pkg/smime"
)

// A 10 KB text message from alice to bob.
func benchMessage() []byte {
	line := "The quarterly figures are in the attached table, please check them.\r\n"
	body := strings.Repeat(line, 10240/len(line))
	return []byte("From: alice@partner.example\r\nTo: bob@example.org\r\nSubject: figures\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + body)
}

// BenchmarkOutboundSignEncrypt is the outbound work for one 10 KB
// message: sign (RSA 2048, SHA-256) and encrypt (AES-256-CBC, RSA v1.5).
func BenchmarkOutboundSignEncrypt(b *testing.B) {
	f := newPeerFixture(b)
	msg := benchMessage()
	chain := []*x509.Certificate{f.alice.Cert, f.pki.Inter}
	rcpt := []smime.Recipient{{Cert: f.bob.Cert}}
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		signed, err := smime.Sign(msg, f.alice.Key, chain, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := smime.Encrypt(signed, rcpt, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInboundDecryptVerify is the inbound work for the same
// message: decrypt with the user's current key, verify the signature,
// judge the signer (chain, address; no revocation endpoint named),
// rewrite the header.
func BenchmarkInboundDecryptVerify(b *testing.B) {
	f := newPeerFixture(b)
	f.opener.Harvest = nil
	msg := benchMessage()
	signed, err := smime.Sign(msg, f.alice.Key, []*x509.Certificate{f.alice.Cert, f.pki.Inter}, nil)
	if err != nil {
		b.Fatal(err)
	}
	enc, err := smime.Encrypt(signed, []smime.Recipient{{Cert: f.bob.Cert}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		res, err := f.opener.Open(ctx, enc, "bob@example.org")
		if err != nil || res.Outcome != SignaturePass {
			b.Fatalf("%v %v", err, res.Outcome)
		}
	}
}
