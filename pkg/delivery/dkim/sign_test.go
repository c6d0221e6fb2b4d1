package dkim

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"
)

// Messages shaped like what sealgate sends: its own S/MIME and PDF output
// is exercised end to end in pkg/gateway/e2e.
const (
	plainMsg = "From: Alice <alice@example.org>\r\nTo: bob@elsewhere.test\r\nSubject: Hello\r\n" +
		"Date: Fri, 04 Dec 2026 12:00:00 +0000\r\nMessage-ID: <1@example.org>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\nHello Bob,\r\n\r\nsee you.  \r\n\r\n\r\n"
	envelopedMsg = "From: alice@Example.ORG\r\nTo: bob@elsewhere.test\r\nSubject: secret\r\nDate: Fri, 04 Dec 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n" +
		"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=smime.p7m\r\n\r\n" +
		"MIAGCSqGSIb3DQEHA6CAMIACAQAxggEwMIIBLAIBADCBkzCBijELMAkGA1UEBhMCREUx\r\nAAAA\r\n"
)

func rsaKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func edKey(t testing.TB) crypto.Signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// lookup answers TXT queries from records (name → value), as DNS would.
func lookup(records map[string]string) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		if v, ok := records[name]; ok {
			return []string{v}, nil
		}
		return nil, fmt.Errorf("no TXT for %s", name)
	}
}

func verify(t *testing.T, raw []byte, records map[string]string) []*msgdkim.Verification {
	t.Helper()
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(raw), &msgdkim.VerifyOptions{LookupTXT: lookup(records)})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return vs
}

func TestSignVerifies(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		msg  string
		algo string
	}{
		{"rsa plain", rsaKey(t), plainMsg, "rsa-sha256"},
		{"ed25519 plain", edKey(t), plainMsg, "ed25519-sha256"},
		{"rsa enveloped, From domain in upper case", rsaKey(t), envelopedMsg, "rsa-sha256"},
		{"ed25519 enveloped", edKey(t), envelopedMsg, "ed25519-sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Config{Selector: "sg", Domains: []string{"EXAMPLE.org."}, Key: tc.key})
			if err != nil {
				t.Fatal(err)
			}
			out, res, err := s.Sign([]byte(tc.msg))
			if err != nil || !res.Signed || res.Domain != "example.org" {
				t.Fatalf("Sign = %+v, %v", res, err)
			}
			if !bytes.HasSuffix(out, []byte(tc.msg)) {
				t.Fatal("the message bytes changed; only a field in front may be added")
			}
			sig := string(out[:len(out)-len(tc.msg)])
			for _, want := range []string{"a=" + tc.algo, "c=relaxed/relaxed", "d=example.org", "s=sg"} {
				if !strings.Contains(sig, want) {
					t.Errorf("signature lacks %s:\n%s", want, sig)
				}
			}
			rec, _ := RecordValue(tc.key)
			vs := verify(t, out, map[string]string{"sg._domainkey.example.org": rec})
			if len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "example.org" {
				t.Fatalf("verification %+v", vs[0])
			}
			// Oversigned: From listed twice, the absent Cc once.
			n := map[string]int{}
			for _, k := range vs[0].HeaderKeys {
				n[strings.ToLower(k)]++
			}
			if n["from"] != 2 || n["cc"] != 1 || n["subject"] != 2 {
				t.Errorf("h= %v: want From and Subject twice, Cc once", vs[0].HeaderKeys)
			}
		})
	}
}

