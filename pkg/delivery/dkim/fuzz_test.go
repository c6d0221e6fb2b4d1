package dkim

import (
	"bytes"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"
)

// FuzzSign: whatever the header holds, Sign either leaves the message as
// it is or puts one signature in front of the unchanged bytes, and what it
// signs verifies.
func FuzzSign(f *testing.F) {
	f.Add([]byte(plainMsg))
	f.Add([]byte(envelopedMsg))
	f.Add([]byte("From: a@example.org\r\nFrom: b@example.org\r\n\r\nx"))
	f.Add([]byte("From: =?utf-8?q?a=40example.org?= <x@example.org>\r\n\r\n"))
	f.Add([]byte("From: a@example.org\r\n\tcontinued\r\nSubject: x\r\n\r\n\r\n"))
	key := edKey(f)
	s, err := New(Config{Selector: "sg", Domains: []string{"example.org"}, Key: key})
	if err != nil {
		f.Fatal(err)
	}
	rec, _ := RecordValue(key)
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, res, err := s.Sign(raw)
		if err != nil {
			return
		}
		if !res.Signed {
			if !bytes.Equal(out, raw) {
				t.Fatal("unsigned message changed")
			}
			return
		}
		if res.Domain != "example.org" || !bytes.HasSuffix(out, raw) {
			t.Fatalf("signed for %q or changed the message", res.Domain)
		}
		vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(out), &msgdkim.VerifyOptions{LookupTXT: lookup(map[string]string{"sg._domainkey.example.org": rec})})
		if err != nil || len(vs) == 0 || vs[0].Err != nil {
			t.Fatalf("what we signed does not verify: %v %+v", err, vs)
		}
	})
}
