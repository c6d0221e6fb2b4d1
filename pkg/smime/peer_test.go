package smime

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/smime/cms"
)

// wrapSigned builds a multipart/signed around content and a detached
// signature made by a peer; b64line is the base64 line length, odd on
// purpose in some tests.
func wrapSigned(headers string, content, sig []byte, b64line int) []byte {
	var b bytes.Buffer
	b.WriteString(headers)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/x-pkcs7-signature\"; micalg=\"sha-256\"; boundary=\"peer-b\"\r\n\r\n--peer-b\r\n")
	b.Write(content)
	b.WriteString("\r\n--peer-b\r\nContent-Type: application/x-pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	b.Write(wrapBase64(sig, b64line))
	b.WriteString("--peer-b--\r\n")
	return b.Bytes()
}

func wrapBase64(der []byte, line int) []byte {
	s := base64.StdEncoding.EncodeToString(der)
	var b bytes.Buffer
	for len(s) > 0 {
		n := min(line, len(s))
		b.WriteString(s[:n] + "\r\n")
		s = s[n:]
	}
	return b.Bytes()
}

func wrapEnveloped(headers string, der []byte, b64line int) []byte {
	var b bytes.Buffer
	b.WriteString(headers)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	b.Write(wrapBase64(der, b64line))
	return b.Bytes()
}

const peerHeaders = "From: alice@example.org\r\nTo: bob@partner.test\r\nSubject: from a peer\r\n"
const peerContent = "Content-Type: text/plain; charset=us-ascii\r\n\r\nHello from a peer.\r\nSecond line.\r\n"

func TestSignAcceptedByPeers(t *testing.T) {
	f := newFixture(t)
	gpg := testpeer.NewGpgsm(t, f.pki)
	nss := testpeer.NewNSS(t, f.pki)
	cases := []struct {
		name          string
		id            *testpeer.Identity
		pss           bool
		hash          crypto.Hash
		gpgsm         bool
		msg           string
		wantInContent string
	}{
		{"rsa-pkcs1v15", f.alice, false, 0, true, plainMsg, "Gr=C3=BC=C3=9Fe aus K=C3=B6ln"},
		{"rsa-pss", f.alice, true, 0, false, plainMsg, "the numbers are attached"},
		{"ecdsa-p256", f.ec, false, 0, true, plainMsg, "=46rom here on"},
		{"rsa-sha384-multipart", f.alice, false, crypto.SHA384, true, multipartMsg, "Content-Transfer-Encoding: base64"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Sign([]byte(tc.msg), tc.id.Key, f.chain(tc.id), &SignOptions{PSS: tc.pss, Hash: tc.hash})
			if err != nil {
				t.Fatal(err)
			}
			from := tc.id.Email
			got := f.opensslVerify(t, out)
			if !strings.Contains(string(got), tc.wantInContent) {
				t.Errorf("openssl extracted content lacks %q:\n%s", tc.wantInContent, got)
			}
			content, sig := detachedParts(t, out)
			if r := nss.VerifyDetached(t, sig, content); !testpeer.GoodSignature(r) {
				t.Errorf("NSS cmsutil: no GoodSignature (exit %d)\n%s\n%s", r.ExitCode, r.Stdout, r.Stderr)
			}
			if tc.gpgsm {
				if r := gpg.VerifyDetached(t, sig, content); r.ExitCode != 0 || !strings.Contains(string(r.Stderr), "Good signature") {
					t.Errorf("gpgsm --verify: exit %d\n%s", r.ExitCode, r.Stderr)
				}
			}
			v, err := Verify(out, VerifyOptions{Roots: f.roots, From: from})
			if err != nil {
				t.Fatalf("our Verify: %v", err)
			}
			if v.Signer.SerialNumber.Cmp(tc.id.Cert.SerialNumber) != 0 {
				t.Errorf("signer serial %v, want %v", v.Signer.SerialNumber, tc.id.Cert.SerialNumber)
			}
			// Outer headers stay outside; content headers inside only.
			hdr, _, _ := bytes.Cut(out, []byte("\r\n\r\n"))
			for _, h := range []string{"Subject: Quarterly numbers", "Subject: with attachment"} {
				if strings.Contains(tc.msg, h) && !bytes.Contains(hdr, []byte(h)) {
					t.Errorf("outer header %q missing from top level", h)
				}
			}
			if bytes.Contains(content, []byte("Subject:")) || bytes.Contains(content, []byte("\nFrom: ")) {
				t.Errorf("transport headers leaked into the signed part:\n%s", content)
			}
			if bytes.Contains(hdr, []byte("charset=utf-8")) {
				t.Errorf("content header left outside the signature")
			}
		})
	}
}