// The attacker has a signed message and changes it in transit.
func TestTamperingFails(t *testing.T) {
	key := rsaKey(t)
	s, err := New(Config{Selector: "sg", Domains: []string{"example.org"}, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := s.Sign([]byte(plainMsg))
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := RecordValue(key)
	records := map[string]string{"sg._domainkey.example.org": rec}
	for _, tc := range []struct {
		name   string
		change func(b []byte) []byte
	}{
		{"second From on top", func(b []byte) []byte {
			return append([]byte("From: ceo@example.org\r\n"), b...)
		}},
		{"second From below the first", func(b []byte) []byte {
			return bytes.Replace(b, []byte("To: bob"), []byte("From: ceo@example.org\r\nTo: bob"), 1)
		}},
		{"second Subject", func(b []byte) []byte {
			return append([]byte("Subject: urgent: pay now\r\n"), b...)
		}},
		{"Cc added", func(b []byte) []byte {
			return append([]byte("Cc: eve@evil.test\r\n"), b...)
		}},
		{"body altered", func(b []byte) []byte {
			return bytes.Replace(b, []byte("see you."), []byte("send money"), 1)
		}},
		{"body appended", func(b []byte) []byte {
			return append(b, []byte("P.S. click here\r\n")...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changed := tc.change(bytes.Clone(out))
			vs := verify(t, changed, records)
			if len(vs) != 1 || vs[0].Err == nil {
				t.Fatalf("a changed message still verifies: %+v", vs)
			}
		})
	}
	// And the same changes made below the signature field but not
	// touching signed content (a Received field a hop adds) still verify.
	hop := append([]byte("Received: from mx by mx2; Fri, 04 Dec 2026 12:00:01 +0000\r\n"), out...)
	if vs := verify(t, hop, records); vs[0].Err != nil {
		t.Fatalf("a Received field broke the signature: %v", vs[0].Err)
	}
}

func TestNotSigned(t *testing.T) {
	s, err := New(Config{Selector: "sg", Domains: []string{"example.org"}, Key: edKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	body := "\r\n\r\nhi\r\n"
	for _, tc := range []struct {
		name, msg, reason string
	}{
		{"domain not listed", "From: a@other.test\r\nTo: b@x.test" + body, "not in dkim.domains"},
		{"subdomain not listed", "From: a@mail.example.org\r\nTo: b@x.test" + body, "not in dkim.domains"},
		{"parent of a listed domain", "From: a@org\r\nTo: b@x.test" + body, "not in dkim.domains"},
		{"lookalike suffix", "From: a@badexample.org\r\nTo: b@x.test" + body, "not in dkim.domains"},
		{"From twice", "From: a@example.org\r\nFrom: b@example.org\r\nTo: b@x.test" + body, "From"},
		{"two authors in one From", "From: a@example.org, b@example.org\r\nTo: b@x.test" + body, "From"},
		{"From does not parse", "From: a@@example.org\r\nTo: b@x.test" + body, "From"},
		{"no From", "To: b@x.test" + body, "From"},
		{"display name shows another address", "From: \"ceo@example.org\" <a@evil.test>\r\nTo: b@x.test" + body, "From"},
		{"not a header", "this is not a header\r\n" + body, "does not parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, res, err := s.Sign([]byte(tc.msg))
			if err != nil {
				t.Fatal(err)
			}
			if res.Signed || !bytes.Equal(out, []byte(tc.msg)) {
				t.Fatalf("signed: %+v", res)
			}
			if !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("reason %q lacks %q", res.Reason, tc.reason)
			}
			if strings.Contains(res.Reason, "evil") || strings.Contains(res.Reason, "@") {
				t.Errorf("reason quotes the header: %q", res.Reason)
			}
		})
	}
}

func TestSubdomainWhenListed(t *testing.T) {
	key := edKey(t)
	s, err := New(Config{Selector: "sg", Domains: []string{"mail.example.org"}, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	out, res, err := s.Sign([]byte(strings.Replace(plainMsg, "alice@example.org", "alice@MAIL.example.org", 1)))
	if err != nil || !res.Signed || res.Domain != "mail.example.org" {
		t.Fatalf("%+v %v", res, err)
	}
	rec, _ := RecordValue(key)
	if vs := verify(t, out, map[string]string{"sg._domainkey.mail.example.org": rec}); vs[0].Err != nil {
		t.Fatal(vs[0].Err)
	}
}

func TestNewRefuses(t *testing.T) {
	k := edKey(t)
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no key", Config{Selector: "s", Domains: []string{"example.org"}}},
		{"no domain", Config{Selector: "s", Key: k}},
		{"bad selector", Config{Selector: "a;b", Domains: []string{"example.org"}, Key: k}},
		{"bad domain", Config{Selector: "s", Domains: []string{"exa mple.org"}, Key: k}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func writeFile(t *testing.T, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dkim.key")
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadKey(t *testing.T) {
	rsaPEM, _ := MarshalKey(rsaKey(t))
	edPEM, _ := MarshalKey(edKey(t))
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallPEM, _ := MarshalKey(small)
	pkcs1 := bytes.Replace(rsaPEM, []byte("PRIVATE KEY"), []byte("RSA PRIVATE KEY"), -1)
	for _, tc := range []struct {
		name string
		data []byte
		mode os.FileMode
		want string // "" = loads
	}{
		{"rsa", rsaPEM, 0o600, ""},
		{"ed25519", edPEM, 0o400, ""},
		{"group readable", edPEM, 0o640, "mode 0640"},
		{"world readable", edPEM, 0o604, "mode 0604"},
		{"rsa 1024", smallPEM, 0o600, "1024 bits"},
		{"pkcs1 block", pkcs1, 0o600, "PKCS#8"},
		{"not pem", []byte("hello"), 0o600, "no PEM block"},
		{"two blocks", append(bytes.Clone(edPEM), rsaPEM...), 0o600, "more than one"},
		{"garbage in block", []byte("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"), 0o600, "not a PKCS#8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := LoadKey(writeFile(t, tc.data, tc.mode))
			if tc.want == "" {
				if err != nil || k == nil {
					t.Fatalf("LoadKey: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrKeyFile) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			// Never the key material in an error.
			if strings.Contains(err.Error(), "MII") || strings.Contains(err.Error(), "c2VjcmV0") || strings.Contains(err.Error(), "secret") {
				t.Errorf("error quotes the key: %v", err)
			}
		})
	}
}

func TestWriteKeyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "dkim.key")
	k1 := edKey(t)
	if err := WriteKeyFile(p, k1, false); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	if err := WriteKeyFile(p, edKey(t), false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("overwrote without force: %v", err)
	}
	if got, err := LoadKey(p); err != nil || !got.Public().(ed25519.PublicKey).Equal(k1.Public()) {
		t.Fatalf("key changed without force: %v", err)
	}
	k2 := rsaKey(t)
	if err := WriteKeyFile(p, k2, true); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadKey(p); err != nil || !got.Public().(*rsa.PublicKey).Equal(k2.Public()) {
		t.Fatalf("force did not replace the key: %v", err)
	}
}

func TestRecord(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		k    string
	}{{"rsa", rsaKey(t), "k=rsa"}, {"ed25519", edKey(t), "k=ed25519"}} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Record("sg", "example.org.", tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(r, "sg._domainkey.example.org. IN TXT \"v=DKIM1; "+tc.k+"; p=") {
				t.Fatalf("record %s", r)
			}
			// Strings of at most 255 bytes that join to the value.
			v, _ := RecordValue(tc.key)
			parts := strings.Split(strings.TrimSuffix(strings.SplitN(r, "TXT \"", 2)[1], "\""), "\" \"")
			if strings.Join(parts, "") != v {
				t.Fatalf("parts do not join to the value")
			}
			for _, p := range parts {
				if len(p) > 255 {
					t.Errorf("string of %d bytes", len(p))
				}
			}
			if tc.k == "k=rsa" && len(parts) < 2 {
				t.Errorf("an RSA-2048 record is longer than 255 bytes and must be split")
			}
		})
	}
}
