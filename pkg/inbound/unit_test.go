package inbound

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
)

type noKeys struct{}

func (noKeys) DecryptionKeys(context.Context, string) ([]Key, error) { return nil, nil }

type rejectAll struct{}

func (rejectAll) CheckSigner(context.Context, *x509.Certificate, []*x509.Certificate, string) error {
	return errors.New("untrusted signer")
}

func TestMerge(t *testing.T) {
	carrier := "From: a@x.example\r\nTo: b@example.org\r\nSubject: outer\r\nMIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nAAAA\r\n"
	cases := []struct {
		name, inner string
		want        []string // in the result
		once        []string // fields exactly once
	}{
		{"entity with content headers", "Content-Type: text/plain\r\n\r\nbody\r\n",
			[]string{"Subject: outer", "Content-Type: text/plain\r\n\r\nbody"}, []string{"From:", "Subject:", "MIME-Version:", "Content-Type:"}},
		{"full message inside", "From: a@x.example\r\nSubject: inner\r\nMIME-Version: 1.0\r\nDate: Mon, 1 Dec 2026 10:00:00 +0000\r\nContent-Type: text/plain\r\n\r\nbody\r\n",
			[]string{"Subject: outer", "Date: Mon"}, []string{"From:", "Subject:", "MIME-Version:", "Date:"}},
		{"bare text", "Just text\nsecond line\n",
			[]string{"Content-Type: text/plain; charset=us-ascii", "\r\n\r\nJust text\r\nsecond line\r\n"}, []string{"Content-Type:"}},
		{"bare text that starts like a field", "Note: meeting at 5\n\nbring the figures\n",
			[]string{"Content-Type: text/plain", "\r\n\r\nNote: meeting at 5\r\n"}, []string{"Content-Type:"}},
		{"bare utf-8 text", "Grüße\n", []string{"charset=utf-8", "Content-Transfer-Encoding: 8bit"}, []string{"Content-Type:"}},
		{"bare invalid 8-bit", "\xff\xfe\n", []string{"charset=unknown-8bit"}, []string{"Content-Type:"}},
		{"empty", "", []string{"Content-Type: text/plain"}, []string{"MIME-Version:"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := string(merge([]byte(carrier), []byte(tc.inner)))
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("lacks %q:\n%q", w, out)
				}
			}
			hdr := out[:strings.Index(out, "\r\n\r\n")+2]
			for _, f := range tc.once {
				if n := countFields(hdr, f); n != 1 {
					t.Errorf("%d × %s:\n%s", n, f, hdr)
				}
			}
		})
	}
}

// Header values written from outside text cannot break out of the field
// or the quoted reason.
func TestHeaderQuoting(t *testing.T) {
	o := &Opener{AuthServID: "mx.example.org"}
	h := string(o.header(&Result{Outcome: SignatureFail, Signatures: []Signature{{Signer: "x\"@evil\r\nBcc: all@example.org", Reason: "a\\\"b\nc"}}}))
	if strings.Count(h, "\r\n") != 2 || strings.Contains(h, "\nBcc:") {
		t.Fatalf("header broke out:\n%s", h)
	}
	if !strings.Contains(h, `body.smime-identifier="x\"@evilBcc: all@example.org"`) || !strings.Contains(h, `reason="a\\\"bc"`) {
		t.Fatalf("not quoted as expected:\n%s", h)
	}
}

func FuzzOpen(f *testing.F) {
	f.Add([]byte("From: a@x\r\nAuthentication-Results: mx.example.org; smime=pass\r\n\r\nhi\r\n"))
	f.Add([]byte("Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQA=\r\n"))
	f.Add([]byte("Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b\r\n\r\nMIAG\r\n--b--\r\n"))
	f.Add([]byte("no header at all"))
	o := &Opener{AuthServID: "mx.example.org", Keys: noKeys{}, Signers: rejectAll{}}
	f.Fuzz(func(t *testing.T, msg []byte) {
		res, err := o.Open(context.Background(), msg, "bob@example.org")
		if err != nil {
			t.Fatal(err)
		}
		out := string(res.Data)
		i := strings.Index(out, "\r\n\r\n")
		if i < 0 {
			t.Fatalf("no header block in the result")
		}
		fields, _, _ := splitHeader(res.Data)
		for j, fl := range fields {
			if fl.is("authentication-results") && (j > 0 && o.forged(fl) || strings.Contains(strings.ToLower(fl.value()), "smime=pass")) {
				t.Fatalf("a forged or passing smime result survived with no trusted signer:\n%q", out[:i])
			}
		}
		if !strings.HasPrefix(out, "Authentication-Results: mx.example.org;") {
			t.Fatalf("our header is not first:\n%q", out[:i])
		}
	})
}
