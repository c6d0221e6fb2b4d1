package inbound

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// b64Lines is base64 in 76-character lines.
func b64Lines(der []byte) string {
	s := base64.StdEncoding.EncodeToString(der)
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	return b.String() + s + "\r\n"
}

// clientSigned is the multipart/signed entity a client builds around a
// detached signature over entity.
func clientSigned(sig []byte) []byte {
	return []byte("Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\n" + entity + "\r\n--b1\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + b64Lines(sig) + "--b1--\r\n")
}

// clientEnveloped is the message a client sends around an enveloped-data.
func clientEnveloped(der []byte) []byte {
	return []byte("From: alice@partner.example\r\nTo: bob@example.org\r\nSubject: Quarterly figures\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + b64Lines(der))
}

// Mail signed and encrypted by gpgsm and by NSS (Thunderbird's engine)
// opens, and its signature passes.
func TestOpenClientMessages(t *testing.T) {
	f := newPeerFixture(t)
	gpg := testpeer.NewGpgsm(t, f.pki, f.alice, f.bob)
	nss := testpeer.NewNSS(t, f.pki, f.alice, f.bob)
	cases := []struct {
		name string
		msg  func(t *testing.T) []byte
	}{
		{"gpgsm", func(t *testing.T) []byte {
			sig := gpg.SignDetached(t, []byte(entity), f.alice)
			return clientEnveloped(gpg.Encrypt(t, clientSigned(sig), f.bob.Email))
		}},
		{"nss cmsutil", func(t *testing.T) []byte {
			sig := nss.SignDetached(t, []byte(entity), f.alice.Email)
			return clientEnveloped(nss.Encrypt(t, clientSigned(sig), f.bob.Email))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := f.opener.Open(context.Background(), tc.msg(t), "bob@example.org")
			if err != nil {
				t.Fatal(err)
			}
			out := string(res.Data)
			if res.Outcome != SignaturePass || res.Decrypted != 1 || !strings.Contains(out, "Hello Bob") {
				t.Fatalf("outcome %s, decrypted %d:\n%s", res.Outcome, res.Decrypted, out)
			}
			hdr, _ := splitAt(t, out)
			if countFields(hdr, "MIME-Version:") != 1 || countFields(hdr, "From:") != 1 {
				t.Fatalf("duplicated fields:\n%s", hdr)
			}
		})
	}
}
