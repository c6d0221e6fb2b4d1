package gateway

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestDataValidator(t *testing.T) {
	hops := strings.Repeat("Received: from x by y; now\r\n", MaxHops+1)
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"clean", "Subject: hi\r\n\r\nbody\r\n", nil},
		{"empty", "", nil},
		{"long line is passed", "Subject: x\r\n\r\n" + strings.Repeat("a", 5000) + "\r\n", nil},
		{"bare LF in body", "Subject: hi\r\n\r\nbody\nmore\r\n", errBareLF},
		{"bare LF smuggling", "Subject: hi\r\n\r\nx\n.\r\nMAIL FROM:<e@vil>\r\n", errBareLF},
		{"bare CR", "Subject: hi\r\n\r\nbody\rmore\r\n", errBareCR},
		{"CR at end", "Subject: hi\r\n\r\nbody\r", errBareCR},
		{"NUL", "Subject: hi\r\n\r\nbo\x00dy\r\n", errNUL},
		{"too many hops", hops + "\r\nbody\r\n", errLoop},
		{"hops in body do not count", "Subject: x\r\n\r\n" + hops, nil},
		{"own loop marker", "X-Sealgate-Processed: gw.test\r\n\r\nbody\r\n", errLoop},
		{"other gateway's marker", "X-Sealgate-Processed: other.test\r\n\r\nbody\r\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := io.ReadAll(newDataValidator(strings.NewReader(tc.in), "gw.test"))
			if err != tc.want {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err == nil && string(out) != tc.in {
				t.Fatal("output differs from input")
			}
		})
	}
}

// FuzzDataPath feeds arbitrary DATA through the validator into the spool:
// either the exact bytes come back from the spool, or the client gets a
// 5xx SMTP error naming the problem; never a panic.
func FuzzDataPath(f *testing.F) {
	for _, s := range []string{
		"Subject: x\r\n\r\nbody\r\n", "a\nb", "a\rb", "\x00", "\r\n\r\n\r\n",
		strings.Repeat("x", 1200) + "\r\n",
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nbroken",
		"Received: x\r\nX-Sealgate-Processed: gw.test\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	sp := testSpool(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		env := &Envelope{ID: NewID(), Recipients: []Recipient{{Addr: "b@y.test"}}}
		_, err := sp.Write(env, newDataValidator(bytes.NewReader(data), "gw.test"))
		if err != nil {
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code < 500 || se.Message == "" {
				t.Fatalf("error is not a clear 5xx: %v", err)
			}
			return
		}
		m, err := sp.Open(env.ID)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(m)
		m.Close()
		sp.Remove(env.ID)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("spool changed the data (err %v)", err)
		}
		if bytes.Contains(data, []byte{0}) {
			t.Fatal("NUL passed")
		}
		for i, c := range data {
			if c == '\n' && (i == 0 || data[i-1] != '\r') {
				t.Fatal("bare LF passed")
			}
		}
	})
}