func TestEncryptAcceptedByPeers(t *testing.T) {
	f := newFixture(t)
	gpg := testpeer.NewGpgsm(t, f.pki, f.bob)
	nss := testpeer.NewNSS(t, f.pki, f.bob)
	const want = "the numbers are attached"

	t.Run("default-cbc-pkcs1v15", func(t *testing.T) {
		out, err := Encrypt([]byte(plainMsg), []Recipient{{Cert: f.bob.Cert}, {Cert: f.carol.Cert}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(out, []byte("smime-type=enveloped-data")) || !bytes.Contains(out, []byte("Subject: Quarterly numbers")) {
			t.Fatalf("unexpected headers:\n%s", out[:400])
		}
		for _, id := range []*testpeer.Identity{f.bob, f.carol} {
			if got := f.opensslDecrypt(t, out, id); !strings.Contains(string(got), want) {
				t.Errorf("openssl (%s) decrypted something else:\n%s", id.Email, got)
			}
		}
		der := bareCMS(t, out)
		if r := gpg.Decrypt(t, der, f.bob.P12Password); r.ExitCode != 0 || !strings.Contains(string(r.Stdout), want) {
			t.Errorf("gpgsm --decrypt: exit %d\n%s\n%s", r.ExitCode, r.Stdout, r.Stderr)
		}
		if r := nss.Decrypt(t, der); r.ExitCode != 0 || !strings.Contains(string(r.Stdout), want) {
			t.Errorf("NSS cmsutil -D: exit %d\n%s\n%s", r.ExitCode, r.Stdout, r.Stderr)
		}
	})

	variants := []struct {
		name     string
		id       *testpeer.Identity
		caps     Capabilities
		opts     *EncryptOptions
		ski      bool
		wantType string
	}{
		{"oaep-from-capabilities", f.bob, Capabilities{{ID: DefaultCapabilities()[5].ID}}, nil, false, "enveloped-data"},
		{"gcm-from-capabilities", f.bob, DefaultCapabilities(), nil, false, "authEnveloped-data"},
		{"ski-recipient", f.bob, nil, nil, true, "enveloped-data"},
		{"ecdh-p256", f.ec, nil, nil, false, "enveloped-data"},
		{"ecdh-p384-ski-gcm", f.ec384, nil, &EncryptOptions{GCM: Force}, true, "authEnveloped-data"},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			out, err := Encrypt([]byte(plainMsg), []Recipient{{Cert: v.id.Cert, Capabilities: v.caps, UseSKI: v.ski}}, v.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(out, []byte("smime-type="+v.wantType)) {
				t.Fatalf("want %s", v.wantType)
			}
			if got := f.opensslDecrypt(t, out, v.id); !strings.Contains(string(got), want) {
				t.Errorf("openssl decrypted something else:\n%s", got)
			}
			dec, err := Decrypt(out, v.id.Cert, v.id.Key)
			if err != nil || !strings.Contains(string(dec), want) {
				t.Errorf("our Decrypt: %v", err)
			}
		})
	}
}

func TestDecryptPeerOutput(t *testing.T) {
	f := newFixture(t)
	content := f.file(t, "content.txt", []byte(peerContent))
	const want = "Hello from a peer."
	variants := []struct {
		name string
		id   *testpeer.Identity
		args []string
	}{
		{"openssl-aes256-cbc", f.bob, []string{"-aes256"}},
		{"openssl-aes128-cbc", f.bob, []string{"-aes128"}},
		{"openssl-3des", f.bob, []string{"-des3"}},
		{"openssl-oaep-sha256", f.bob, []string{"-aes256", "-recip", f.bob.CertFile, "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"}},
		{"openssl-oaep-sha1", f.bob, []string{"-aes256", "-recip", f.bob.CertFile, "-keyopt", "rsa_padding_mode:oaep"}},
		{"openssl-gcm", f.bob, []string{"-aes-256-gcm"}},
		{"openssl-ski", f.bob, []string{"-aes256", "-keyid"}},
		{"openssl-ecdh-p256-sha256kdf", f.ec, []string{"-aes256", "-recip", f.ec.CertFile, "-keyopt", "ecdh_kdf_md:sha256"}},
		{"openssl-ecdh-p256-sha1kdf", f.ec, []string{"-aes256"}},
		{"openssl-ecdh-p384-gcm", f.ec384, []string{"-aes-256-gcm", "-recip", f.ec384.CertFile, "-keyopt", "ecdh_kdf_md:sha384"}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			args := []string{"cms", "-encrypt", "-in", content, "-from", "alice@example.org", "-to", v.id.Email, "-subject", "peer"}
			args = append(args, v.args...)
			if !strings.Contains(strings.Join(v.args, " "), "-recip") {
				args = append(args, v.id.CertFile)
			}
			msg := testpeer.MustRun(t, nil, "openssl", args...)
			out, err := Decrypt(msg, v.id.Cert, v.id.Key)
			if err != nil {
				t.Fatalf("Decrypt: %v", err)
			}
			if !strings.Contains(string(out), want) || !strings.Contains(string(out), "Subject: peer") {
				t.Errorf("decrypted:\n%s", out)
			}
		})
	}

	gpg := testpeer.NewGpgsm(t, f.pki, f.bob)
	nss := testpeer.NewNSS(t, f.pki, f.bob)
	t.Run("gpgsm", func(t *testing.T) {
		der := gpg.Encrypt(t, []byte(peerContent), f.bob.Email)
		out, err := Decrypt(wrapEnveloped(peerHeaders, der, 64), f.bob.Cert, f.bob.Key)
		if err != nil || !strings.Contains(string(out), want) {
			t.Fatalf("Decrypt gpgsm output: %v\n%s", err, out)
		}
	})
	t.Run("nss", func(t *testing.T) {
		der := nss.Encrypt(t, []byte(peerContent), f.bob.Email)
		out, err := Decrypt(wrapEnveloped(peerHeaders, der, 73), f.bob.Cert, f.bob.Key)
		if err != nil || !strings.Contains(string(out), want) {
			t.Fatalf("Decrypt NSS output: %v\n%s", err, out)
		}
	})
}

