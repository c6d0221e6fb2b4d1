package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// caPEM is a self-signed CA certificate in PEM, as relay.ca_files holds.
func caPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smart host CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// TestPEMCertificates: the certificates of a bundle, in order.
func TestPEMCertificates(t *testing.T) {
	a, b := caPEM(t), caPEM(t)
	cfgPath := write(t, "", map[string]string{"bundle.pem": a + b})
	certs, err := PEMCertificates(filepath.Join(filepath.Dir(cfgPath), "bundle.pem"))
	if err != nil || len(certs) != 2 {
		t.Fatalf("%d certificates, %v", len(certs), err)
	}
	if blk, _ := pem.Decode([]byte(b)); !slices.Equal(certs[1].Raw, blk.Bytes) {
		t.Error("second certificate is not the second block")
	}
}
