package smime

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/smime/cms"
)

func rsaCert(t *testing.T) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(5), Subject: pkix.Name{CommonName: "r"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), EmailAddresses: []string{"r@example.org"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return key, c
}

func TestAlgorithmChoice(t *testing.T) {
	_, rc := rsaCert(t)
	_, ec, _ := goIdentity(t, "e@example.org")
	all := DefaultCapabilities()
	cbcOnly := Capabilities{{ID: cms.OIDAES256CBC}}
	cases := []struct {
		name           string
		recips         []Recipient
		opts           *EncryptOptions
		wantGCM, wantO bool
	}{
		{"unknown-caps", []Recipient{{Cert: rc}}, nil, false, false},
		{"all-advertise", []Recipient{{Cert: rc, Capabilities: all}}, nil, true, true},
		{"one-lacks", []Recipient{{Cert: rc, Capabilities: all}, {Cert: rc, Capabilities: cbcOnly}}, nil, false, false},
		{"ec-only-gcm", []Recipient{{Cert: ec, Capabilities: all}}, nil, true, true},
		{"ec-does-not-block-oaep", []Recipient{{Cert: rc, Capabilities: all}, {Cert: ec}}, nil, false, true},
		{"never", []Recipient{{Cert: rc, Capabilities: all}}, &EncryptOptions{GCM: Never, OAEP: Never}, false, false},
		{"force", []Recipient{{Cert: rc}}, &EncryptOptions{GCM: Force, OAEP: Force}, true, true},
	}
	for _, tc := range cases {
		g, o := Algorithms(tc.recips, tc.opts)
		if g != tc.wantGCM || o != tc.wantO {
			t.Errorf("%s: gcm=%v oaep=%v, want %v %v", tc.name, g, o, tc.wantGCM, tc.wantO)
		}
	}
}

func TestSignerInfoForHarvesting(t *testing.T) {
	key, cert, _ := goIdentity(t, "alice@example.org")
	signed, err := Sign([]byte(plainMsg), key, []*x509.Certificate{cert}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, chain, caps, err := SignerInfo(signed)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Equal(cert) || len(chain) != 0 {
		t.Errorf("signer %v chain %d", c.Subject, len(chain))
	}
	parsed, err := ParseCapabilities(caps)
	if err != nil || !parsed.GCM() || !parsed.OAEP() || !bytes.Equal(caps, DefaultCapabilities().Marshal()) {
		t.Errorf("capabilities %v %v", parsed, err)
	}
	tampered := bytes.Replace(signed, []byte("attached"), []byte("attacked"), 1)
	if _, _, _, err := SignerInfo(tampered); !errors.Is(err, ErrBadSignature) {
		t.Errorf("SignerInfo of an altered message: %v, want ErrBadSignature (harvesting must not trust it)", err)
	}
}

// The API has no shared state: run everything at once under -race.
func TestConcurrentUse(t *testing.T) {
	key, cert, pool := goIdentity(t, "alice@example.org")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Sign([]byte(plainMsg), key, []*x509.Certificate{cert}, nil)
			if err == nil {
				_, err = Verify(s, VerifyOptions{Roots: pool})
			}
			if err == nil {
				var e []byte
				if e, err = Encrypt(s, []Recipient{{Cert: cert}}, nil); err == nil {
					_, err = Decrypt(e, cert, key)
				}
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestNonFieldHeaderLinesRefused plays a message whose "header" is really
// text: Sign would carry it unsigned beside the signature, Encrypt in the
// clear beside the envelope. Both must refuse with ErrMalformed, naming
// the line but never repeating its (possibly secret) text.
func TestNonFieldHeaderLinesRefused(t *testing.T) {
	key, cert, _ := goIdentity(t, "alice@example.org")
	const secret = "hunter2"
	cases := []struct {
		name    string
		msg     string
		wantErr error
	}{
		{"text-without-header", "the code is " + secret + "\nsecond line\n", ErrMalformed},
		{"text-without-header-or-newline", "the code is " + secret, ErrMalformed},
		{"text-with-colon-and-space-in-name", "Dear Bob: the code is " + secret + "\n\nbody\n", ErrMalformed},
		{"text-line-among-fields", "Subject: x\r\nthe code is " + secret + "\r\nContent-Type: text/plain\r\n\r\nbody\r\n", ErrMalformed},
		{"fold-before-any-field", " the code is " + secret + "\r\nSubject: x\r\n\r\nbody\r\n", ErrMalformed},
		{"empty-field-name", ": " + secret + "\r\n\r\nbody\r\n", ErrMalformed},
		{"name-with-control-byte", "X-\x01" + secret + ": v\r\n\r\nbody\r\n", ErrMalformed},
		{"colon-only-in-continuation", "the code is " + secret + "\r\n x: y\r\n\r\nbody\r\n", ErrMalformed},
		{"folded-fields-are-fields", "Subject: a\r\n\tfolded " + secret + "\r\nX-A : obsolete space before colon\r\n\r\nbody\r\n", nil},
		{"body-only-after-empty-line", "\r\nthe code is " + secret + "\r\n", nil},
		{"no-message-at-all", "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, signErr := Sign([]byte(tc.msg), key, []*x509.Certificate{cert}, nil)
			encrypted, encErr := Encrypt([]byte(tc.msg), []Recipient{{Cert: cert}}, nil)
			for op, err := range map[string]error{"Sign": signErr, "Encrypt": encErr} {
				if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
					t.Errorf("%s: want %v, got %v", op, tc.wantErr, err)
				}
				if err != nil && strings.Contains(err.Error(), secret) {
					t.Errorf("%s: the error repeats the message text: %v", op, err)
				}
			}
			if encErr == nil {
				head, _, _ := bytes.Cut(encrypted, []byte("\r\n\r\n"))
				if bytes.Contains(head, []byte("code is")) {
					t.Errorf("message text in the clear outside the envelope:\n%s", head)
				}
			}
		})
	}
}