func TestVerifyPeerOutput(t *testing.T) {
	f := newFixture(t)
	content := f.file(t, "content.txt", []byte(peerContent))
	for _, v := range []struct {
		name string
		id   *testpeer.Identity
		args []string
	}{
		{"openssl-detached-rsa", f.alice, nil},
		{"openssl-opaque-rsa", f.alice, []string{"-nodetach"}},
		{"openssl-detached-ecdsa", f.ec, nil},
		{"openssl-pss", f.alice, []string{"-keyopt", "rsa_padding_mode:pss"}},
	} {
		t.Run(v.name, func(t *testing.T) {
			args := []string{"cms", "-sign", "-in", content, "-signer", v.id.CertFile, "-inkey", v.id.KeyFile,
				"-certfile", f.pki.InterFile, "-md", "sha256", "-from", v.id.Email, "-to", "bob@partner.test", "-subject", "signed by openssl"}
			args = append(args, v.args...)
			msg := testpeer.MustRun(t, nil, "openssl", args...)
			res, err := Verify(msg, VerifyOptions{Roots: f.roots})
			if err != nil {
				t.Fatalf("Verify: %v\n%s", err, msg)
			}
			if !strings.Contains(string(res.Message), "Hello from a peer.") || !strings.Contains(string(res.Message), "Subject: signed by openssl") {
				t.Errorf("unwrapped message:\n%s", res.Message)
			}
			// What harvesting keeps: openssl's signer, the intermediate
			// it was given (-certfile), and the capabilities it adds.
			cert, chain, caps, err := SignerInfo(msg)
			if err != nil {
				t.Fatalf("SignerInfo: %v", err)
			}
			if !cert.Equal(v.id.Cert) {
				t.Errorf("SignerInfo signer = %s, want %s", cert.Subject, v.id.Cert.Subject)
			}
			if len(chain) != 1 || !chain[0].Equal(f.pki.Inter) {
				t.Errorf("SignerInfo chain = %d certificates, want the intermediate only", len(chain))
			}
			if parsed, err := ParseCapabilities(caps); err != nil || len(caps) == 0 || !parsed.Has(cms.OIDAES256CBC) {
				t.Errorf("SignerInfo capabilities %x: %v, want openssl's list with AES-256-CBC", caps, err)
			}
		})
	}
	gpg := testpeer.NewGpgsm(t, f.pki, f.alice)
	nss := testpeer.NewNSS(t, f.pki, f.alice)
	hdr := "From: alice@example.org\r\nTo: bob@partner.test\r\nSubject: peer\r\n"
	body := []byte(strings.TrimSuffix(peerContent, "\r\n"))
	t.Run("gpgsm", func(t *testing.T) {
		sig := gpg.SignDetached(t, body, f.alice)
		if _, err := Verify(wrapSigned(hdr, body, sig, 61), VerifyOptions{Roots: f.roots}); err != nil {
			t.Fatalf("Verify gpgsm signature: %v", err)
		}
	})
	t.Run("nss", func(t *testing.T) {
		sig := nss.SignDetached(t, body, f.alice.Email)
		msg := wrapSigned(hdr, body, sig, 77)
		v, err := Verify(msg, VerifyOptions{Roots: f.roots})
		if err != nil {
			t.Fatalf("Verify NSS signature: %v", err)
		}
		if v.Capabilities == nil {
			t.Errorf("NSS sent SMIMECapabilities (-P) but none were read")
		}
		if _, err := ParseCapabilities(v.Capabilities); err != nil {
			t.Errorf("ParseCapabilities(NSS): %v", err)
		}
	})
	t.Run("tampered-peer-signature", func(t *testing.T) {
		sig := nss.SignDetached(t, body, f.alice.Email)
		bad := bytes.Replace(body, []byte("Hello"), []byte("Jello"), 1)
		_, err := Verify(wrapSigned(hdr, bad, sig, 76), VerifyOptions{Roots: f.roots})
		if !errors.Is(err, ErrBadSignature) {
			t.Fatalf("want ErrBadSignature, got %v", err)
		}
	})
}

