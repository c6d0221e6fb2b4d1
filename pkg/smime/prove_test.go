package smime

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/message"
)

// proveMessage runs Prove on a whole message as the pipeline does.
func proveMessage(t *testing.T, msg []byte) Kind {
	t.Helper()
	m, err := message.Parse(msg)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, msg)
	}
	return Prove(m.MediaType, m.Params, m.TransferEncoding, m.Body())
}

// TestProveByContent: openssl's envelope and signature are proven; a label
// over anything else is not (issue #12 item 1: a header that only claims
// encryption was relayed as it was).
func TestProveByContent(t *testing.T) {
	f := newFixture(t)
	plain := []byte(strings.ReplaceAll(plainMsg, "\n", "\r\n"))
	in := f.file(t, "plain.eml", plain)
	enveloped := testpeer.MustRun(t, nil, "openssl", "cms", "-encrypt", "-in", in, "-aes256", f.bob.CertFile)
	gcm := testpeer.MustRun(t, nil, "openssl", "cms", "-encrypt", "-in", in, "-aes-256-gcm", f.bob.CertFile)
	signed := testpeer.MustRun(t, nil, "openssl", "cms", "-sign", "-in", in, "-signer", f.alice.CertFile, "-inkey", f.alice.KeyFile)
	opaque := testpeer.MustRun(t, nil, "openssl", "cms", "-sign", "-nodetach", "-in", in, "-signer", f.alice.CertFile, "-inkey", f.alice.KeyFile)
	// openssl writes the MIME header only; the client adds From.
	crlfOf := func(b []byte) []byte {
		b = bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
		return append([]byte("From: alice@example.org\r\n"), b...)
	}

	envDER := bareCMS(t, crlfOf(enveloped))
	sigDER := bareCMS(t, crlfOf(opaque))
	label := func(smimeType string, body []byte) []byte {
		return []byte("From: alice@example.org\r\nMIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=" + smimeType +
			"; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString(body) + "\r\n")
	}
	for _, tc := range []struct {
		name string
		msg  []byte
		want Kind
	}{
		{"openssl enveloped", crlfOf(enveloped), KindEnveloped},
		{"openssl auth-enveloped", crlfOf(gcm), KindAuthEnveloped},
		{"openssl detached signature", crlfOf(signed), KindSigned},
		{"openssl opaque signed", crlfOf(opaque), KindOpaqueSigned},
		{"label over plain text", []byte("From: alice@example.org\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nthe secret plan\r\n"), KindNone},
		{"label over base64 text", label("enveloped-data", []byte("the secret plan")), KindNone},
		{"signed-data relabelled enveloped", label("enveloped-data", sigDER), KindOpaqueSigned},
		{"envelope with plain text after it", label("enveloped-data", append(append([]byte{}, envDER...), "the secret plan"...)), KindNone},
		{"envelope in a text/plain label", []byte("From: alice@example.org\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString(envDER) + "\r\n"), KindNone},
		{"multipart/signed label without signature", []byte("From: alice@example.org\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nthe secret plan\r\n--b\r\nContent-Type: application/pkcs7-signature\r\n\r\nnot cms\r\n--b--\r\n"), KindNone},
		{"quoted-printable envelope", []byte("From: alice@example.org\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=30\r\n"), KindNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := proveMessage(t, tc.msg); got != tc.want {
				t.Errorf("Prove = %v, want %v (label says %v)", got, tc.want, Classify(tc.msg))
			}
		})
	}
}
