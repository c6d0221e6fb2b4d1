package smime

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// TestVerifyRefusesSHA1: signatures that rest on SHA-1 are refused,
// whichever field carries it: the digest algorithm (openssl cms -md
// sha1), the signature algorithm OID (sha1WithRSAEncryption over a SHA-256
// digest), or the signer certificate's own signature (openssl x509
// -sha1). Issue 12 item 10; a guard, the refusals were already there.
func TestVerifyRefusesSHA1(t *testing.T) {
	f := newFixture(t)
	hdr := "From: alice@example.org\r\nTo: bob@partner.test\r\nSubject: sha1\r\n"
	body := []byte(strings.TrimSuffix(peerContent, "\r\n"))
	content := f.file(t, "content.bin", body)
	sign := func(t *testing.T, signerCert, signerKey, md string) []byte {
		return testpeer.MustRun(t, nil, "openssl", "cms", "-sign", "-binary", "-outform", "DER", "-in", content,
			"-signer", signerCert, "-inkey", signerKey, "-certfile", f.pki.InterFile, "-md", md)
	}
	// A certificate for alice's key, signed by a root of its own with SHA-1.
	rootKey, rootCert := f.file(t, "sha1root.key", nil), f.file(t, "sha1root.pem", nil)
	testpeer.MustRun(t, nil, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", rootKey, "-out", rootCert,
		"-days", "30", "-subj", "/CN=SHA-1 test root", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
	csr, sha1Leaf := f.file(t, "alice.csr", nil), f.file(t, "alice-sha1.pem", nil)
	testpeer.MustRun(t, nil, "openssl", "req", "-new", "-key", f.alice.KeyFile, "-subj", "/CN=alice@example.org", "-out", csr)
	ext := f.file(t, "leaf.ext", []byte("keyUsage=critical,digitalSignature\nextendedKeyUsage=emailProtection\nsubjectAltName=email:alice@example.org\n"))
	testpeer.MustRun(t, nil, "openssl", "x509", "-req", "-sha1", "-in", csr, "-CA", rootCert, "-CAkey", rootKey, "-set_serial", "7",
		"-days", "30", "-extfile", ext, "-out", sha1Leaf)
	roots := f.roots.Clone()
	roots.AppendCertsFromPEM(testpeer.MustRun(t, nil, "openssl", "x509", "-in", rootCert))

	rsaEncryption := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01}
	sha1WithRSA := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05}
	tests := []struct {
		name string
		sig  func(t *testing.T) []byte
		ok   bool
		want string
	}{
		{name: "control: RSA, SHA-256", ok: true, sig: func(t *testing.T) []byte { return sign(t, f.alice.CertFile, f.alice.KeyFile, "sha256") }},
		{name: "RSA, digest SHA-1", want: "SHA-1", sig: func(t *testing.T) []byte { return sign(t, f.alice.CertFile, f.alice.KeyFile, "sha1") }},
		{name: "ECDSA, digest SHA-1", want: "SHA-1", sig: func(t *testing.T) []byte { return sign(t, f.ec.CertFile, f.ec.KeyFile, "sha1") }},
		{name: "signature algorithm sha1WithRSAEncryption", want: "1.2.840.113549.1.1.5", sig: func(t *testing.T) []byte {
			der := sign(t, f.alice.CertFile, f.alice.KeyFile, "sha256")
			// The SignerInfo's rsaEncryption is the last one; the
			// certificates' key OIDs come before it.
			i := bytes.LastIndex(der, rsaEncryption)
			if i < 0 {
				t.Fatal("no rsaEncryption OID in the signature")
			}
			return append(append(append([]byte{}, der[:i]...), sha1WithRSA...), der[i+len(sha1WithRSA):]...)
		}},
		{name: "signer certificate signed with SHA-1", want: "SHA1", sig: func(t *testing.T) []byte { return sign(t, sha1Leaf, f.alice.KeyFile, "sha256") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := wrapSigned(hdr, body, tc.sig(t), 64)
			_, err := Verify(msg, VerifyOptions{Roots: roots})
			switch {
			case tc.ok && err != nil:
				t.Fatalf("Verify: %v", err)
			case !tc.ok && err == nil:
				t.Fatalf("a signature resting on SHA-1 verified")
			case !tc.ok && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}