// TestSignCanonicalSeedsOpenSSL has openssl, not our Verify, judge every
// edge case FuzzSignCanonical starts from (8-bit message/rfc822, trailing
// whitespace, "From " lines, bare CR, NUL, over-long lines ...): the
// signature must verify, the content openssl extracts must be exactly the
// signed first part (cut by Python's email, see detachedParts), that part
// must be in a form no relay rewrites, and Python must decode the same
// text from it as from the message we were given.
func TestSignCanonicalSeedsOpenSSL(t *testing.T) {
	f := newFixture(t)
	for _, seed := range signCanonicalSeeds {
		t.Run(seed.name, func(t *testing.T) {
			out, err := Sign([]byte(seed.msg), f.alice.Key, f.chain(f.alice), &SignOptions{Boundary: fuzzBoundary})
			if seed.wantErr != nil || err != nil {
				if !errors.Is(err, seed.wantErr) || err == nil {
					t.Fatalf("Sign: want %v, got %v", seed.wantErr, err)
				}
				return
			}
			extracted := f.opensslVerify(t, out)
			signed, _ := detachedParts(t, out)
			if !bytes.Equal(extracted, signed) {
				t.Fatalf("openssl extracted other bytes than the signed part:\nopenssl: %q\nsigned:  %q", extracted, signed)
			}
			if problem := relayUnsafe(signed); problem != "" {
				t.Errorf("signed part is not canonical: %s\n%q", problem, signed)
			}
			if want, got := mimeLeaves(t, []byte(seed.msg)), mimeLeaves(t, extracted); !slices.Equal(got, want) {
				t.Errorf("canonicalisation changed what the parts say:\ngot  %q\nwant %q", got, want)
			}
		})
	}
}

// relayUnsafe says what in a signed entity a 7bit SMTP relay or an mbox
// store could rewrite (and so break the signature), or "" when nothing.
func relayUnsafe(entity []byte) string {
	if len(entity) > 0 && !bytes.HasSuffix(entity, []byte("\r\n")) && !bytes.HasSuffix(entity, []byte("--")) {
		return "does not end with a line break or a closing delimiter"
	}
	for n, line := range bytes.Split(entity, []byte("\r\n")) {
		switch {
		case bytes.ContainsAny(line, "\r\n"):
			return fmt.Sprintf("line %d has a bare CR or LF", n+1)
		case len(line) > 998:
			return fmt.Sprintf("line %d is %d octets (SMTP allows 998)", n+1, len(line))
		case bytes.HasSuffix(line, []byte(" ")) || bytes.HasSuffix(line, []byte("\t")):
			return fmt.Sprintf("line %d ends in whitespace", n+1)
		case bytes.HasPrefix(line, []byte("From ")):
			return fmt.Sprintf("line %d starts with \"From \"", n+1)
		case bytes.IndexFunc(line, func(r rune) bool { return r == 0 || r >= 0x80 }) >= 0 || !utf8.Valid(line):
			return fmt.Sprintf("line %d has a NUL or 8-bit byte", n+1)
		}
	}
	return ""
}

// mimeLeaves returns "type: decoded body" for every leaf part of entity
// as Python's email package decodes it (testdata/mime_leaves.py).
func mimeLeaves(t *testing.T, entity []byte) []string {
	t.Helper()
	r := testpeer.Run(t, entity, python3(t), filepath.Join("testdata", "mime_leaves.py"))
	if r.ExitCode != 0 {
		t.Fatalf("mime_leaves.py: exit %d\n%s", r.ExitCode, r.Stderr)
	}
	var leaves []struct {
		Type string `json:"type"`
		Body []byte `json:"body"`
	}
	if err := json.Unmarshal(r.Stdout, &leaves); err != nil {
		t.Fatalf("reading mime_leaves.py output %q: %v", r.Stdout, err)
	}
	out := make([]string, len(leaves))
	for i, l := range leaves {
		out[i] = l.Type + ": " + string(l.Body)
	}
	return out
}
