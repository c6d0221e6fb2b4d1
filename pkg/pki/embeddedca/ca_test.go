package embeddedca_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/sealgate/sealgate/pkg/pki/embeddedca"
	"github.com/sealgate/sealgate/pkg/pki/internal/pkitest"
)

func TestInitIsIdempotentAndKeysAreSealed(t *testing.T) {
	dir := t.TempDir()
	sealer := pkitest.NewSealer()
	created, err := embeddedca.Init(dir, sealer, embeddedca.InitOptions{KeyBits: 2048})
	if err != nil || !created {
		t.Fatalf("first init: created=%v err=%v", created, err)
	}
	root1, _ := os.ReadFile(filepath.Join(dir, "root.crt"))
	created, err = embeddedca.Init(dir, sealer, embeddedca.InitOptions{KeyBits: 2048})
	if err != nil || created {
		t.Fatalf("second init: created=%v err=%v", created, err)
	}
	root2, _ := os.ReadFile(filepath.Join(dir, "root.crt"))
	if !bytes.Equal(root1, root2) {
		t.Fatal("second init replaced the root")
	}
	for _, f := range []string{"root.key.sealed", "issuing.key.sealed"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := x509.ParsePKCS8PrivateKey(b); err == nil || bytes.Contains(b, []byte("PRIVATE KEY")) {
			t.Fatalf("%s is readable without the master key", f)
		}
		if st, _ := os.Stat(filepath.Join(dir, f)); st.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v", f, st.Mode())
		}
	}
	if _, err := embeddedca.Open(dir, pkitest.NewSealer(), embeddedca.Options{}); err == nil {
		t.Fatal("opened the CA with a different master key")
	}

	// A crash after the root was written: init completes the issuing CA
	// under the same root.
	os.Remove(filepath.Join(dir, "issuing.crt"))
	if created, err := embeddedca.Init(dir, sealer, embeddedca.InitOptions{KeyBits: 2048}); err != nil || !created {
		t.Fatalf("completing init: %v %v", created, err)
	}
	ca, err := embeddedca.Open(dir, sealer, embeddedca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.IssuingCert().CheckSignatureFrom(ca.Root()); err != nil {
		t.Fatalf("new issuing CA not under the old root: %v", err)
	}
	ints, _ := ca.Intermediates(context.Background())
	if len(ints) != 1 || !ints[0].Equal(ca.IssuingCert()) {
		t.Fatal("Intermediates")
	}
}

func TestCRLHandler(t *testing.T) {
	dir := t.TempDir()
	sealer := pkitest.NewSealer()
	if _, err := embeddedca.Init(dir, sealer, embeddedca.InitOptions{KeyBits: 2048}); err != nil {
		t.Fatal(err)
	}
	ca, err := embeddedca.Open(dir, sealer, embeddedca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ca.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/crl")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("GET /crl: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	crl, err := x509.ParseRevocationList(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca.IssuingCert()); err != nil {
		t.Fatalf("CRL not signed by the issuing CA: %v", err)
	}
	if r, _ := http.Post(srv.URL+"/crl", "text/plain", nil); r.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /crl: %s", r.Status)
	}
}
