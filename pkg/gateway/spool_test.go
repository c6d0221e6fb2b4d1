package gateway

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

func TestSpoolRoundTrip(t *testing.T) {
	sp := testSpool(t)
	for _, n := range []int{0, 1, spoolChunk - 1, spoolChunk, spoolChunk + 1, 3*spoolChunk + 17} {
		msg := bytes.Repeat([]byte("x"), n)
		env := &Envelope{ID: NewID(), From: "a@x.test", Recipients: []Recipient{{Addr: "b@y.test", Notify: []string{"FAILURE"}}}}
		size, err := sp.Write(env, bytes.NewReader(msg))
		if err != nil || size != int64(n) {
			t.Fatalf("n=%d: size %d, err %v", n, size, err)
		}
		raw, _ := os.ReadFile(sp.path(env.ID))
		if n > 16 && bytes.Contains(raw, msg[:16]) || bytes.Contains(raw, []byte("b@y.test")) {
			t.Fatalf("n=%d: plaintext visible in the spool file", n)
		}
		m, err := sp.Open(env.ID)
		if err != nil {
			t.Fatal(err)
		}
		got := readAll(t, m)
		m.Close()
		if !bytes.Equal(got, msg) || m.Envelope.Recipients[0].Addr != "b@y.test" || m.Envelope.Recipients[0].Notify[0] != "FAILURE" {
			t.Fatalf("n=%d: round trip differs (%d bytes, env %+v)", n, len(got), m.Envelope)
		}
	}
}

func TestSpoolDetectsDamage(t *testing.T) {
	sp := testSpool(t)
	env := &Envelope{ID: NewID(), From: "a@x.test", Recipients: []Recipient{{Addr: "b@y.test"}}}
	if _, err := sp.Write(env, strings.NewReader(strings.Repeat("line\r\n", 30000))); err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(sp.path(env.ID))
	cases := map[string][]byte{
		"flipped bit":    func() []byte { b := bytes.Clone(orig); b[len(b)/2] ^= 1; return b }(),
		"truncated":      orig[:len(orig)-100],
		"last chunk cut": orig[:len(orig)-(len(orig)-len(spoolMagic))/3],
	}
	for name, data := range cases {
		os.WriteFile(sp.path(env.ID), data, 0o600)
		m, err := sp.Open(env.ID)
		if err == nil {
			_, err = io.ReadAll(m)
			m.Close()
		}
		if !errors.Is(err, ErrSpoolCorrupt) {
			t.Errorf("%s: err = %v, want ErrSpoolCorrupt", name, err)
		}
	}
	// Another keyring cannot open it.
	os.WriteFile(sp.path(env.ID), orig, 0o600)
	other := &Spool{dir: sp.dir, kr: testKeyring(t)}
	if _, err := other.Open(env.ID); !errors.Is(err, ErrSpoolCorrupt) {
		t.Errorf("foreign keyring: err = %v", err)
	}
}

func TestSpoolWriteFailureLeavesNothing(t *testing.T) {
	sp := testSpool(t)
	env := &Envelope{ID: NewID(), Recipients: []Recipient{{Addr: "b@y.test"}}}
	_, err := sp.Write(env, newDataValidator(strings.NewReader("Subject: x\r\n\r\nbad\nline\r\n"), "gw"))
	if err != errBareLF {
		t.Fatalf("err = %v, want the bare-LF error", err)
	}
	ids, _ := sp.IDs()
	ents, _ := os.ReadDir(sp.dir)
	if len(ids) != 0 || len(ents) != 0 {
		t.Fatalf("left behind: %v %v", ids, ents)
	}
}
