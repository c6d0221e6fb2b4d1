package smime

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
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
